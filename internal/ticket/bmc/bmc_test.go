package bmc_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
	"github.com/escrow-pam/escrow/internal/ticket/bmc"
)

const (
	user     = "escrow-svc"
	password = "canary-P4ss-w0rd-7f3b"
	// tokens look like JWTs and carry a canary, so that a leak is seen.
	token1 = "eyJhbGciOiJIUzI1NiJ9.Y2FuYXJ5LXRva2VuLW9uZQ.c2lnMQ"
	token2 = "eyJhbGciOiJIUzI1NiJ9.Y2FuYXJ5LXRva2VuLXR3bw.c2lnMg"
)

// server is a BMC Helix REST API as documented: form login returning a
// plain-text AR-JWT, AR-JWT authorization, entries by qualification.
type server struct {
	t    *testing.T
	hang atomic.Bool // entry requests never answer

	mu      sync.Mutex
	logins  int
	valid   string   // the token that is accepted now
	issue   []string // tokens handed out by successive logins
	entries map[string]string
	posted  []map[string]any // work log entries
	calls   []string         // method path?q
	entry   http.HandlerFunc // overrides the entry handler when set
	login   http.HandlerFunc // overrides the login handler when set
}

func newServer(t *testing.T) (*server, *httptest.Server) {
	s := &server{t: t, issue: []string{token1, token2}, entries: map[string]string{}}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(hs.Close)
	return s, hs
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	if s.hang.Load() && r.URL.Path != "/api/jwt/login" {
		<-r.Context().Done() // never answers; the client gives up
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.Query().Get("q"))
	if r.URL.Path == "/api/jwt/login" {
		if s.login != nil {
			s.login(w, r)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			s.t.Errorf("login: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("username") != user || r.PostForm.Get("password") != password {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(fixture(s.t, "auth_error.json")))
			return
		}
		s.valid = s.issue[s.logins%len(s.issue)]
		s.logins++
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(s.valid))
		return
	}
	if r.Header.Get("Authorization") != "AR-JWT "+s.valid || s.valid == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(fixture(s.t, "auth_error.json")))
		return
	}
	if s.entry != nil {
		s.entry(w, r)
		return
	}
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/arsys/v1/entry/"):
		body, ok := s.entries[r.URL.Path+"?"+r.URL.Query().Get("q")]
		if !ok {
			body = fixture(s.t, "empty.json")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/arsys/v1/entry/"):
		var e map[string]any
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			s.t.Errorf("work log body: %v", err)
		}
		e["form"] = strings.TrimPrefix(r.URL.Path, "/api/arsys/v1/entry/")
		s.posted = append(s.posted, e)
		w.Header().Set("Location", "https://example/api/arsys/v1/entry/"+r.URL.Path+"/000000000000001")
		w.WriteHeader(http.StatusCreated)
	default:
		http.NotFound(w, r)
	}
}

func (s *server) set(path, q, file string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[path+"?"+q] = fixture(s.t, file)
}

func newSystem(t *testing.T, hs *httptest.Server, timeout time.Duration) *bmc.System {
	t.Helper()
	sys, err := bmc.New(bmc.Config{
		Name:        "helix",
		BaseURL:     hs.URL,
		Credentials: ticket.Credentials{Username: user, Password: password},
		Timeout:     timeout,
		HTTPClient:  hs.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

const (
	chgPath = "/api/arsys/v1/entry/CHG:Infrastructure Change"
	incPath = "/api/arsys/v1/entry/HPD:Help Desk"
	chgQ    = `'Infrastructure Change ID'="CRQ000000000402"`
)

func TestLookupChange(t *testing.T) {
	srv, hs := newServer(t)
	srv.set(chgPath, chgQ, "change_found.json")
	sys := newSystem(t, hs, 0)
	got, err := sys.Lookup(t.Context(), "CRQ000000000402")
	if err != nil {
		t.Fatal(err)
	}
	want := &ticket.Ticket{
		System:            "helix",
		Number:            "CRQ000000000402",
		Kind:              ticket.Change,
		State:             "Scheduled",
		Summary:           "Rotate database credentials on db-prod-1",
		Assignee:          "allen",
		AssignmentGroup:   "Database Administration",
		PlannedStart:      time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		PlannedEnd:        time.Date(2026, 11, 23, 11, 30, 0, 0, time.UTC),
		ConfigurationItem: "db-prod-1",
	}
	assertTicket(t, got, want)
	// The form name is path-escaped, the qualification query-escaped.
	if c := srv.calls[len(srv.calls)-1]; c != "GET /api/arsys/v1/entry/CHG:Infrastructure%20Change?"+chgQ {
		t.Errorf("call = %q", c)
	}
	// The token is cached: a second lookup does not log in again.
	if _, err := sys.Lookup(t.Context(), "CRQ000000000402"); err != nil {
		t.Fatal(err)
	}
	if srv.logins != 1 {
		t.Errorf("logins = %d, want 1", srv.logins)
	}
}

func TestLookupIncident(t *testing.T) {
	srv, hs := newServer(t)
	srv.set(incPath, `'Incident Number'="INC000000000108"`, "incident_found.json")
	got, err := newSystem(t, hs, 0).Lookup(t.Context(), "INC000000000108")
	if err != nil {
		t.Fatal(err)
	}
	assertTicket(t, got, &ticket.Ticket{
		System:            "helix",
		Number:            "INC000000000108",
		Kind:              ticket.Incident,
		State:             "In Progress",
		Summary:           "Payments API returns 500",
		Assignee:          "mary",
		AssignmentGroup:   "Payments Support",
		ConfigurationItem: "payments-api",
	})
}

func TestLookupWrongStateIsReported(t *testing.T) {
	// The adapter reports the vendor's state; the policy decides.
	srv, hs := newServer(t)
	srv.set(chgPath, `'Infrastructure Change ID'="CRQ000000000407"`, "change_closed.json")
	got, err := newSystem(t, hs, 0).Lookup(t.Context(), "CRQ000000000407")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "Closed" || got.Kind != ticket.Change {
		t.Errorf("state %q kind %q, want Closed change", got.State, got.Kind)
	}
}

func TestLookupNotFound(t *testing.T) {
	_, hs := newServer(t)
	sys := newSystem(t, hs, 0)
	for _, n := range []string{"CRQ000000000999", "INC000000000999", "PRB000000000001", "CRQ1' OR 'a'='a", ""} {
		_, err := sys.Lookup(t.Context(), n)
		if !errors.Is(err, escrow.ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want not found", n, err)
		}
	}
}

func TestLookupFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		code escrow.Code
	}{
		{"malformed body", "malformed.json", escrow.CodeInternal},
		{"status of the wrong type", "unexpected_shape.json", escrow.CodeInternal},
		{"no entries list", "no_entries.json", escrow.CodeInternal},
		{"another ticket's entry", "change_closed.json", escrow.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newServer(t)
			srv.set(chgPath, chgQ, tc.file)
			_, err := newSystem(t, hs, 0).Lookup(t.Context(), "CRQ000000000402")
			if escrow.ErrorCode(err) != tc.code {
				t.Errorf("err = %v, want code %s", err, tc.code)
			}
		})
	}
}

func TestTwoEntriesAreRefused(t *testing.T) {
	srv, hs := newServer(t)
	var doc map[string]any
	if err := json.Unmarshal([]byte(fixture(t, "change_found.json")), &doc); err != nil {
		t.Fatal(err)
	}
	list := doc["entries"].([]any)
	doc["entries"] = append(list, list[0])
	b, _ := json.Marshal(doc)
	srv.entries[chgPath+"?"+chgQ] = string(b)
	_, err := newSystem(t, hs, 0).Lookup(t.Context(), "CRQ000000000402")
	if escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Errorf("err = %v, want internal", err)
	}
}

func TestExpiredTokenLogsInAgainOnce(t *testing.T) {
	srv, hs := newServer(t)
	srv.set(chgPath, chgQ, "change_found.json")
	sys := newSystem(t, hs, 0)
	if _, err := sys.Lookup(t.Context(), "CRQ000000000402"); err != nil {
		t.Fatal(err)
	}
	// The server expires the session: the next call gets 401 with the
	// cached token, logs in, and succeeds with the new one.
	srv.mu.Lock()
	srv.valid = "expired"
	srv.mu.Unlock()
	if _, err := sys.Lookup(t.Context(), "CRQ000000000402"); err != nil {
		t.Fatal(err)
	}
	if srv.logins != 2 {
		t.Errorf("logins = %d, want 2", srv.logins)
	}
	if srv.valid != token2 {
		t.Errorf("server's valid token is not the second one")
	}

	// A server that refuses every token: one re-login, then a clear error.
	srv.mu.Lock()
	srv.entry = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(fixture(t, "auth_error.json")))
	}
	before := srv.logins
	srv.mu.Unlock()
	_, err := sys.Lookup(t.Context(), "CRQ000000000402")
	if escrow.ErrorCode(err) != escrow.CodeInternal || !strings.Contains(err.Error(), "refused") {
		t.Errorf("err = %v, want internal refusal", err)
	}
	if srv.logins-before != 1 {
		t.Errorf("logins after a 401 = %d, want 1", srv.logins-before)
	}
}

func TestForbiddenDoesNotLogInAgain(t *testing.T) {
	srv, hs := newServer(t)
	srv.entry = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }
	_, err := newSystem(t, hs, 0).Lookup(t.Context(), "CRQ000000000402")
	if escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Errorf("err = %v, want internal", err)
	}
	if srv.logins != 1 {
		t.Errorf("logins = %d, want 1", srv.logins)
	}
}

func TestLoginFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		login http.HandlerFunc
		code  escrow.Code
	}{
		{"wrong password", nil, escrow.CodeInternal},
		{"server error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }, escrow.CodeUnavailable},
		{"not a token", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>login</html>")) }, escrow.CodeInternal},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/login", http.StatusFound)
		}, escrow.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newServer(t)
			srv.login = tc.login
			cfg := bmc.Config{Name: "helix", BaseURL: hs.URL, Credentials: ticket.Credentials{Username: user, Password: password}, HTTPClient: hs.Client()}
			if tc.login == nil {
				cfg.Credentials.Password = password + "-wrong"
			}
			sys, err := bmc.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sys.Lookup(t.Context(), "CRQ000000000402")
			if escrow.ErrorCode(err) != tc.code {
				t.Errorf("err = %v, want code %s", err, tc.code)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestTimeout(t *testing.T) {
	srv, hs := newServer(t)
	srv.hang.Store(true)
	_, err := newSystem(t, hs, 50*time.Millisecond).Lookup(t.Context(), "CRQ000000000402")
	if escrow.ErrorCode(err) != escrow.CodeUnavailable {
		t.Errorf("err = %v, want unavailable", err)
	}
}

func TestComment(t *testing.T) {
	srv, hs := newServer(t)
	sys := newSystem(t, hs, 0)
	long := strings.Repeat("é", 150)
	if err := sys.Comment(t.Context(), "CRQ000000000402", "Escrow: access approved for alice\nsecret db/prod/root until 11:30 UTC"); err != nil {
		t.Fatal(err)
	}
	if err := sys.Comment(t.Context(), "INC000000000108", long); err != nil {
		t.Fatal(err)
	}
	if len(srv.posted) != 2 {
		t.Fatalf("posted %d entries", len(srv.posted))
	}
	chg, _ := json.Marshal(srv.posted[0])
	wantChg := `{"form":"CHG:WorkLog","values":{"Description":"Escrow: access approved for alice","Detailed Description":"Escrow: access approved for alice\nsecret db/prod/root until 11:30 UTC","Infrastructure Change ID":"CRQ000000000402","Secure Work Log":"No","View Access":"Internal","Work Log Type":"General Information"}}`
	if string(chg) != wantChg {
		t.Errorf("change work log =\n%s\nwant\n%s", chg, wantChg)
	}
	inc := srv.posted[1]["values"].(map[string]any)
	if srv.posted[1]["form"] != "HPD:WorkLog" || inc["Incident Number"] != "INC000000000108" ||
		inc["Description"] != strings.Repeat("é", 100) || inc["Detailed Description"] != long {
		t.Errorf("incident work log = %v", srv.posted[1])
	}
	if err := sys.Comment(t.Context(), "CRQ000000000402", "  "); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("empty comment: %v", err)
	}
	if err := sys.Comment(t.Context(), "TASK1", "x"); !errors.Is(err, escrow.ErrNotFound) {
		t.Errorf("comment on a task: %v", err)
	}
}

func TestNewNeedsPassword(t *testing.T) {
	_, err := bmc.New(bmc.Config{BaseURL: "https://x.example", Credentials: ticket.Credentials{Token: "t"}})
	if escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("err = %v, want invalid", err)
	}
	_, err = bmc.New(bmc.Config{BaseURL: "ftp://x.example", Credentials: ticket.Credentials{Username: "u", Password: "p"}})
	if escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("err = %v, want invalid", err)
	}
}

// TestCanary provokes every error this adapter returns and checks that
// none quotes the password or a token.
func TestCanary(t *testing.T) {
	srv, hs := newServer(t)
	srv.set(chgPath, chgQ, "malformed.json")
	sys := newSystem(t, hs, 0)
	var errs []error
	_, err := sys.Lookup(t.Context(), "CRQ000000000402")
	errs = append(errs, err)
	srv.entry = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(password + " " + token1))
	}
	_, err = sys.Lookup(t.Context(), "CRQ000000000402")
	errs = append(errs, err)
	errs = append(errs, sys.Comment(t.Context(), "CRQ000000000402", "x"))
	srv.login = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(password))
	}
	srv.valid = ""
	_, err = sys.Lookup(t.Context(), "CRQ000000000402")
	errs = append(errs, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = sys.Lookup(ctx, "CRQ000000000402")
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		assertNoSecret(t, err)
	}
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{password, token1, token2, "Y2FuYXJ5"} {
		if strings.Contains(err.Error(), s) || strings.Contains(escrow.ErrorMessage(err), s) {
			t.Errorf("error %q quotes a credential", err)
		}
	}
}

func assertTicket(t *testing.T, got, want *ticket.Ticket) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("ticket =\n%s\nwant\n%s", g, w)
	}
	if !got.PlannedStart.Equal(want.PlannedStart) || !got.PlannedEnd.Equal(want.PlannedEnd) {
		t.Errorf("window %v..%v, want %v..%v", got.PlannedStart, got.PlannedEnd, want.PlannedStart, want.PlannedEnd)
	}
}
