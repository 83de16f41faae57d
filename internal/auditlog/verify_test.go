package auditlog

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// perHour is the verify tests' log: six hourly digests, two of them empty.
// Records 0-4 are in digest 0, 5-11 in digest 2, 12 in digest 3 and 13-16
// in digest 5.
var perHour = []int{5, 0, 7, 1, 0, 4}

type wantProblem struct {
	kind Kind
	seq  int64
	id   string
}

func (w wantProblem) String() string { return fmt.Sprintf("%s %d %s", w.kind, w.seq, w.id) }

func problemsOf(r Report) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, wantProblem{p.Kind, p.Seq, p.RecordID}.String())
	}
	return out
}

func TestVerify(t *testing.T) {
	base, baseDigests := testLog(t, perHour...)
	id := func(i int) string { return base[i].ID }
	at := func(h int, m time.Duration) time.Time { return t0.Add(time.Duration(h)*time.Hour + m) }
	extra := func(n int, when time.Time) *escrow.AuditRecord { return newRecord(1000+n, when) }

	type tc struct {
		name   string
		mutate func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest)
		want   []wantProblem
		check  func(t *testing.T, r Report)
	}
	tests := []tc{
		{name: "untouched", check: func(t *testing.T, r Report) {
			if r.Digests != 6 || r.Records != 17 || r.Unsealed != 0 || !r.From.Equal(t0) || !r.To.Equal(at(6, 0)) {
				t.Errorf("report %+v", r)
			}
		}},
		{name: "altered reason", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[7].Reason = "nothing to see"
			return recs, ds
		}, want: []wantProblem{{KindAltered, 2, id(7)}}},
		{name: "altered details value", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[0].Details["version"] = "4"
			return recs, ds
		}, want: []wantProblem{{KindAltered, 0, id(0)}}},
		{name: "altered outcome", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			// Record 14 was denied (a denial hidden), record 16 succeeded.
			recs[14].Outcome, recs[14].ErrorCode, recs[14].Reason = escrow.OutcomeSuccess, "", ""
			recs[16].Outcome = escrow.OutcomeDenied
			return recs, ds
		}, want: []wantProblem{{KindAltered, 5, id(14)}, {KindAltered, 5, id(16)}}},
		{name: "altered time within its period", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[12].Time = recs[12].Time.Add(time.Nanosecond)
			return recs, ds
		}, want: []wantProblem{{KindAltered, 3, id(12)}}},
		{name: "time moved to another period", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[11].Time = at(3, 30*time.Minute)
			return recs, ds
		}, want: []wantProblem{{KindAltered, 2, id(11)}}},
		{name: "time moved past the last digest", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[16].Time = at(9, 0)
			return recs, ds
		}, want: []wantProblem{{KindAltered, 5, id(16)}}, check: func(t *testing.T, r Report) {
			if r.Unsealed != 0 || r.Records != 17 {
				t.Errorf("Unsealed %d, Records %d; want 0, 17", r.Unsealed, r.Records)
			}
		}},
		{name: "record deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Delete(recs, 8, 9), ds
		}, want: []wantProblem{{KindRemoved, 2, id(8)}}},
		{name: "first and last records deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs[1:16], ds
		}, want: []wantProblem{{KindRemoved, 0, id(0)}, {KindRemoved, 5, id(16)}}},
		{name: "a period's records all deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Delete(recs, 12, 13), ds
		}, want: []wantProblem{{KindRemoved, 3, id(12)}}},
		{name: "record inserted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Insert(recs, 8, extra(0, recs[7].Time.Add(time.Second))), ds
		}, want: []wantProblem{{KindInserted, 2, testID(at(2, 14*time.Minute+time.Second), 1000)}}},
		{name: "record inserted into an empty period", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Insert(recs, 5, extra(1, at(1, 5*time.Minute))), ds
		}, want: []wantProblem{{KindInserted, 1, testID(at(1, 5*time.Minute), 1001)}}},
		{name: "record inserted before the first digest", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Insert(recs, 0, extra(2, at(-1, 0))), ds
		}, want: []wantProblem{{KindInserted, NoSeq, testID(at(-1, 0), 1002)}}},
		{name: "record with a sealed ID given twice", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return slices.Insert(recs, 3, recs[2]), ds
		}, want: []wantProblem{{KindInserted, 0, id(2)}}},
		{name: "record with a sealed ID and other content", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			dup := *recs[2]
			dup.Comment = "me too"
			return slices.Insert(recs, 3, &dup), ds
		}, want: []wantProblem{{KindInserted, 0, id(2)}}},
		{name: "two records swapped", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[6], recs[7] = recs[7], recs[6]
			return recs, ds
		}, want: []wantProblem{{KindReordered, 2, id(6)}}},
		{name: "record moved to another period's place", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			r := recs[4]
			recs = slices.Delete(recs, 4, 5)
			return slices.Insert(recs, 11, r), ds // after record 11
		}, want: []wantProblem{{KindReordered, 0, id(4)}}},
		{name: "records after the last digest are not yet sealed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return append(recs, extra(3, at(6, 0)), extra(4, at(6, time.Minute))), ds
		}, check: func(t *testing.T, r Report) {
			if r.Unsealed != 2 || !r.FirstUnsealed.Equal(at(6, 0)) || r.Records != 17 {
				t.Errorf("Unsealed %d from %v, Records %d; want 2 from %v, 17", r.Unsealed, r.FirstUnsealed, r.Records, at(6, 0))
			}
		}},
		{name: "digest deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs, slices.Delete(ds, 2, 3)
		}, want: append([]wantProblem{{KindChain, 3, ""}}, func() (w []wantProblem) {
			for i := 5; i <= 11; i++ {
				w = append(w, wantProblem{KindInserted, NoSeq, id(i)})
			}
			return w
		}()...)},
		{name: "empty digest deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs, slices.Delete(ds, 4, 5)
		}, want: []wantProblem{{KindChain, 5, ""}}},
		{name: "last digest deleted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs, ds[:5]
		}, check: func(t *testing.T, r Report) {
			// Offline, a deleted tail looks like records not yet sealed; the
			// report says how long they have waited.
			if r.Unsealed != 4 || !r.FirstUnsealed.Equal(at(5, 0)) {
				t.Errorf("Unsealed %d from %v; want 4 from %v", r.Unsealed, r.FirstUnsealed, at(5, 0))
			}
		}},
		{name: "digest given twice", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs, append(ds, ds[2])
		}, want: []wantProblem{{KindChain, 2, ""}}},
		{name: "digests out of order are sorted", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			slices.Reverse(ds)
			return recs, ds
		}},
		{name: "bad Ed25519 signature, good ML-DSA-65", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			ds[5].Ed25519Sig[0] ^= 1
			return recs, ds
		}, want: []wantProblem{{KindSignature, 5, ""}}},
		{name: "bad ML-DSA-65 signature, good Ed25519", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			ds[5].MLDSA65Sig[0] ^= 1
			return recs, ds
		}, want: []wantProblem{{KindSignature, 5, ""}}},
		{name: "bad signature mid-chain also breaks the next link", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			ds[2].MLDSA65Sig[0] ^= 1
			return recs, ds
		}, want: []wantProblem{{KindSignature, 2, ""}, {KindChain, 3, ""}}},
		{name: "record and leaf altered, only Ed25519 re-signed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[16].Reason = "rewritten"
			d := ds[5].clone()
			d.Leaves[3].Hash, _ = RecordHash(recs[16])
			forged := resign(t, testSigner, &d)
			forged.MLDSA65Sig = ds[5].MLDSA65Sig
			ds[5] = forged
			return recs, ds
		}, want: []wantProblem{{KindSignature, 5, ""}}},
		{name: "record and leaf altered, only ML-DSA-65 re-signed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[16].Reason = "rewritten"
			d := ds[5].clone()
			d.Leaves[3].Hash, _ = RecordHash(recs[16])
			forged := resign(t, testSigner, &d)
			forged.Ed25519Sig = ds[5].Ed25519Sig
			ds[5] = forged
			return recs, ds
		}, want: []wantProblem{{KindSignature, 5, ""}}},
		{name: "leaf altered without re-signing", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			ds[5].Leaves[1].Hash[0] ^= 1
			return recs, ds
		}, want: []wantProblem{{KindDigest, 5, ""}, {KindAltered, 5, id(14)}}},
		{name: "digest from another key", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			ds[5] = resign(t, otherSigner, ptr(ds[5].clone()))
			return recs, ds
		}, want: []wantProblem{{KindSignature, 5, ""}}},
		{name: "whole chain from another key", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			var prev *SignedDigest
			for i, sd := range ds {
				d := sd.clone()
				if prev != nil {
					d.PrevHash = mustHash(t, prev)
				}
				ds[i] = resign(t, otherSigner, &d)
				prev = ds[i]
			}
			return recs, ds
		}, want: []wantProblem{{KindSignature, 0, ""}, {KindSignature, 1, ""}, {KindSignature, 2, ""}, {KindSignature, 3, ""}, {KindSignature, 4, ""}, {KindSignature, 5, ""}}},
		{name: "broken link, re-signed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			d := ds[5].clone()
			d.PrevHash[0] ^= 1
			ds[5] = resign(t, testSigner, &d)
			return recs, ds
		}, want: []wantProblem{{KindChain, 5, ""}}},
		{name: "first digest with a prevHash", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			d := ds[0].clone()
			d.PrevHash[31] = 1
			ds[0] = resign(t, testSigner, &d)
			return recs, ds[:1]
		}, want: []wantProblem{{KindChain, 0, ""}}, check: func(t *testing.T, r Report) {
			if r.Unsealed != 12 {
				t.Errorf("Unsealed = %d, want 12", r.Unsealed)
			}
		}},
		{name: "gap between periods, re-signed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			d := ds[4].clone()
			d.From = at(4, 30*time.Minute)
			ds[4] = resign(t, testSigner, &d)
			return recs, ds
		}, want: []wantProblem{{KindChain, 4, ""}, {KindChain, 5, ""}}},
		{name: "overlapping periods, re-signed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			d := ds[4].clone()
			d.From = at(3, 30*time.Minute)
			ds[4] = resign(t, testSigner, &d)
			return recs, ds
		}, want: []wantProblem{{KindChain, 4, ""}, {KindChain, 5, ""}}},
		{name: "a range from mid-chain", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			return recs[5:], ds[2:]
		}, check: func(t *testing.T, r Report) {
			if r.Digests != 4 || r.Records != 12 || !r.From.Equal(at(2, 0)) {
				t.Errorf("report %+v", r)
			}
		}},
		{name: "record that cannot be hashed", mutate: func(t *testing.T, recs []*escrow.AuditRecord, ds []*SignedDigest) ([]*escrow.AuditRecord, []*SignedDigest) {
			recs[3].Comment = "\xff"
			return recs, ds
		}, want: []wantProblem{{KindAltered, 0, id(3)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recs, ds := cloneRecords(base), cloneDigests(baseDigests)
			if tt.mutate != nil {
				recs, ds = tt.mutate(t, recs, ds)
			}
			r, err := Verify(t.Context(), seqOf(recs), ds, testSigner.PublicKeys())
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, w.String())
			}
			if got := problemsOf(r); !slices.Equal(got, want) {
				t.Errorf("problems:\n got %s\nwant %s\n%s", strings.Join(got, "; "), strings.Join(want, "; "), listProblems(r))
			}
			if r.Clean() != (len(tt.want) == 0) {
				t.Errorf("Clean() = %v with %d problems", r.Clean(), len(r.Problems))
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func listProblems(r Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

func TestVerifyEmptyPeriodsOnly(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 0, 0, 0)
	r, err := Verify(t.Context(), seqOf(nil), ds, testSigner.PublicKeys())
	if err != nil || !r.Clean() || r.Digests != 3 {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
	// A deleted empty hour shows.
	r, err = Verify(t.Context(), seqOf(nil), []*SignedDigest{ds[0], ds[2]}, testSigner.PublicKeys())
	if err != nil || r.Clean() || r.Problems[0].Kind != KindChain || r.Problems[0].Seq != 2 {
		t.Fatalf("Verify without the middle empty digest = %v, %v", r.Problems, err)
	}
}

func TestVerifyErrors(t *testing.T) {
	recs, ds := testLog(t, 3, 2)
	keys := testSigner.PublicKeys()
	failing := func(yield func(*escrow.AuditRecord, error) bool) {
		if yield(recs[0], nil) {
			yield(nil, errors.New("disk on fire"))
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		records iter.Seq2[*escrow.AuditRecord, error]
		digests []*SignedDigest
		want    error
	}{
		{"no digests", t.Context(), seqOf(recs), nil, ErrNoDigests},
		{"nil digest", t.Context(), seqOf(recs), []*SignedDigest{ds[0], nil}, ErrMalformed},
		{"nil record", t.Context(), seqOf([]*escrow.AuditRecord{nil}), ds, ErrInvalidRecord},
		{"records fail", t.Context(), failing, ds, nil},
		{"cancelled", cancelled, seqOf(recs), ds, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Verify(tt.ctx, tt.records, tt.digests, keys)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want error %v", r, err, tt.want)
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	p := Problem{Kind: KindAltered, Seq: 3, RecordID: "01X", Detail: "its hash differs from its leaf"}
	if got, want := p.String(), "altered: record 01X digest 3: its hash differs from its leaf"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p = Problem{Kind: KindInserted, Seq: NoSeq, RecordID: "01X"}
	if got, want := p.String(), "inserted: record 01X"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
