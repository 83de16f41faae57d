package ticket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Canaries: if either ever shows up in an error, a credential leaked.
const (
	canaryUser     = "svc-escrow"
	canaryPassword = "CANARY-pw-7f3a9c"
	canaryToken    = "CANARY-tok-b41e2d"
)

var (
	basicCreds  = Credentials{Username: canaryUser, Password: canaryPassword}
	bearerCreds = Credentials{Token: canaryToken}
)

func newTestClient(t *testing.T, base string, timeout time.Duration, creds Credentials) *Client {
	t.Helper()
	c, err := NewClient(base, nil, timeout, Basic(creds))
	if err != nil {
		t.Fatalf("NewClient(%q): %v", base, err)
	}
	return c
}

// checkErr asserts err has code, mentions want, and quotes no credential
// in any of the ways it may be printed or shown to a client.
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
	noCanary(t, err)
}

func noCanary(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), escrow.ErrorMessage(err)} {
		for _, c := range []string{canaryPassword, canaryToken} {
			if strings.Contains(s, c) {
				t.Errorf("error quotes a credential: %q", s)
			}
		}
	}
}

type answer struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestDoDecodesJSONAndSendsAuth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		creds Credentials
		check func(r *http.Request) bool
	}{
		{"basic", basicCreds, func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == canaryUser && p == canaryPassword
		}},
		{"bearer", bearerCreds, func(r *http.Request) bool {
			return r.Header.Get("Authorization") == "Bearer "+canaryToken
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tc.check(r) {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				if r.Method != http.MethodGet || r.URL.Path != "/base/api/thing" || r.URL.Query().Get("q") != "a b&c" || r.Header.Get("Accept") != "application/json" {
					http.Error(w, "unexpected request "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"name":"CHG0012345","count":3}`)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL+"/base", time.Second, tc.creds)
			var got answer
			if err := c.Do(context.Background(), http.MethodGet, "/api/thing", url.Values{"q": {"a b&c"}}, nil, &got); err != nil {
				t.Fatalf("Do: %v", err)
			}
			if got != (answer{Name: "CHG0012345", Count: 3}) {
				t.Errorf("decoded %+v", got)
			}
		})
	}
}

func TestDoStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   escrow.Code
		want   string
	}{
		{http.StatusNotFound, escrow.CodeNotFound, "not found"},
		{http.StatusUnauthorized, escrow.CodeInternal, "refused Escrow's credentials (HTTP 401)"},
		{http.StatusForbidden, escrow.CodeInternal, "refused Escrow's credentials (HTTP 403)"},
		{http.StatusInternalServerError, escrow.CodeUnavailable, "failed (HTTP 500)"},
		{http.StatusBadGateway, escrow.CodeUnavailable, "failed (HTTP 502)"},
		{http.StatusBadRequest, escrow.CodeInternal, "answered HTTP 400"},
		{http.StatusNotModified, escrow.CodeInternal, "answered HTTP 304"},
	} {
		for name, creds := range map[string]Credentials{"basic": basicCreds, "bearer": bearerCreds} {
			t.Run(fmt.Sprintf("%d/%s", tc.status, name), func(t *testing.T) {
				var calls atomic.Int32
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls.Add(1)
					// A hostile or careless server echoes what it was sent.
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					fmt.Fprintf(w, `{"error":{"message":"echo %s"}}`, r.Header.Get("Authorization"))
				}))
				defer srv.Close()
				c := newTestClient(t, srv.URL, time.Second, creds)
				var out answer
				err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, &out)
				checkErr(t, err, tc.code, tc.want)
				if tc.status == http.StatusNotFound && !errors.Is(err, escrow.ErrNotFound) {
					t.Errorf("404: errors.Is(err, ErrNotFound) = false")
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("HTTP %d was sent %d times, want once (no retry)", tc.status, n)
				}
			})
		}
	}
}

func TestDoRetries429ThenSucceeds(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, `{"name":"ok","count":1}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, 5*time.Second, basicCreds)
	var got answer
	if err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, &got); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got.Name != "ok" {
		t.Errorf("decoded %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("server saw %d calls, want 2 (one 429, one retry)", len(times))
	}
	// A lower bound the client imposes on itself, not a speed claim: it
	// was told to wait one second before retrying.
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("retried after %s, but Retry-After said 1s", gap)
	}
}

func TestDoRetryAfterBeyondTimeoutGivesUpAtOnce(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, time.Second, basicCreds)
	err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, nil)
	checkErr(t, err, escrow.CodeUnavailable, "busy (HTTP 429)")
	if n := calls.Load(); n != 1 {
		t.Errorf("server saw %d calls; Retry-After 30s cannot fit a 1s timeout, want 1", n)
	}
}

func TestDoRetriesResendTheBody(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.Header.Get("Content-Type")+" "+string(b))
		n := len(bodies)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(b) // echo
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, 2*time.Second, bearerCreds)
	var got answer
	if err := c.Do(context.Background(), http.MethodPatch, "/x", nil, answer{Name: "note", Count: 2}, &got); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got != (answer{Name: "note", Count: 2}) {
		t.Errorf("decoded %+v", got)
	}
	want := `PATCH application/json {"name":"note","count":2}`
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || bodies[0] != want || bodies[1] != want {
		t.Errorf("server saw %q, want twice %q", bodies, want)
	}
}

func TestDo503ForeverIsUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, 500*time.Millisecond, basicCreds)
	err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, nil)
	checkErr(t, err, escrow.CodeUnavailable, "HTTP 503")
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("errors.Is(err, ErrUnavailable) = false")
	}
	if calls.Load() < 1 {
		t.Errorf("server never called")
	}
}

func TestDoTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // sleep past the client's timeout
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, 200*time.Millisecond, basicCreds)
	err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, nil)
	checkErr(t, err, escrow.CodeUnavailable, "did not answer within 200ms")
}

func TestDoUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c := newTestClient(t, base, time.Second, basicCreds)
	err := c.Do(context.Background(), http.MethodGet, "/x", url.Values{"q": {canaryPassword}}, nil, nil)
	checkErr(t, err, escrow.CodeUnavailable, "cannot be reached")
}

func TestDoRedirects(t *testing.T) {
	var otherCalls atomic.Int32
	var otherAuth atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherCalls.Add(1)
		otherAuth.Store(r.Header.Get("Authorization"))
		io.WriteString(w, `{"name":"impostor"}`)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusMovedPermanently)
		case "/here":
			if u, p, _ := r.BasicAuth(); u != canaryUser || p != canaryPassword {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			io.WriteString(w, `{"name":"here"}`)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, time.Second, basicCreds)

	t.Run("another host is refused", func(t *testing.T) {
		err := c.Do(context.Background(), http.MethodGet, "/away", nil, nil, &answer{})
		checkErr(t, err, escrow.CodeInternal, "redirected to another host; refusing")
		if n := otherCalls.Load(); n != 0 {
			t.Errorf("the other host was called %d times (Authorization %q)", n, otherAuth.Load())
		}
	})
	t.Run("same host is followed", func(t *testing.T) {
		var got answer
		if err := c.Do(context.Background(), http.MethodGet, "/moved", nil, nil, &got); err != nil {
			t.Fatalf("Do: %v", err)
		}
		if got.Name != "here" {
			t.Errorf("decoded %+v", got)
		}
	})
}

func TestDoBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(w io.Writer)
		want string
	}{
		{"malformed", func(w io.Writer) { io.WriteString(w, `{"name":"x",`) }, "not the JSON its API documents"},
		{"html login page", func(w io.Writer) { io.WriteString(w, `<html><body>Log in</body></html>`) }, "not the JSON its API documents"},
		{"wrong type", func(w io.Writer) { io.WriteString(w, `{"name":["x"]}`) }, "not the JSON its API documents"},
		{"trailing garbage", func(w io.Writer) { io.WriteString(w, `{"name":"x"} {"name":"y"}`) }, "not the JSON its API documents"},
		{"oversized", func(w io.Writer) {
			io.WriteString(w, `{"name":"`)
			chunk := strings.Repeat("a", 64<<10)
			for n := 0; n <= maxBody; n += len(chunk) {
				io.WriteString(w, chunk)
			}
			io.WriteString(w, `"}`)
		}, fmt.Sprintf("larger than %d bytes", maxBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				tc.body(w)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, 5*time.Second, bearerCreds)
			var got answer
			err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, &got)
			checkErr(t, err, escrow.CodeInternal, tc.want)
		})
	}
}

func TestNewClientBadBaseURL(t *testing.T) {
	for _, base := range []string{"", "not a url", "/api/now", "ftp://sn.example.com", "https://", "://x", "sn.example.com"} {
		t.Run(base, func(t *testing.T) {
			c, err := NewClient(base, nil, 0, Basic(basicCreds))
			if c != nil {
				t.Errorf("got a client for %q", base)
			}
			checkErr(t, err, escrow.CodeInvalid, "must be an absolute https URL")
		})
	}
}

func TestNewClientDefaults(t *testing.T) {
	c, err := NewClient("https://sn.example.com/", nil, 0, nil)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if c.timeout != DefaultTimeout {
		t.Errorf("timeout = %s, want %s", c.timeout, DefaultTimeout)
	}
	if got := c.Base().String(); got != "https://sn.example.com" {
		t.Errorf("Base = %q, want the trailing slash trimmed (no // in paths)", got)
	}
}

// TestNewClientRefusesUnsafeURLs: credentials in the URL (never quoted
// back), plain http beyond loopback.
func TestNewClientRefusesUnsafeURLs(t *testing.T) {
	for _, u := range []string{"https://svc:CANARY-PW@sn.example.com", "http://sn.example.com", "ftp://sn.example.com", "/relative"} {
		_, err := NewClient(u, nil, 0, nil)
		if !errors.Is(err, escrow.ErrInvalid) || strings.Contains(err.Error(), "CANARY-PW") {
			t.Errorf("NewClient(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		if _, err := NewClient(u, nil, 0, nil); err != nil {
			t.Errorf("NewClient(%q) on loopback: %v", u, err)
		}
	}
}

// TestRetryAfterZeroDoesNotSpin: a server that keeps answering 503 with
// Retry-After: 0 gets a bounded number of calls within the timeout.
func TestRetryAfterZeroDoesNotSpin(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, nil, 500*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil, nil); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Do: %v", err)
	}
	if n := calls.Load(); n > 10 {
		t.Fatalf("%d calls in 500ms: the retry loop spins", n)
	}
}

// TestRedirectDowngradeRefused: same host, but https to http.
func TestRedirectDowngradeRefused(t *testing.T) {
	var plain atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { plain.Store(true) }))
	defer target.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/x", http.StatusFound)
	}))
	defer tlsSrv.Close()
	c, err := NewClient(tlsSrv.URL, tlsSrv.Client(), time.Second, Basic(Credentials{Token: "CANARY-TOKEN"}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(context.Background(), http.MethodGet, "/y", nil, nil, nil)
	if escrow.ErrorCode(err) != escrow.CodeInternal || plain.Load() {
		t.Fatalf("redirect to http: %v (reached: %v)", err, plain.Load())
	}
}

func TestDoEncodeFailureIsInternal(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", time.Second, basicCreds)
	err := c.Do(context.Background(), http.MethodPost, "/x", nil, map[string]any{"f": func() {}}, nil)
	checkErr(t, err, escrow.CodeInternal, "encode ticket system request")
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Errorf("cause is %T, want *json.UnsupportedTypeError", errors.Unwrap(err))
	}
}
