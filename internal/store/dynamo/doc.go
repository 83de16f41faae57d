// Package dynamo is the DynamoDB adapter of escrow.Store and escrow.AuditLog
// (and of the request, ticket system, checkout, QuantumLock key and report
// schedule stores): secrets, versions, folders, the ACL index, checkout
// slots, requests, grants, users' QuantumLock keys, report schedules and
// configuration in one main table, and the append-only audit trail in a
// second table whose stream feeds reports and digests.
//
// Every write of the main table commits its audit record in the same
// TransactWriteItems, so a change never lands unaudited. The adapter must
// never Scan (every read goes by key or index), never update or delete an
// audit item, and never put a secret value in an error: values reach it only
// as ciphertext.
package dynamo
