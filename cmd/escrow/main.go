// Command escrow is the command line client of the Escrow vault, and with
// `escrow server -dev` the local all-in-one server.
//
// It talks to the REST API only (internal/client); it never reads the
// store or the keys directly, and it never prints a secret value except on
// `escrow secret reveal`, never into an error message.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
