package auditlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Kind classifies a Problem.
type Kind string

// The kinds of problem Verify reports.
const (
	// KindAltered: a record's hash differs from its leaf (a field was
	// changed, including a time moved into another period).
	KindAltered Kind = "altered"
	// KindRemoved: a digest has a leaf for which no record was given.
	KindRemoved Kind = "removed"
	// KindInserted: a record has no leaf in the digest of its period, is a
	// second record with a sealed ID, or lies in a period no digest covers.
	KindInserted Kind = "inserted"
	// KindReordered: a record came after a record with a greater ID.
	KindReordered Kind = "reordered"
	// KindChain: a broken link (PrevHash), missing or repeated Seq, or a
	// gap or overlap between periods.
	KindChain Kind = "chain"
	// KindSignature: a digest's Ed25519 or ML-DSA-65 signature does not
	// verify, or it is signed by another key.
	KindSignature Kind = "signature"
	// KindDigest: a digest is internally inconsistent (count, first or last
	// ID, leaf order, Merkle root) or cannot be encoded.
	KindDigest Kind = "digest"
)

// NoSeq is Problem.Seq when no digest applies.
const NoSeq = -1

// Problem is one thing Verify found wrong.
type Problem struct {
	Kind     Kind
	Seq      int64  // the digest concerned, or NoSeq
	RecordID string // the record concerned, or "" for a digest's problem
	Detail   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	b.WriteString(":")
	if p.RecordID != "" {
		fmt.Fprintf(&b, " record %s", p.RecordID)
	}
	if p.Seq != NoSeq {
		fmt.Fprintf(&b, " digest %d", p.Seq)
	}
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	return b.String()
}

// Report is what Verify found.
type Report struct {
	From, To time.Time // the span the digests cover: earliest From, latest To
	Digests  int       // digests checked
	Records  int       // records checked against the digests (all records before To)
	// Unsealed counts records at or after To: not yet sealed, so neither
	// checked nor problems. A sealing lag longer than expected (see
	// FirstUnsealed) is the only sign, offline, that the newest digests
	// were deleted: compare it with how often digests are written.
	Unsealed      int
	FirstUnsealed time.Time // the earliest time among unsealed records; zero if none
	// Problems lists digest problems first (by Seq), then record problems
	// (by record ID).
	Problems []Problem
}

// Clean reports whether Verify found no problem.
func (r Report) Clean() bool { return len(r.Problems) == 0 }

// Verify checks a stretch of the audit log offline against its digests:
// every digest's consistency and both signatures (against keys), the chain
// (Seq, PrevHash, contiguous periods), and every record against the leaf of
// its ID in the digest of its period. records must yield the records of
// the span the digests cover, in ID order, and may go on past it: records
// at or after the last digest's To are counted as not yet sealed.
//
// When the first digest has Seq 0, its PrevHash must be zero; otherwise
// the link before it is not checked (pass the digest before the range too,
// to check it).
//
// Problems are in the report, not the error. Verify returns ErrNoDigests
// if digests is empty, ErrMalformed for a nil digest, and an error if
// records yields one (wrapped) or ctx ends.
func Verify(ctx context.Context, records iter.Seq2[*escrow.AuditRecord, error], digests []*SignedDigest, keys PublicKeys) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	if len(digests) == 0 {
		return Report{}, ErrNoDigests
	}
	if slices.Contains(digests, nil) {
		return Report{}, fmt.Errorf("%w: nil digest", ErrMalformed)
	}
	v := newVerifier(digests)
	var wg sync.WaitGroup
	wg.Go(func() { v.checkDigests(keys) })
	err := v.checkRecords(ctx, records)
	wg.Wait()
	if err != nil {
		return Report{}, err
	}
	v.reconcile()
	v.report.Problems = append(sortProblems(v.digestProblems), sortProblems(v.recordProblems)...)
	return v.report, nil
}

// digestState tracks which leaves of one digest have been matched.
type digestState struct {
	sd     *SignedDigest
	sorted bool           // leaves strictly increasing: binary search works
	byID   map[string]int // for unsorted leaves only, built on first need
	next   int            // the leaf the next record most likely matches
	seen   []bool
}

// find returns the index of the leaf with id, or -1.
func (s *digestState) find(id string) int {
	l := s.sd.Leaves
	if s.next < len(l) && l[s.next].ID == id {
		s.next++
		return s.next - 1
	}
	if s.sorted {
		i, ok := slices.BinarySearchFunc(l, id, func(x Leaf, id string) int { return strings.Compare(x.ID, id) })
		if !ok {
			return -1
		}
		s.next = i + 1
		return i
	}
	if s.byID == nil {
		s.byID = make(map[string]int, len(l))
		for i := range l {
			if _, dup := s.byID[l[i].ID]; !dup {
				s.byID[l[i].ID] = i
			}
		}
	}
	if i, ok := s.byID[id]; ok {
		return i
	}
	return -1
}

type verifier struct {
	report Report
	bySeq  []*digestState // sorted by Seq
	byFrom []*digestState // sorted by From, for finding a record's period
	cursor int            // index into byFrom of the last period used

	// digestProblems are written by checkDigests, recordProblems by
	// checkRecords and reconcile, which run concurrently.
	digestProblems, recordProblems problems

	// moved finds records that may have left their period: a record
	// reported inserted (index into recordProblems) or counted unsealed (-1),
	// whose ID turns out to have a leaf elsewhere, was altered (its time),
	// not inserted.
	moved map[string]int
}

func newVerifier(digests []*SignedDigest) *verifier {
	v := &verifier{moved: make(map[string]int)}
	sorted := slices.Clone(digests)
	slices.SortStableFunc(sorted, func(a, b *SignedDigest) int { return cmp.Compare(a.Seq, b.Seq) })
	v.report.Digests = len(sorted)
	for i, sd := range sorted {
		// The same digest twice (two copies of one file) would leave one
		// copy's leaves unmatched: keep one and say so.
		if i > 0 && sd.Seq == sorted[i-1].Seq && sameDigest(sd, sorted[i-1]) {
			v.digestProblems.add(KindChain, sd.Seq, "", "digest %d is given twice", sd.Seq)
			continue
		}
		v.bySeq = append(v.bySeq, &digestState{sd: sd, sorted: sd.leavesSorted(), seen: make([]bool, len(sd.Leaves))})
	}
	v.byFrom = slices.Clone(v.bySeq)
	slices.SortStableFunc(v.byFrom, func(a, b *digestState) int { return a.sd.From.Compare(b.sd.From) })
	v.report.From = v.byFrom[0].sd.From
	v.report.To = v.bySeq[0].sd.To
	for _, s := range v.bySeq {
		if s.sd.To.After(v.report.To) {
			v.report.To = s.sd.To
		}
	}
	return v
}

func sameDigest(a, b *SignedDigest) bool {
	if a == b {
		return true
	}
	ha, errA := a.Hash()
	hb, errB := b.Hash()
	return errA == nil && errB == nil && ha == hb
}

// problems collects one goroutine's findings.
type problems []Problem

// add appends a problem and returns its index.
func (ps *problems) add(kind Kind, seq int64, id, format string, args ...any) int {
	*ps = append(*ps, Problem{Kind: kind, Seq: seq, RecordID: id, Detail: fmt.Sprintf(format, args...)})
	return len(*ps) - 1
}

// checkDigests checks each digest's consistency and signatures, then the
// links between consecutive Seqs. Digests are checked in parallel: with
// their Merkle roots, they are a third of Verify's work.
func (v *verifier) checkDigests(keys PublicKeys) {
	keyID := keys.KeyID()
	hashes := make([]*[32]byte, len(v.bySeq))
	errs := make([]error, len(v.bySeq))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(v.bySeq)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(v.bySeq); i = int(next.Add(1) - 1) {
				sd := v.bySeq[i].sd
				canon, err := verifyDigest(sd, keys, keyID)
				errs[i] = err
				// An inconsistent digest still has a hash: the next link is
				// checked against what was signed.
				var h [32]byte
				if canon != nil {
					h, err = sd.hash(canon)
				} else {
					h, err = sd.Hash()
				}
				if err == nil {
					hashes[i] = &h
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			kind := KindSignature
			if errors.Is(err, ErrMalformed) {
				kind = KindDigest
			}
			v.digestProblems.add(kind, v.bySeq[i].sd.Seq, "", "%v", err)
		}
	}
	if first := v.bySeq[0].sd; first.Seq == 0 && first.PrevHash != [32]byte{} {
		v.digestProblems.add(KindChain, 0, "", "the first digest has a non-zero prevHash")
	}
	for i := 1; i < len(v.bySeq); i++ {
		a, b := v.bySeq[i-1].sd, v.bySeq[i].sd
		var why []string
		switch {
		case b.Seq == a.Seq:
			why = append(why, "a second digest with this seq")
		case b.Seq != a.Seq+1:
			why = append(why, fmt.Sprintf("digests %d to %d are missing", a.Seq+1, b.Seq-1))
		case hashes[i-1] == nil || b.PrevHash != *hashes[i-1]:
			why = append(why, fmt.Sprintf("prevHash does not match digest %d", a.Seq))
		}
		switch {
		case b.From.After(a.To):
			why = append(why, fmt.Sprintf("no digest covers %s to %s", fmtTime(a.To), fmtTime(b.From)))
		case b.From.Before(a.To):
			why = append(why, fmt.Sprintf("period starts at %s, before digest %d ends at %s", fmtTime(b.From), a.Seq, fmtTime(a.To)))
		}
		if len(why) > 0 {
			v.digestProblems.add(KindChain, b.Seq, "", "%s", strings.Join(why, "; "))
		}
	}
}

// period returns the digest whose period holds t, or nil.
func (v *verifier) period(t time.Time) *digestState {
	if s := v.byFrom[v.cursor]; !t.Before(s.sd.From) && t.Before(s.sd.To) {
		return s
	}
	i, _ := slices.BinarySearchFunc(v.byFrom, t, func(s *digestState, t time.Time) int {
		if s.sd.From.After(t) {
			return 1
		}
		return -1
	})
	// byFrom[i-1] is the last digest starting at or before t.
	if i == 0 || !t.Before(v.byFrom[i-1].sd.To) {
		return nil
	}
	v.cursor = i - 1
	return v.byFrom[i-1]
}

// checkRecords matches each record to its leaf.
func (v *verifier) checkRecords(ctx context.Context, records iter.Seq2[*escrow.AuditRecord, error]) error {
	var h recordHasher
	var maxID string
	n := 0
	for rec, err := range records {
		if err != nil {
			return fmt.Errorf("read audit records: %w", err)
		}
		if rec == nil {
			return fmt.Errorf("read audit records: %w", ErrInvalidRecord)
		}
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		reordered := n > 1 && rec.ID < maxID
		maxID = max(maxID, rec.ID)
		if !rec.Time.Before(v.report.To) {
			v.report.Unsealed++
			if v.report.FirstUnsealed.IsZero() || rec.Time.Before(v.report.FirstUnsealed) {
				v.report.FirstUnsealed = rec.Time
			}
			v.moved[rec.ID] = -1
			continue
		}
		v.report.Records++
		sum, herr := h.hash(rec)
		s := v.period(rec.Time)
		seq := int64(NoSeq)
		if s != nil {
			seq = s.sd.Seq
		}
		if reordered {
			v.recordProblems.add(KindReordered, seq, rec.ID, "it comes after record %s", maxID)
		}
		i := -1
		if s != nil {
			i = s.find(rec.ID)
		}
		switch {
		case s == nil:
			v.moved[rec.ID] = v.recordProblems.add(KindInserted, NoSeq, rec.ID, "no digest covers its time %s", fmtTime(rec.Time))
		case i < 0:
			v.moved[rec.ID] = v.recordProblems.add(KindInserted, seq, rec.ID, "the digest of its period has no leaf for it")
		case s.seen[i]:
			v.recordProblems.add(KindInserted, seq, rec.ID, "a second record with a sealed ID")
		default:
			s.seen[i] = true
			if herr != nil {
				v.recordProblems.add(KindAltered, seq, rec.ID, "it cannot be hashed: %v", herr)
			} else if sum != s.sd.Leaves[i].Hash {
				v.recordProblems.add(KindAltered, seq, rec.ID, "its hash differs from its leaf")
			}
		}
	}
	return ctx.Err()
}

// reconcile reports every unmatched leaf as removed, unless its record
// turned up outside the leaf's period: that record's time was altered.
func (v *verifier) reconcile() {
	for _, s := range v.bySeq {
		for i, seen := range s.seen {
			if seen {
				continue
			}
			id := s.sd.Leaves[i].ID
			p, ok := v.moved[id]
			switch {
			case ok && p >= 0:
				v.recordProblems[p] = Problem{Kind: KindAltered, Seq: s.sd.Seq, RecordID: id,
					Detail: "its time was moved out of the digest's period"}
			case ok:
				v.report.Unsealed-- // counted unsealed, but it is sealed here
				v.report.Records++
				v.recordProblems.add(KindAltered, s.sd.Seq, id, "its time was moved past the last digest")
			default:
				v.recordProblems.add(KindRemoved, s.sd.Seq, id, "the digest has a leaf but no record was found")
			}
			if ok {
				delete(v.moved, id) // one record explains one leaf
			}
		}
	}
}

// sortProblems orders digest problems by Seq and record problems by
// record ID, then kind.
func sortProblems(ps problems) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.RecordID, b.RecordID), cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Kind, b.Kind))
	})
	return ps
}
