package webhook_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
	"github.com/escrow-pam/escrow/internal/ticket/webhook"
)

const secret = "canary-shared-secret-5e1f0c"

var now = time.Date(2026, 11, 23, 8, 30, 0, 0, time.UTC)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// received is a request as the validator saw it.
type received struct {
	Action    string `json:"action"`
	Number    string `json:"number"`
	Text      string `json:"text"`
	System    string `json:"system"`
	Timestamp int64  `json:"timestamp"`
	ID        string `json:"id"`
}

// validator verifies each request as the contract tells receivers to and
// answers with a fixture per number.
type validator struct {
	t       *testing.T
	answers map[string]string // number -> fixture
	status  int               // when set, the status of every answer
	hang    bool

	mu  sync.Mutex
	got []received
}

var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func newValidator(t *testing.T) (*validator, *httptest.Server) {
	v := &validator{t: t, answers: map[string]string{}}
	hs := httptest.NewServer(v)
	t.Cleanup(hs.Close)
	return v, hs
}

func (v *validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body) // before hanging: the server notices a gone client only once the body is read
	if v.hang {
		<-r.Context().Done()
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/validate" || r.URL.RawQuery != "" {
		v.t.Errorf("request %s %s", r.Method, r.URL)
	}
	if r.Header.Get("Content-Type") != "application/json" {
		v.t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
	}
	sig := r.Header.Get(webhook.HeaderSignature)
	if !hmac.Equal([]byte(sig), []byte(webhook.Sign([]byte(secret), body))) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var req received
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		v.t.Errorf("body %s: %v", body, err)
	}
	if ts := r.Header.Get(webhook.HeaderTimestamp); ts != strconv.FormatInt(req.Timestamp, 10) || req.Timestamp != now.Unix() {
		v.t.Errorf("timestamp header %q, body %d, want %d", ts, req.Timestamp, now.Unix())
	}
	if !idRE.MatchString(req.ID) || req.System != "tickets" {
		v.t.Errorf("id %q system %q", req.ID, req.System)
	}
	v.mu.Lock()
	v.got = append(v.got, req)
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if v.status != 0 {
		w.WriteHeader(v.status)
	}
	switch req.Action {
	case "lookup":
		file, ok := v.answers[req.Number]
		if !ok {
			file = "not_found.json"
		}
		_, _ = w.Write(fixture(v.t, file))
	case "comment":
		_, _ = w.Write(fixture(v.t, "comment_ok.json"))
	default:
		v.t.Errorf("action %q", req.Action)
	}
}

func newSystem(t *testing.T, hs *httptest.Server, key string, timeout time.Duration) *webhook.System {
	t.Helper()
	sys, err := webhook.New(webhook.Config{
		Name:        "tickets",
		BaseURL:     hs.URL + "/validate",
		Credentials: ticket.Credentials{Token: key},
		Timeout:     timeout,
		HTTPClient:  hs.Client(),
		Now:         func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

func TestLookupFound(t *testing.T) {
	v, hs := newValidator(t)
	v.answers["CHG0012345"] = "found.json"
	got, err := newSystem(t, hs, secret, 0).Lookup(t.Context(), "CHG0012345")
	if err != nil {
		t.Fatal(err)
	}
	want := &ticket.Ticket{
		System:            "tickets",
		Number:            "CHG0012345",
		Kind:              ticket.Change,
		State:             "Implement",
		Summary:           "Rotate database credentials on db-prod-1",
		Assignee:          "alice",
		AssigneeEmail:     "alice@example.com",
		AssignmentGroup:   "Database Administration",
		PlannedStart:      time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		PlannedEnd:        time.Date(2026, 11, 23, 11, 30, 0, 0, time.UTC),
		ConfigurationItem: "db-prod-1",
		URL:               "https://tickets.example.com/CHG0012345",
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("ticket =\n%s\nwant\n%s", g, w)
	}
	if len(v.got) != 1 || v.got[0].Action != "lookup" || v.got[0].Number != "CHG0012345" || v.got[0].Text != "" {
		t.Errorf("requests = %+v", v.got)
	}
}

func TestLookupClosedIsReported(t *testing.T) {
	v, hs := newValidator(t)
	v.answers["CHG0012346"] = "closed.json"
	got, err := newSystem(t, hs, secret, 0).Lookup(t.Context(), "CHG0012346")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "Closed" || !got.PlannedEnd.Equal(time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("ticket = %+v", got)
	}
}

func TestNotFound(t *testing.T) {
	v, hs := newValidator(t)
	sys := newSystem(t, hs, secret, 0)
	for _, n := range []string{"CHG0000000", "", "CHG 1", strings.Repeat("9", 65), "CHG\x00"} {
		if _, err := sys.Lookup(t.Context(), n); !errors.Is(err, escrow.ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want not found", n, err)
		}
	}
	if len(v.got) != 1 {
		t.Errorf("invalid numbers reached the validator: %+v", v.got)
	}
	v.status = http.StatusNotFound
	if _, err := sys.Lookup(t.Context(), "CHG0000001"); !errors.Is(err, escrow.ErrNotFound) {
		t.Errorf("404: %v, want not found", err)
	}
}

func TestOutsideTheContract(t *testing.T) {
	for _, file := range []string{"malformed.json", "other_ticket.json", "bad_kind.json", "no_state.json", "bad_time.json", "no_found.json", "found_without_ticket.json", "found_is_string.json"} {
		t.Run(file, func(t *testing.T) {
			v, hs := newValidator(t)
			v.answers["CHG0012345"] = file
			_, err := newSystem(t, hs, secret, 0).Lookup(t.Context(), "CHG0012345")
			if escrow.ErrorCode(err) != escrow.CodeInternal {
				t.Errorf("err = %v, want internal", err)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestWrongSecretIsRefused(t *testing.T) {
	v, hs := newValidator(t)
	v.answers["CHG0012345"] = "found.json"
	_, err := newSystem(t, hs, secret+"-other", 0).Lookup(t.Context(), "CHG0012345")
	if escrow.ErrorCode(err) != escrow.CodeInternal || !strings.Contains(err.Error(), "401") {
		t.Errorf("err = %v, want internal naming HTTP 401", err)
	}
	assertNoSecret(t, err)
}

func TestStatusCodes(t *testing.T) {
	for status, code := range map[int]escrow.Code{
		http.StatusInternalServerError: escrow.CodeUnavailable,
		http.StatusForbidden:           escrow.CodeInternal,
		http.StatusBadRequest:          escrow.CodeInternal,
	} {
		v, hs := newValidator(t)
		v.status = status
		v.answers["CHG0012345"] = "found.json"
		if _, err := newSystem(t, hs, secret, 0).Lookup(t.Context(), "CHG0012345"); escrow.ErrorCode(err) != code {
			t.Errorf("HTTP %d: %v, want %s", status, err, code)
		}
	}
}

func TestTimeout(t *testing.T) {
	v, hs := newValidator(t)
	v.hang = true
	_, err := newSystem(t, hs, secret, 50*time.Millisecond).Lookup(t.Context(), "CHG0012345")
	if escrow.ErrorCode(err) != escrow.CodeUnavailable {
		t.Errorf("err = %v, want unavailable", err)
	}
}

func TestComment(t *testing.T) {
	v, hs := newValidator(t)
	sys := newSystem(t, hs, secret, 0)
	text := "Escrow: access approved for alice\nsecret db/prod/root until 11:30 UTC"
	if err := sys.Comment(t.Context(), "CHG0012345", text); err != nil {
		t.Fatal(err)
	}
	if len(v.got) != 1 || v.got[0].Action != "comment" || v.got[0].Number != "CHG0012345" || v.got[0].Text != text {
		t.Errorf("requests = %+v", v.got)
	}
	if err := sys.Comment(t.Context(), "CHG0012345", ""); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("empty comment: %v", err)
	}
	// An answer that is not {"ok":true} is outside the contract.
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":false}`))
	}))
	defer odd.Close()
	if err := newSystem(t, odd, secret, 0).Comment(t.Context(), "CHG0012345", "x"); escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Errorf("ok false: %v, want internal", err)
	}
}

func TestSignKnownAnswer(t *testing.T) {
	// RFC 4231 test case 2.
	got := webhook.Sign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if got != "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Errorf("Sign = %s", got)
	}
}

func TestNewRefusesShortSecret(t *testing.T) {
	_, err := webhook.New(webhook.Config{BaseURL: "https://x.example", Credentials: ticket.Credentials{Token: "short"}})
	if escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("err = %v, want invalid", err)
	}
}

// TestCanary provokes this adapter's errors against a server that echoes
// what it was sent, and checks that the secret is never quoted.
func TestCanary(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(secret))
	}))
	defer echo.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(secret))
	}))
	defer garbage.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, hs := range []*httptest.Server{echo, garbage} {
		sys := newSystem(t, hs, secret, 0)
		_, err := sys.Lookup(t.Context(), "CHG0012345")
		assertNoSecret(t, err)
		assertNoSecret(t, sys.Comment(t.Context(), "CHG0012345", "x"))
		_, err = sys.Lookup(ctx, "CHG0012345")
		assertNoSecret(t, err)
	}
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Error("expected an error")
		return
	}
	if strings.Contains(err.Error(), "canary") || strings.Contains(escrow.ErrorMessage(err), "canary") {
		t.Errorf("error %q quotes the secret", err)
	}
}
