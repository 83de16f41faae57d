package auditlog

import (
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestSealRefuses(t *testing.T) {
	a, b := newRecord(1, t0.Add(time.Minute)), newRecord(2, t0.Add(2*time.Minute))
	_, ds := testLog(t, 1)
	prev := ds[0] // ends at t0+1h
	bad := *a
	bad.Reason = "\xff"
	hour := t0.Add(time.Hour)
	tests := []struct {
		name     string
		recs     []*escrow.AuditRecord
		from, to time.Time
		prev     *SignedDigest
		signer   *Signer
		want     error
	}{
		{"unsorted", []*escrow.AuditRecord{b, a}, t0, hour, nil, testSigner, ErrOrder},
		{"duplicate ID", []*escrow.AuditRecord{a, a}, t0, hour, nil, testSigner, ErrOrder},
		{"record before from", []*escrow.AuditRecord{newRecord(3, t0.Add(-time.Nanosecond))}, t0, hour, nil, testSigner, ErrPeriod},
		{"record at to", []*escrow.AuditRecord{newRecord(3, hour)}, t0, hour, nil, testSigner, ErrPeriod},
		{"empty period", nil, t0, t0, nil, testSigner, ErrPeriod},
		{"backwards period", nil, hour, t0, nil, testSigner, ErrPeriod},
		{"gap after prev", nil, hour.Add(time.Second), hour.Add(time.Hour), prev, testSigner, ErrPeriod},
		{"overlap with prev", nil, hour.Add(-time.Second), hour.Add(time.Hour), prev, testSigner, ErrPeriod},
		{"nil record", []*escrow.AuditRecord{nil}, t0, hour, nil, testSigner, ErrInvalidRecord},
		{"invalid UTF-8", []*escrow.AuditRecord{&bad}, t0, hour, nil, testSigner, ErrInvalidRecord},
		{"nil signer", nil, t0, hour, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sd, err := Seal(tt.recs, tt.from, tt.to, tt.prev, tt.signer)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Seal = %v, %v; want %v", sd, err, tt.want)
			}
		})
	}
}

func TestSealEmptyPeriodAndChain(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 2)
	sd, err := Seal(nil, t0.Add(time.Hour), t0.Add(2*time.Hour), ds[0], testSigner)
	mustf(t, err, "seal")
	if sd.Seq != 1 || sd.Count != 0 || len(sd.Leaves) != 0 || sd.FirstID != "" || sd.LastID != "" {
		t.Fatalf("empty digest: %+v", sd.Digest)
	}
	if sd.Root != sha256.Sum256(nil) {
		t.Fatalf("root of an empty period = %x, want SHA-256 of nothing", sd.Root)
	}
	if sd.PrevHash != mustHash(t, ds[0]) {
		t.Fatal("PrevHash is not the previous digest's hash")
	}
	if err := VerifyDigest(sd, testSigner.PublicKeys()); err != nil {
		t.Fatal(err)
	}
	if ds[0].PrevHash != ([32]byte{}) || ds[0].Seq != 0 {
		t.Fatal("the first digest has a seq or prevHash")
	}
}

// TestSealerMatchesSeal: streaming gives the very digests Seal gives for
// the same periods, empty ones included.
func TestSealerMatchesSeal(t *testing.T) {
	t.Parallel()
	recs, streamed := testLog(t, 3, 0, 0, 5, 1)
	var prev *SignedDigest
	i := 0
	for h, sd := range streamed {
		from, to := t0.Add(time.Duration(h)*time.Hour), t0.Add(time.Duration(h+1)*time.Hour)
		var period []*escrow.AuditRecord
		for i < len(recs) && recs[i].Time.Before(to) {
			period = append(period, recs[i])
			i++
		}
		want, err := Seal(period, from, to, prev, testSigner)
		mustf(t, err, "seal hour %d", h)
		if !reflect.DeepEqual(sd, want) {
			t.Fatalf("hour %d: the Sealer's digest differs from Seal's", h)
		}
		prev = want
	}
}

func TestSealerEmitsEmptyPeriods(t *testing.T) {
	t.Parallel()
	s, err := NewSealer(testSigner, 15*time.Minute, nil, t0)
	mustf(t, err, "new sealer")
	out, err := s.Add(newRecord(0, t0.Add(time.Minute)))
	if err != nil || len(out) != 0 {
		t.Fatalf("first Add = %d digests, %v", len(out), err)
	}
	out, err = s.Add(newRecord(1, t0.Add(time.Hour+time.Minute)))
	mustf(t, err, "add")
	if len(out) != 4 {
		t.Fatalf("Add an hour later sealed %d digests, want 4", len(out))
	}
	for i, sd := range out {
		if sd.Seq != int64(i) || !sd.From.Equal(t0.Add(time.Duration(i)*15*time.Minute)) {
			t.Errorf("digest %d: seq %d from %v", i, sd.Seq, sd.From)
		}
		if want := map[bool]int{true: 1, false: 0}[i == 0]; sd.Count != want {
			t.Errorf("digest %d has %d records, want %d", i, sd.Count, want)
		}
	}
	from, to, n := s.Open()
	if !from.Equal(t0.Add(time.Hour)) || !to.Equal(t0.Add(75*time.Minute)) || n != 1 {
		t.Errorf("Open() = %v, %v, %d", from, to, n)
	}
	out, err = s.Advance(t0.Add(75*time.Minute - time.Nanosecond))
	if err != nil || len(out) != 0 {
		t.Fatalf("Advance before the period ends sealed %d, %v", len(out), err)
	}
	out, err = s.Advance(t0.Add(75 * time.Minute))
	if err != nil || len(out) != 1 || out[0].Count != 1 || s.Prev() != out[0] {
		t.Fatalf("Advance at the period's end = %d digests, %v", len(out), err)
	}
}

func TestSealerRefuses(t *testing.T) {
	t.Parallel()
	if _, err := NewSealer(testSigner, 0, nil, t0); !errors.Is(err, ErrPeriod) {
		t.Errorf("zero period: %v", err)
	}
	if _, err := NewSealer(testSigner, 1500*time.Microsecond, nil, t0); !errors.Is(err, ErrPeriod) {
		t.Errorf("period of 1.5ms: %v", err)
	}
	if _, err := NewSealer(nil, time.Hour, nil, t0); err == nil {
		t.Errorf("nil signer accepted")
	}
	_, ds := testLog(t, 1)
	if _, err := NewSealer(testSigner, time.Hour, ds[0], t0); !errors.Is(err, ErrPeriod) {
		t.Errorf("start other than prev.To: %v", err)
	}

	s, err := NewSealer(testSigner, time.Hour, nil, t0)
	mustf(t, err, "new sealer")
	a, b := newRecord(1, t0.Add(time.Minute)), newRecord(2, t0.Add(2*time.Minute))
	if _, err := s.Add(b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(a); !errors.Is(err, ErrOrder) {
		t.Errorf("smaller ID: %v", err)
	}
	if _, err := s.Add(b); !errors.Is(err, ErrOrder) {
		t.Errorf("same ID twice: %v", err)
	}
	if _, err := s.Add(nil); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("nil record: %v", err)
	}
	if _, err := s.Advance(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	late := newRecord(3, t0.Add(59*time.Minute))
	late.ID = testID(t0.Add(2*time.Hour), 9) // a greater ID, but a time in the sealed hour
	if _, err := s.Add(late); !errors.Is(err, ErrPeriod) {
		t.Errorf("record for a sealed period: %v", err)
	}
	if _, _, n := s.Open(); n != 0 {
		t.Errorf("refused records were added: %d", n)
	}
}

func TestSealerContinuesChain(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 2, 1)
	s, err := NewSealer(testSigner, time.Hour, ds[1], time.Time{})
	mustf(t, err, "new sealer")
	early := newRecord(0, t0.Add(30*time.Minute))
	early.ID = testID(t0.Add(3*time.Hour), 0)
	if _, err := s.Add(early); !errors.Is(err, ErrPeriod) {
		t.Errorf("record before prev.To: %v", err)
	}
	out, err := s.Advance(t0.Add(3 * time.Hour))
	mustf(t, err, "advance")
	if len(out) != 1 || out[0].Seq != 2 || out[0].PrevHash != mustHash(t, ds[1]) || !out[0].From.Equal(ds[1].To) {
		t.Fatalf("continued chain: %+v", out)
	}
	chain := append(ds, out...)
	rep, err := Verify(t.Context(), seqOf(nil), chain, testSigner.PublicKeys())
	mustf(t, err, "verify")
	if len(rep.Problems) != 3 { // the 3 records were not given: removed
		t.Fatalf("problems: %v", rep.Problems)
	}
}
