package auditlog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"iter"
	"maps"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// t0 is where test logs start; their periods are hourly.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func seedOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

var (
	testSigner  = NewSigner(seedOf("auditlog test signer"))
	otherSigner = NewSigner(seedOf("auditlog other signer"))
)

// testID returns a ULID-shaped ID like escrow.NewID's (48 bits of
// milliseconds, then 80 bits), with n in place of the random bits, so IDs
// are deterministic and sort by time, then n.
func testID(t time.Time, n uint64) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	hi, lo := uint64(t.UnixMilli())<<16, n
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

var (
	actions  = []string{escrow.ActionSecretReveal, escrow.ActionSecretGet, escrow.ActionCheckout, escrow.ActionPolicySet}
	subjects = []string{"alice", "bob", "carol", "dave", "erin"}
	details  = map[string]string{"version": "3", "fields": "password,username"}
	groups   = []string{"ops"}
	roles    = []string{"requester"}
)

// fillRecord sets rec to the n-th generated record, at time at. Strings
// other than the ID are shared, so a million records stay small.
func fillRecord(rec *escrow.AuditRecord, id string, n int, at time.Time) {
	*rec = escrow.AuditRecord{
		ID:   id,
		Time: at,
		Actor: escrow.Actor{Subject: subjects[n%len(subjects)], Email: subjects[n%len(subjects)] + "@example.com",
			Groups: groups, Roles: roles},
		Action:    actions[n%len(actions)],
		SecretID:  "01JDQ8Z4Y7S0000000000SECRT",
		Target:    "prod/db/root",
		Outcome:   escrow.OutcomeSuccess,
		RequestID: "req-0123456789",
		SourceIP:  "203.0.113.7",
		UserAgent: "escrow-cli/1.0",
		Details:   details,
	}
	if n%7 == 0 {
		rec.Outcome, rec.ErrorCode, rec.Reason = escrow.OutcomeDenied, escrow.CodeForbidden, "forbidden"
	}
}

func newRecord(n int, at time.Time) *escrow.AuditRecord {
	rec := new(escrow.AuditRecord)
	fillRecord(rec, testID(at, uint64(n)), n, at)
	return rec
}

// testLog is a log of hourly periods from t0 with perHour[h] records in hour
// h, sealed by testSigner.
func testLog(t testing.TB, perHour ...int) ([]*escrow.AuditRecord, []*SignedDigest) {
	t.Helper()
	s, err := NewSealer(testSigner, time.Hour, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*escrow.AuditRecord
	var ds []*SignedDigest
	n := 0
	for h, count := range perHour {
		for i := range count {
			rec := newRecord(n, t0.Add(time.Duration(h)*time.Hour+time.Duration(i)*7*time.Minute))
			n++
			out, err := s.Add(rec)
			if err != nil {
				t.Fatal(err)
			}
			recs, ds = append(recs, rec), append(ds, out...)
		}
	}
	out, err := s.Advance(t0.Add(time.Duration(len(perHour)) * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ds = append(ds, out...)
	if len(ds) != len(perHour) {
		t.Fatalf("sealed %d digests for %d hours", len(ds), len(perHour))
	}
	return recs, ds
}

// seqOf returns records as the iterator Verify reads.
func seqOf(recs []*escrow.AuditRecord) iter.Seq2[*escrow.AuditRecord, error] {
	return func(yield func(*escrow.AuditRecord, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// cloneRecords copies recs deeply enough to change any field of a copy.
func cloneRecords(recs []*escrow.AuditRecord) []*escrow.AuditRecord {
	out := make([]*escrow.AuditRecord, len(recs))
	for i, r := range recs {
		c := *r
		c.Details = maps.Clone(r.Details)
		out[i] = &c
	}
	return out
}

// cloneDigests copies ds deeply enough to change any field of a copy.
func cloneDigests(ds []*SignedDigest) []*SignedDigest {
	out := make([]*SignedDigest, len(ds))
	for i, sd := range ds {
		c := *sd
		c.Digest = sd.clone()
		c.Ed25519Sig = append([]byte(nil), sd.Ed25519Sig...)
		c.MLDSA65Sig = append([]byte(nil), sd.MLDSA65Sig...)
		out[i] = &c
	}
	return out
}

// resign re-signs d with s, as an attacker holding s would.
func resign(t testing.TB, s *Signer, d *Digest) *SignedDigest {
	t.Helper()
	d.Count = len(d.Leaves)
	d.FirstID, d.LastID = "", ""
	if d.Count > 0 {
		d.FirstID, d.LastID = d.Leaves[0].ID, d.Leaves[d.Count-1].ID
	}
	d.Root = leavesRoot(d.Leaves)
	sd, err := s.Sign(d)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func mustHash(t testing.TB, sd *SignedDigest) [32]byte {
	t.Helper()
	h, err := sd.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
