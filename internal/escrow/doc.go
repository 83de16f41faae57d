// Package escrow is the domain of the Escrow vault: its types, its one coded
// error type, the ports (interfaces) that adapters implement, and the pure
// rules that decide access.
//
// It must never import a vendor SDK (AWS, SQLite, HTTP frameworks): adapters
// live in their own packages, named after what they adapt, and only the
// mains wire them together.
package escrow
