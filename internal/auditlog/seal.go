package auditlog

import (
	"errors"
	"fmt"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Seal signs the digest of one period [from, to) holding records, which
// must all have Time in [from, to) and strictly increasing IDs. prev is the
// previous digest of the chain (nil for the first): the new digest gets
// Seq prev.Seq+1 and PrevHash prev.Hash(), and from must equal prev.To, so
// periods are contiguous. An empty period is sealed like any other.
//
// It refuses, sealing nothing, with ErrPeriod (from not before to, from not
// prev.To, or a record outside the period), ErrOrder (IDs not increasing)
// or ErrInvalidRecord, each wrapped with the record ID at fault. Seal does
// not verify prev: it is the caller's own last digest.
func Seal(records []*escrow.AuditRecord, from, to time.Time, prev *SignedDigest, signer *Signer) (*SignedDigest, error) {
	d, err := newDigest(from, to, prev)
	if err != nil {
		return nil, err
	}
	var h recordHasher
	d.Leaves = make([]Leaf, 0, len(records))
	for i, rec := range records {
		sum, err := h.hash(rec)
		if err != nil {
			return nil, fmt.Errorf("seal record %d: %w", i, err)
		}
		if rec.Time.Before(from) || !rec.Time.Before(to) {
			return nil, fmt.Errorf("%w: record %s at %s is outside [%s, %s)", ErrPeriod, rec.ID, fmtTime(rec.Time), fmtTime(from), fmtTime(to))
		}
		if i > 0 && rec.ID <= records[i-1].ID {
			return nil, fmt.Errorf("%w: record %s follows %s", ErrOrder, rec.ID, records[i-1].ID)
		}
		d.Leaves = append(d.Leaves, Leaf{ID: rec.ID, Hash: sum})
	}
	return finish(d, signer)
}

// newDigest starts the digest of [from, to) after prev.
func newDigest(from, to time.Time, prev *SignedDigest) (*Digest, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrPeriod, fmtTime(from), fmtTime(to))
	}
	d := &Digest{From: normTime(from), To: normTime(to)}
	if prev != nil {
		if !from.Equal(prev.To) {
			return nil, fmt.Errorf("%w: period starts at %s but digest %d ends at %s", ErrPeriod, fmtTime(from), prev.Seq, fmtTime(prev.To))
		}
		h, err := prev.Hash()
		if err != nil {
			return nil, fmt.Errorf("hash previous digest: %w", err)
		}
		d.Seq, d.PrevHash = prev.Seq+1, h
	}
	return d, nil
}

// finish fills the fields derived from d.Leaves and signs d.
func finish(d *Digest, signer *Signer) (*SignedDigest, error) {
	if signer == nil {
		return nil, errors.New("seal digest: nil signer")
	}
	d.Count = len(d.Leaves)
	if d.Count > 0 {
		d.FirstID, d.LastID = d.Leaves[0].ID, d.Leaves[d.Count-1].ID
	}
	d.Root = leavesRoot(d.Leaves)
	canon, err := d.Canonical()
	if err != nil {
		return nil, fmt.Errorf("seal digest: %w", err)
	}
	return signer.sign(d, canon)
}

// normTime drops t's monotonic reading and zone, so digests compare equal
// to their parsed copies.
func normTime(t time.Time) time.Time { return time.Unix(t.Unix(), int64(t.Nanosecond())).UTC() }

// Sealer seals a stream of records, given in ID order, into one digest per
// fixed period: [start, start+period), [start+period, start+2·period), and
// so on, including periods without records. The audit-stream consumer and
// the -dev process feed it and store what it returns. A Sealer is not safe
// for concurrent use.
//
// Records must arrive after every record of the periods they close: call
// Advance only with a time after which no record can still be written for
// earlier periods (now minus the longest write delay), and feed late
// records never. A late record is refused with ErrPeriod, since its period
// is already signed.
type Sealer struct {
	signer *Signer
	period time.Duration
	prev   *SignedDigest
	from   time.Time // start of the open period
	leaves []Leaf
	lastID string
	h      recordHasher
}

// NewSealer returns a sealer for periods of length period (a positive
// whole number of milliseconds, as record IDs order by millisecond). With
// prev nil, the chain starts at start with Seq 0; otherwise it continues
// after prev, from prev.To, and start must be zero or prev.To. It returns
// ErrPeriod for a bad period or start.
func NewSealer(signer *Signer, period time.Duration, prev *SignedDigest, start time.Time) (*Sealer, error) {
	if signer == nil {
		return nil, errors.New("new sealer: nil signer")
	}
	if period <= 0 || period%time.Millisecond != 0 {
		return nil, fmt.Errorf("%w: period %s is not a positive whole number of milliseconds", ErrPeriod, period)
	}
	s := &Sealer{signer: signer, period: period, prev: prev, from: normTime(start)}
	if prev != nil {
		if !start.IsZero() && !start.Equal(prev.To) {
			return nil, fmt.Errorf("%w: start %s is not the end of digest %d", ErrPeriod, fmtTime(start), prev.Seq)
		}
		s.from, s.lastID = normTime(prev.To), prev.LastID
	}
	return s, nil
}

// Add takes the next record. It first seals every period that ends at or
// before rec.Time and returns those digests (oldest first), then adds rec
// to the open period. It returns ErrOrder if rec.ID is not greater than
// every ID added (or sealed in prev), ErrPeriod if rec.Time lies before the
// open period, and ErrInvalidRecord; rec is then not added. The digests
// returned are sealed even when err is not nil.
func (s *Sealer) Add(rec *escrow.AuditRecord) ([]*SignedDigest, error) {
	sum, err := s.h.hash(rec)
	if err != nil {
		return nil, fmt.Errorf("add record: %w", err)
	}
	if rec.ID <= s.lastID {
		return nil, fmt.Errorf("%w: record %s follows %s", ErrOrder, rec.ID, s.lastID)
	}
	if rec.Time.Before(s.from) {
		return nil, fmt.Errorf("%w: record %s at %s belongs to a sealed period (open period starts %s)", ErrPeriod, rec.ID, fmtTime(rec.Time), fmtTime(s.from))
	}
	out, err := s.Advance(rec.Time)
	if err != nil {
		return out, err
	}
	s.leaves = append(s.leaves, Leaf{ID: rec.ID, Hash: sum})
	s.lastID = rec.ID
	return out, nil
}

// Advance seals every period that ends at or before now, empty or not, and
// returns their digests, oldest first. The digests returned are sealed even
// when err is not nil.
func (s *Sealer) Advance(now time.Time) ([]*SignedDigest, error) {
	var out []*SignedDigest
	for to := s.from.Add(s.period); !now.Before(to); to = s.from.Add(s.period) {
		d, err := newDigest(s.from, to, s.prev)
		if err != nil {
			return out, err
		}
		d.Leaves = s.leaves
		sd, err := finish(d, s.signer)
		if err != nil {
			return out, err
		}
		out = append(out, sd)
		s.prev, s.from, s.leaves = sd, sd.To, nil
	}
	return out, nil
}

// Prev returns the last digest sealed (or given to NewSealer), or nil.
func (s *Sealer) Prev() *SignedDigest { return s.prev }

// Open returns the open period and how many records it holds so far.
func (s *Sealer) Open() (from, to time.Time, records int) {
	return s.from, s.from.Add(s.period), len(s.leaves)
}
