package jira_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
	"github.com/escrow-pam/escrow/internal/ticket/jira"
)

const (
	email    = "escrow-bot@example.com"
	apiToken = "canary-ATATT3xFfGF0-api-token"
	bearer   = "canary-oauth-bearer-9d2e"
	fields   = "summary,status,assignee,issuetype,customfield_10021,customfield_10022,customfield_10050"
)

var options = map[string]string{
	jira.OptStartField: "customfield_10021",
	jira.OptEndField:   "customfield_10022",
	jira.OptCIField:    "customfield_10050",
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// server is a Jira site as documented: issues by key, 404 with
// errorMessages, 201 for a new comment.
type server struct {
	t      *testing.T
	auth   string            // the Authorization header it accepts
	fields string            // the fields query it expects
	issues map[string]string // key -> fixture
	hang   bool

	mu       sync.Mutex
	comments []string
}

func newServer(t *testing.T, auth string) (*server, *httptest.Server) {
	s := &server{t: t, auth: auth, fields: fields, issues: map[string]string{}}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hang {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != s.auth {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}`))
		return
	}
	key, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/rest/api/3/issue/"), "/")
	file, ok := s.issues[key]
	switch {
	case !strings.HasPrefix(r.URL.Path, "/rest/api/3/issue/"):
		s.t.Errorf("unexpected path %s", r.URL.Path)
		w.WriteHeader(http.StatusBadRequest)
	case !ok:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(fixture(s.t, "not_found.json"))
	case r.Method == http.MethodGet && rest == "":
		if q := r.URL.Query(); len(q) != 1 || q.Get("fields") != s.fields {
			s.t.Errorf("query = %v, want fields=%s", q, s.fields)
		}
		_, _ = w.Write(fixture(s.t, file))
	case r.Method == http.MethodPost && rest == "comment":
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			s.t.Errorf("Content-Type = %q", ct)
		}
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.comments = append(s.comments, string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(fixture(s.t, "comment_created.json"))
	default:
		s.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func newSystem(t *testing.T, hs *httptest.Server, creds ticket.Credentials, opts map[string]string, timeout time.Duration) *jira.System {
	t.Helper()
	sys, err := jira.New(jira.Config{Name: "jira-ops", BaseURL: hs.URL, Credentials: creds, Timeout: timeout, HTTPClient: hs.Client(), Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

var basicCreds = ticket.Credentials{Username: email, Password: apiToken}

func assertTicket(t *testing.T, got, want *ticket.Ticket) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("ticket =\n%s\nwant\n%s", g, w)
	}
}

func TestLookupChange(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.issues["OPS-42"] = "change_found.json"
	got, err := newSystem(t, hs, basicCreds, options, 0).Lookup(t.Context(), "OPS-42")
	if err != nil {
		t.Fatal(err)
	}
	assertTicket(t, got, &ticket.Ticket{
		System:            "jira-ops",
		Number:            "OPS-42",
		Kind:              ticket.Change,
		State:             "Implementing",
		Summary:           "Rotate database credentials on db-prod-1",
		Assignee:          "alice@example.com",
		AssigneeEmail:     "alice@example.com",
		PlannedStart:      time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		PlannedEnd:        time.Date(2026, 11, 23, 11, 30, 0, 0, time.UTC),
		ConfigurationItem: "db-prod-1",
		URL:               hs.URL + "/browse/OPS-42",
	})
}

func TestLookupIncidentWithBearerAndHiddenEmail(t *testing.T) {
	srv, hs := newServer(t, "Bearer "+bearer)
	srv.issues["OPS-77"] = "incident_found.json"
	got, err := newSystem(t, hs, ticket.Credentials{Token: bearer}, options, 0).Lookup(t.Context(), "OPS-77")
	if err != nil {
		t.Fatal(err)
	}
	assertTicket(t, got, &ticket.Ticket{
		System:   "jira-ops",
		Number:   "OPS-77",
		Kind:     ticket.Incident,
		State:    "Work in progress",
		Summary:  "Payments API returns 500",
		Assignee: "5b10ac8d82e05b22cc7d4ef5",
		URL:      hs.URL + "/browse/OPS-77",
	})
}

func TestLookupDoneChangeWithDates(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.issues["OPS-43"] = "change_done_dates.json"
	got, err := newSystem(t, hs, basicCreds, options, 0).Lookup(t.Context(), "OPS-43")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "Completed" || got.Assignee != "" || got.ConfigurationItem != "web-tier" ||
		!got.PlannedStart.Equal(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) ||
		!got.PlannedEnd.Equal(time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ticket = %+v", got)
	}
}

func TestWithoutWindowFieldsOnlyTheBaseFieldsAreAsked(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.fields = "summary,status,assignee,issuetype"
	srv.issues["OPS-42"] = "change_found.json"
	got, err := newSystem(t, hs, basicCreds, nil, 0).Lookup(t.Context(), "OPS-42")
	if err != nil {
		t.Fatal(err)
	}
	if !got.PlannedStart.IsZero() || got.ConfigurationItem != "" {
		t.Errorf("unconfigured fields were read: %+v", got)
	}
}

func TestIssueTypeMapping(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.issues["OPS-44"] = "task.json"
	srv.fields = "summary,status,assignee,issuetype"
	_, err := newSystem(t, hs, basicCreds, nil, 0).Lookup(t.Context(), "OPS-44")
	if !errors.Is(err, escrow.ErrNotFound) || !strings.Contains(err.Error(), "Task") {
		t.Errorf("a task: %v, want not found naming its type", err)
	}
	got, err := newSystem(t, hs, basicCreds, map[string]string{"kind.Task": "change"}, 0).Lookup(t.Context(), "OPS-44")
	if err != nil || got.Kind != ticket.Change {
		t.Errorf("mapped task: %+v, %v", got, err)
	}
}

func TestNotFound(t *testing.T) {
	_, hs := newServer(t, basic(email, apiToken))
	sys := newSystem(t, hs, basicCreds, options, 0)
	for _, key := range []string{"OPS-999", "ops-1", "OPS-1/../../myself", "CHG0012345", ""} {
		if _, err := sys.Lookup(t.Context(), key); !errors.Is(err, escrow.ErrNotFound) {
			t.Errorf("Lookup(%q) = %v, want not found", key, err)
		}
	}
}

func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		creds      ticket.Credentials
		code       escrow.Code
	}{
		{"malformed body", "malformed.json", basicCreds, escrow.CodeInternal},
		{"status is a string", "unexpected_shape.json", basicCreds, escrow.CodeInternal},
		{"window is not a date", "bad_window.json", basicCreds, escrow.CodeInternal},
		{"wrong API token", "change_found.json", ticket.Credentials{Username: email, Password: apiToken + "x"}, escrow.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newServer(t, basic(email, apiToken))
			srv.issues["OPS-42"] = tc.file
			_, err := newSystem(t, hs, tc.creds, options, 0).Lookup(t.Context(), "OPS-42")
			if escrow.ErrorCode(err) != tc.code {
				t.Errorf("err = %v, want code %s", err, tc.code)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestTimeout(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.hang = true
	_, err := newSystem(t, hs, basicCreds, options, 50*time.Millisecond).Lookup(t.Context(), "OPS-42")
	if escrow.ErrorCode(err) != escrow.CodeUnavailable {
		t.Errorf("err = %v, want unavailable", err)
	}
}

func TestComment(t *testing.T) {
	srv, hs := newServer(t, basic(email, apiToken))
	srv.issues["OPS-42"] = "change_found.json"
	sys := newSystem(t, hs, basicCreds, options, 0)
	err := sys.Comment(t.Context(), "OPS-42", "Escrow: access approved for alice@example.com\n\nsecret db/prod/root until 2026-11-23T11:30:00Z\n")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, fixture(t, "comment_request.json")); err != nil {
		t.Fatal(err)
	}
	if len(srv.comments) != 1 || srv.comments[0] != want.String() {
		t.Errorf("comment body =\n%v\nwant\n%s", srv.comments, want.String())
	}
	if err := sys.Comment(t.Context(), "OPS-999", "x"); !errors.Is(err, escrow.ErrNotFound) {
		t.Errorf("comment on a missing issue: %v", err)
	}
	if err := sys.Comment(t.Context(), "OPS-42", "\n"); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Errorf("empty comment: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]jira.Config{
		"no credentials":  {BaseURL: "https://x.example"},
		"token only half": {BaseURL: "https://x.example", Credentials: ticket.Credentials{Username: email}},
		"unknown option":  {BaseURL: "https://x.example", Credentials: basicCreds, Options: map[string]string{"start": "customfield_1"}},
		"bad field id":    {BaseURL: "https://x.example", Credentials: basicCreds, Options: map[string]string{"startField": "fields,summary"}},
		"bad kind":        {BaseURL: "https://x.example", Credentials: basicCreds, Options: map[string]string{"kind.Task": "task"}},
		"bad URL":         {BaseURL: "x.example", Credentials: basicCreds},
	} {
		if _, err := jira.New(cfg); escrow.ErrorCode(err) != escrow.CodeInvalid {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

// TestCanary provokes this adapter's errors with credentials the server
// echoes back and checks that none is quoted.
func TestCanary(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(r.Header.Get("Authorization")))
	}))
	defer echo.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Header.Get("Authorization") + apiToken))
	}))
	defer garbage.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, creds := range []ticket.Credentials{basicCreds, {Token: bearer}} {
		for _, hs := range []*httptest.Server{echo, garbage} {
			sys := newSystem(t, hs, creds, options, 0)
			_, err := sys.Lookup(t.Context(), "OPS-42")
			assertNoSecret(t, err)
			assertNoSecret(t, sys.Comment(t.Context(), "OPS-42", "x"))
			_, err = sys.Lookup(ctx, "OPS-42")
			assertNoSecret(t, err)
		}
	}
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Error("expected an error")
		return
	}
	for _, s := range []string{apiToken, bearer, "canary", base64.StdEncoding.EncodeToString([]byte(email + ":" + apiToken))} {
		if strings.Contains(err.Error(), s) || strings.Contains(escrow.ErrorMessage(err), s) {
			t.Errorf("error %q quotes a credential", err)
		}
	}
}

func TestRedirectToAnotherHostIsRefused(t *testing.T) {
	other, _ := newServer(t, basic(email, apiToken))
	other.issues["OPS-42"] = "change_found.json"
	otherHS := httptest.NewServer(other)
	defer otherHS.Close()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherHS.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer hs.Close()
	_, err := newSystem(t, hs, basicCreds, options, 0).Lookup(t.Context(), "OPS-42")
	if escrow.ErrorCode(err) != escrow.CodeInternal || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("err = %v, want internal naming the redirect", err)
	}
}
