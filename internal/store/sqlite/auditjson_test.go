package sqlite

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// TestFastAuditDecodeAgreesWithEncodingJSON: for records of every shape
// (escapes, non-ASCII, empty and missing fields, details) the fast decoder
// gives exactly what json.Unmarshal gives, and hand-written oddities fall
// back to it.
func TestFastAuditDecodeAgreesWithEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"", "alice", `quo"te`, `back\slash`, "tab\tnew\nline", "ünïcødé ☃", "<html>&", "\u2028", "CHG0012345"}
	pick := func() string { return words[r.IntN(len(words))] }
	for i := range 2000 {
		rec := &escrow.AuditRecord{ID: escrow.NewID(time.Now()), Time: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC(),
			Actor: escrow.Actor{Subject: pick(), Email: pick()}, Action: pick(), SecretID: pick(), Target: pick(),
			Outcome: escrow.Outcome(pick()), ErrorCode: escrow.Code(pick()), Reason: pick(), RequestID: pick(),
			SourceIP: pick(), UserAgent: pick(), Comment: pick(), Ticket: pick()}
		if i%3 == 0 {
			rec.Actor.Groups = []string{pick(), pick()}
			rec.Actor.Roles = []string{pick()}
		}
		if i%2 == 0 {
			rec.Details = map[string]string{pick(): pick(), "version": "3"}
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		check(t, raw)
	}
	for _, raw := range []string{
		`{"id":"x","time":"2026-12-06T10:00:00Z","outcome":"success"}`,
		`{"id":"x","time":"2026-12-06T10:00:00.123456789+02:00"}`,
		`{"ID":"upper case key","time":"2026-12-06T10:00:00Z"}`,
		`{"id":null,"time":"2026-12-06T10:00:00Z","details":{"a":null}}`,
		`{"id":"x","time":"2026-12-06T10:00:00Z","actor":{"sub":"a","extra":1}}`,
		`{"id":"x","time":"2026-12-06T10:00:00Z","details":{}}`,
		`{"id":"x","id":"y","time":"2026-12-06T10:00:00Z"}`,
	} {
		check(t, []byte(raw))
	}
}

func check(t *testing.T, raw []byte) {
	t.Helper()
	want := &escrow.AuditRecord{}
	werr := json.Unmarshal(raw, want)
	got, gerr := decodeAudit(raw)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s: json.Unmarshal error %v, decodeAudit error %v", raw, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", raw, got, want)
	}
}

func BenchmarkDecodeAudit(b *testing.B) {
	raw, _ := json.Marshal(&escrow.AuditRecord{ID: "01KBV3N0ZV0000000000000001", Time: time.Now().UTC(),
		Actor: escrow.Actor{Subject: "alice", Email: "alice@example.com", Groups: []string{"engineering"}}, Action: "secret.reveal",
		SecretID: "01KBV3MZZZ0000000000000009", Target: "secret:01KBV3MZZZ0000000000000009", Outcome: "success",
		RequestID: "req-1", SourceIP: "192.0.2.10", UserAgent: "escrow-cli/1", Details: map[string]string{"path": "/prod/db/pg", "version": "3"}})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeAudit(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var rec escrow.AuditRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
