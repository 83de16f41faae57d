package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/rotate/webhook"
)

// Canaries: none may ever show up in an error.
const (
	privKey = "CANARY-priv-key-91d3e0aa"
	oldPW   = "CANARY-old-pw-0a2f"
	nextPW  = "CANARY-next-pw-5b7c"
)

var now = time.Unix(1795426200, 0)

func clock() time.Time { return now }

// system is the customer's service: it keeps passwords and checks every
// request as package hook tells receivers to.
type system struct {
	key []byte

	mu        sync.Mutex
	passwords map[string]string
	hosts     []string
}

func newSystem(t *testing.T) (*system, *httptest.Server) {
	s := &system{key: []byte(privKey), passwords: map[string]string{"svc-app": oldPW}}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func (s *system) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req struct{ Action, Username, Host, Password string }
	if err != nil || json.Unmarshal(body, &req) != nil || r.Header.Get("Content-Type") != "application/json" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, known := s.passwords[req.Username]
	switch req.Action {
	case "set":
		if hook.Verify(s.key, r, body, now, 0) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !known {
			io.WriteString(w, `{"ok":false}`)
			return
		}
		s.passwords[req.Username] = req.Password
		s.hosts = append(s.hosts, req.Host)
	case "test":
		// Signed with the password it tests.
		if !known || hook.Verify([]byte(stored), r, body, now, 0) != nil || req.Password != stored {
			io.WriteString(w, `{"ok":false}`)
			return
		}
	default:
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	io.WriteString(w, `{"ok":true}`)
}

func (s *system) password(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passwords[user]
}

var login = escrow.Credentials{Username: "escrow-rotator", Password: privKey}

func account(url string) escrow.TargetAccount {
	return escrow.TargetAccount{Username: "svc-app", Host: "app.example.com", URL: url}
}

// newTarget sends with hs's own client: closing a parallel test's server
// closes the idle connections of http.DefaultTransport, and with them
// one being set up for another test.
func newTarget(hs *httptest.Server) *webhook.Target {
	if hs == nil {
		return webhook.New(hook.New(nil, clock), 0)
	}
	return webhook.New(hook.New(hs.Client(), clock), 0)
}

// checkErr asserts err is an *escrow.Error of code whose text says want,
// and that no password or key shows in any way err may be printed.
func checkErr(t *testing.T, err error, code escrow.Code, want string) {
	t.Helper()
	if escrow.ErrorCode(err) != code || err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %s saying %q", err, code, want)
		return
	}
	printed := fmt.Sprintf("%v|%+v|%#v|%s", err, err, err, escrow.ErrorMessage(err))
	if strings.Contains(printed, privKey) || strings.Contains(printed, oldPW) || strings.Contains(printed, nextPW) {
		t.Errorf("error quotes a secret: %s", printed)
	}
}

func TestSetThenTest(t *testing.T) {
	s, hs := newSystem(t)
	tg := newTarget(hs)
	ctx := context.Background()
	if err := tg.Test(ctx, account(hs.URL), oldPW); err != nil {
		t.Fatalf("Test(old) before Set: %v", err)
	}
	if err := tg.Set(ctx, account(hs.URL), login, nextPW); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got := s.password("svc-app"); got != nextPW {
		t.Errorf("the system keeps %q, want the new password", got)
	}
	if len(s.hosts) != 1 || s.hosts[0] != "app.example.com" {
		t.Errorf("hosts %q", s.hosts)
	}
	if err := tg.Test(ctx, account(hs.URL), nextPW); err != nil {
		t.Errorf("Test(next): %v", err)
	}
	err := tg.Test(ctx, account(hs.URL), oldPW)
	if !errors.Is(err, escrow.ErrLoginRefused) {
		t.Errorf("Test(old) after Set = %v, want ErrLoginRefused", err)
	}
	checkErr(t, err, escrow.CodeForbidden, "refused the login")
}

func TestSetWithTheWrongKeyIsRefused(t *testing.T) {
	s, hs := newSystem(t)
	err := newTarget(hs).Set(context.Background(), account(hs.URL), escrow.Credentials{Password: "not-the-shared-key-0000"}, nextPW)
	if !errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set = %v, want ErrLoginRefused", err)
	}
	checkErr(t, err, escrow.CodeForbidden, "refused the login (HTTP 401)")
	if got := s.password("svc-app"); got != oldPW {
		t.Error("the password changed")
	}
}

func TestSetUnknownUserIsRefused(t *testing.T) {
	_, hs := newSystem(t)
	acct := account(hs.URL)
	acct.Username = "nobody"
	err := newTarget(hs).Set(context.Background(), acct, login, nextPW)
	if !errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set = %v, want ErrLoginRefused", err)
	}
	checkErr(t, err, escrow.CodeForbidden, "set the password of nobody")
}

func TestURLFromOptions(t *testing.T) {
	s, hs := newSystem(t)
	acct := account("")
	acct.Options = map[string]string{"url": hs.URL}
	if err := newTarget(hs).Set(context.Background(), acct, login, nextPW); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if s.password("svc-app") != nextPW {
		t.Error("the password did not change")
	}
}

// TestAnswers maps what a service may answer to the port's errors, for
// both calls.
func TestAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		code    escrow.Code
		refused bool
		want    string
	}{
		{"ok", 200, `{"ok":true}`, "", false, ""},
		{"202 ok", 202, `{"ok":true}`, "", false, ""},
		{"not ok", 200, `{"ok":false}`, escrow.CodeForbidden, true, "refused the login"},
		{"401", 401, ``, escrow.CodeForbidden, true, "refused the login (HTTP 401)"},
		{"403", 403, `{"error":"` + nextPW + `"}`, escrow.CodeForbidden, true, "refused the login (HTTP 403)"},
		{"500", 500, `{"ok":false}`, escrow.CodeUnavailable, false, "answered HTTP 500"},
		{"404", 404, ``, escrow.CodeUnavailable, false, "answered HTTP 404"},
		{"not JSON", 200, `done`, escrow.CodeUnavailable, false, "answered no JSON"},
		{"no ok", 200, `{}`, escrow.CodeUnavailable, false, "answered no JSON"},
		{"echoes the password", 200, `{"ok":"` + nextPW + `"}`, escrow.CodeUnavailable, false, "answered no JSON"},
		{"redirect", 302, ``, escrow.CodeUnavailable, false, "redirected (HTTP 302)"},
		{"oversize", 200, `{"ok":true,"x":"` + strings.Repeat("a", hook.MaxBody) + `"}`, escrow.CodeUnavailable, false, "more than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 302 {
					w.Header().Set("Location", "https://elsewhere.example.com/")
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer hs.Close()
			tg := newTarget(hs)
			for call, err := range map[string]error{
				"Set":  tg.Set(context.Background(), account(hs.URL), login, nextPW),
				"Test": tg.Test(context.Background(), account(hs.URL), nextPW),
			} {
				if tt.code == "" {
					if err != nil {
						t.Errorf("%s: %v", call, err)
					}
					continue
				}
				checkErr(t, err, tt.code, tt.want)
				if errors.Is(err, escrow.ErrLoginRefused) != tt.refused {
					t.Errorf("%s = %v; wraps ErrLoginRefused: %v, want %v", call, err, !tt.refused, tt.refused)
				}
				if tt.code == escrow.CodeUnavailable && !errors.Is(err, escrow.ErrUnavailable) {
					t.Errorf("%s = %v, want ErrUnavailable", call, err)
				}
			}
		})
	}
}

// TestRefusesBeforeDialing: the password is in the body, so it is never
// sent in clear beyond loopback; a missing piece is refused up front too.
// The hosts do not resolve (.invalid): a dial would fail Unavailable, not
// Invalid.
func TestRefusesBeforeDialing(t *testing.T) {
	tg := newTarget(nil)
	ctx := context.Background()
	for _, u := range []string{
		"http://rotate.invalid/",
		"http://192.0.2.10/",
		"https://admin:" + oldPW + "@rotate.invalid/",
	} {
		checkErr(t, tg.Set(ctx, account(u), login, nextPW), escrow.CodeInvalid, "must be an absolute https URL")
		checkErr(t, tg.Test(ctx, account(u), nextPW), escrow.CodeInvalid, "must be an absolute https URL")
	}
	checkErr(t, tg.Set(ctx, account(""), login, nextPW), escrow.CodeInvalid, `"url"`)
	checkErr(t, tg.Test(ctx, escrow.TargetAccount{URL: "https://rotate.invalid/"}, nextPW), escrow.CodeInvalid, `"username"`)
	checkErr(t, tg.Set(ctx, account("https://rotate.invalid/"), escrow.Credentials{Password: "short"}, nextPW), escrow.CodeInvalid, "at least 16 bytes")
	checkErr(t, tg.Set(ctx, account("https://rotate.invalid/"), login, ""), escrow.CodeInvalid, "no new password")
	checkErr(t, tg.Test(ctx, account("https://rotate.invalid/"), ""), escrow.CodeInvalid, "no password")
}
