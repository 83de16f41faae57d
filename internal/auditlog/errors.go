package auditlog

import "errors"

// Sentinel errors, checked with errors.Is. They are wrapped with detail (a
// record ID, a digest Seq), never compared by message.
var (
	// ErrInvalidRecord means a record cannot be hashed: it is nil, a string
	// in it is not valid UTF-8, or its time lies outside years 0000-9999.
	ErrInvalidRecord = errors.New("audit record cannot be hashed")
	// ErrOrder means records were not given in strictly increasing ID order.
	ErrOrder = errors.New("audit records are not in increasing ID order")
	// ErrPeriod means a record lies outside the period being sealed, or a
	// period does not start where the previous digest ended.
	ErrPeriod = errors.New("audit record or period outside the digest period")
	// ErrMalformed means a digest or key file does not parse, is not in
	// canonical form, or is internally inconsistent (count, first and last
	// ID, leaf order, Merkle root).
	ErrMalformed = errors.New("malformed audit digest")
	// ErrSignature means a digest is not signed by the given keys: a key id
	// differs, or the Ed25519 or the ML-DSA-65 signature (or both) does not
	// verify.
	ErrSignature = errors.New("audit digest signature does not verify")
	// ErrNoDigests means Verify was given no digest: a range that no digest
	// covers proves nothing, so it is an error, never a clean report.
	ErrNoDigests = errors.New("no audit digest covers the range")
)
