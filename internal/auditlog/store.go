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

// RangeOf is Range for a store that can read its i-th digest of n, in Seq
// order (digests of one chain have periods in Seq order): it finds the
// first digest that ends after from by binary search, then reads forward
// until a digest starts at or after to. It reads about log2(n) digests
// besides those it returns, plus one past the end; each at most once.
func RangeOf(ctx context.Context, n int, read func(i int) (*SignedDigest, error), from, to time.Time) ([]*SignedDigest, error) {
	cache := make(map[int]*SignedDigest)
	load := func(i int) (*SignedDigest, error) {
		if sd, ok := cache[i]; ok {
			return sd, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sd, err := read(i)
		if err != nil {
			return nil, err
		}
		cache[i] = sd
		return sd, nil
	}
	start, end := 0, n
	if !from.IsZero() {
		for start < end {
			mid := int(uint(start+end) >> 1)
			sd, err := load(mid)
			if err != nil {
				return nil, err
			}
			if sd.To.After(from) {
				end = mid
			} else {
				start = mid + 1
			}
		}
	}
	var out []*SignedDigest
	for i := start; i < n; i++ {
		sd, err := load(i)
		if err != nil {
			return nil, err
		}
		if !to.IsZero() && !sd.From.Before(to) {
			break
		}
		if from.IsZero() || sd.To.After(from) {
			out = append(out, sd)
		}
		delete(cache, i)
	}
	return out, nil
}
