package auditlog

import (
	"context"
	"time"
)

// DigestStore keeps signed digests, write-once: nothing replaces or deletes
// a digest through it. It stores what it is given and checks no signature;
// Verify does, offline.
//
// Implementations: auditlog/dir (a folder, for -dev and offline copies);
// every implementation passes auditlog/digeststoretest.
type DigestStore interface {
	// Put durably stores sd. Returns escrow.ErrConflict if a digest with
	// sd.Seq is already stored (the stored one is kept unchanged),
	// escrow.ErrInvalid if sd is nil or cannot be encoded (Marshal fails),
	// and escrow.ErrUnavailable if the store cannot be written.
	Put(ctx context.Context, sd *SignedDigest) error

	// Latest returns the digest with the highest Seq. Returns
	// escrow.ErrNotFound if there is none, and an error wrapping
	// ErrMalformed if the stored digest does not parse.
	Latest(ctx context.Context) (*SignedDigest, error)

	// Range returns the digests whose periods overlap [from, to), in Seq
	// order; a zero from or to leaves that side open. An empty result is
	// not an error. Returns an error wrapping ErrMalformed if a stored
	// digest it reads does not parse.
	Range(ctx context.Context, from, to time.Time) ([]*SignedDigest, error)
}
