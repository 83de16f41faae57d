// Package digeststoretest is the one conformance suite for
// auditlog.DigestStore. Every adapter (auditlog/dir, and the S3 adapter to
// come) runs Run from its own tests, so all of them keep the same promises.
//
// The suite must test only what the port's doc comment promises, never an
// adapter's internals (file names, object keys).
package digeststoretest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// t0 is where the suite's chain starts; its periods are hourly.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Run runs the suite; open returns a fresh, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) auditlog.DigestStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s auditlog.DigestStore)
	}{
		{"LatestEmpty", testLatestEmpty},
		{"RangeEmpty", testRangeEmpty},
		{"PutLatest", testPutLatest},
		{"RoundTrip", testRoundTrip},
		{"WriteOnce", testWriteOnce},
		{"PutNil", testPutNil},
		{"OutOfOrderPuts", testOutOfOrderPuts},
		{"Range", testRange},
		{"ConcurrentPut", testConcurrentPut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

var fixture struct {
	once  sync.Once
	chain []*auditlog.SignedDigest // 5 hourly digests from t0
	other *auditlog.SignedDigest   // another digest with Seq 0
	keys  auditlog.PublicKeys
	err   error
}

// fixtureChain returns the suite's chain of 5 hourly digests from t0 (2 records
// in each odd hour, none in the even ones), another digest with Seq 0, and
// the public keys of both.
func fixtureChain(t testing.TB) ([]*auditlog.SignedDigest, *auditlog.SignedDigest, auditlog.PublicKeys) {
	t.Helper()
	fixture.once.Do(func() {
		signer := auditlog.NewSigner([32]byte{'d', 'i', 'g', 'e', 's', 't', 's', 't', 'o', 'r', 'e'})
		fixture.keys = signer.PublicKeys()
		sealer, err := auditlog.NewSealer(signer, time.Hour, nil, t0)
		if err != nil {
			fixture.err = err
			return
		}
		for h := 1; h < 5; h += 2 {
			for i := range 2 {
				at := t0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Minute)
				out, err := sealer.Add(&escrow.AuditRecord{ID: fmt.Sprintf("%02d%02d", h, i), Time: at,
					Actor: escrow.Actor{Subject: "alice"}, Action: escrow.ActionSecretReveal, Outcome: escrow.OutcomeSuccess})
				if err != nil {
					fixture.err = err
					return
				}
				fixture.chain = append(fixture.chain, out...)
			}
		}
		out, err := sealer.Advance(t0.Add(5 * time.Hour))
		if err != nil {
			fixture.err = err
			return
		}
		fixture.chain = append(fixture.chain, out...)
		fixture.other, fixture.err = auditlog.Seal(nil, t0, t0.Add(30*time.Minute), nil, signer)
	})
	if fixture.err != nil {
		t.Fatalf("build digest chain: %v", fixture.err)
	}
	if len(fixture.chain) != 5 {
		t.Fatalf("built %d digests, want 5", len(fixture.chain))
	}
	return fixture.chain, fixture.other, fixture.keys
}

func put(t *testing.T, s auditlog.DigestStore, sds ...*auditlog.SignedDigest) {
	t.Helper()
	for _, sd := range sds {
		if err := s.Put(t.Context(), sd); err != nil {
			t.Fatalf("Put(digest %d) = %v", sd.Seq, err)
		}
	}
}

func seqs(sds []*auditlog.SignedDigest) []int64 {
	out := []int64{}
	for _, sd := range sds {
		out = append(out, sd.Seq)
	}
	return out
}

func testLatestEmpty(t *testing.T, s auditlog.DigestStore) {
	if _, err := s.Latest(t.Context()); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("Latest on an empty store = %v, want ErrNotFound", err)
	}
}

func testRangeEmpty(t *testing.T, s auditlog.DigestStore) {
	got, err := s.Range(t.Context(), time.Time{}, time.Time{})
	if err != nil || len(got) != 0 {
		t.Fatalf("Range on an empty store = %v, %v; want none, nil", seqs(got), err)
	}
}

func testPutLatest(t *testing.T, s auditlog.DigestStore) {
	chain, _, keys := fixtureChain(t)
	for _, sd := range chain[:3] {
		put(t, s, sd)
		got, err := s.Latest(t.Context())
		if err != nil {
			t.Fatalf("Latest = %v", err)
		}
		if got.Seq != sd.Seq {
			t.Fatalf("Latest = digest %d, want %d", got.Seq, sd.Seq)
		}
		if err := auditlog.VerifyDigest(got, keys); err != nil {
			t.Fatalf("stored digest does not verify: %v", err)
		}
	}
}

func testRoundTrip(t *testing.T, s auditlog.DigestStore) {
	chain, _, _ := fixtureChain(t)
	put(t, s, chain...)
	got, err := s.Range(t.Context(), time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("Range = %v", err)
	}
	if !reflect.DeepEqual(got, chain) {
		t.Fatalf("Range returned digests that differ from those put")
	}
}

func testWriteOnce(t *testing.T, s auditlog.DigestStore) {
	chain, other, _ := fixtureChain(t)
	put(t, s, chain[0])
	for _, sd := range []*auditlog.SignedDigest{other, chain[0]} {
		if err := s.Put(t.Context(), sd); !errors.Is(err, escrow.ErrConflict) {
			t.Fatalf("second Put of Seq 0 = %v, want ErrConflict", err)
		}
	}
	got, err := s.Latest(t.Context())
	if err != nil {
		t.Fatalf("Latest = %v", err)
	}
	if !reflect.DeepEqual(got, chain[0]) {
		t.Fatalf("a conflicting Put changed the stored digest")
	}
}

func testPutNil(t *testing.T, s auditlog.DigestStore) {
	if err := s.Put(t.Context(), nil); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("Put(nil) = %v, want ErrInvalid", err)
	}
	chain, _, _ := fixtureChain(t)
	bad := *chain[0]
	bad.Ed25519Sig = bad.Ed25519Sig[:10]
	if err := s.Put(t.Context(), &bad); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("Put(unencodable) = %v, want ErrInvalid", err)
	}
}

func testOutOfOrderPuts(t *testing.T, s auditlog.DigestStore) {
	chain, _, _ := fixtureChain(t)
	put(t, s, chain[2], chain[0], chain[1])
	got, err := s.Latest(t.Context())
	if err != nil || got.Seq != 2 {
		t.Fatalf("Latest = %v, %v; want digest 2", got, err)
	}
	all, err := s.Range(t.Context(), time.Time{}, time.Time{})
	if err != nil || fmt.Sprint(seqs(all)) != "[0 1 2]" {
		t.Fatalf("Range = %v, %v; want [0 1 2]", seqs(all), err)
	}
}

func testRange(t *testing.T, s auditlog.DigestStore) {
	chain, _, _ := fixtureChain(t)
	put(t, s, chain...)
	h := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Hour))) }
	var zero time.Time
	tests := []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"all", zero, zero, "[0 1 2 3 4]"},
		{"exact periods", h(1), h(3), "[1 2]"},
		{"partial overlaps", h(1.5), h(2.5), "[1 2]"},
		{"open start", zero, h(1), "[0]"},
		{"open end", h(4.5), zero, "[4]"},
		{"after the last", h(5), zero, "[]"},
		{"before the first", h(-2), h(0), "[]"},
		{"an instant", h(2), h(2).Add(time.Nanosecond), "[2]"},
		{"empty range", h(2), h(2), "[]"},
	}
	for _, tt := range tests {
		got, err := s.Range(t.Context(), tt.from, tt.to)
		if err != nil {
			t.Fatalf("%s: Range = %v", tt.name, err)
		}
		if fmt.Sprint(seqs(got)) != tt.want {
			t.Errorf("%s: Range = %v, want %s", tt.name, seqs(got), tt.want)
		}
	}
}

func testConcurrentPut(t *testing.T, s auditlog.DigestStore) {
	chain, other, _ := fixtureChain(t)
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		sd := chain[0]
		if i%2 == 1 {
			sd = other
		}
		wg.Go(func() { errs <- s.Put(context.WithoutCancel(t.Context()), sd) })
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, escrow.ErrConflict):
			t.Errorf("racing Put = %v, want nil or ErrConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing Puts of Seq 0 succeeded, want exactly 1", won, n)
	}
}
