package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
	"github.com/escrow-pam/escrow/internal/web"
)

// shiftClock is the console's clock: the real time plus an offset a test
// moves, to age sessions without waiting.
type shiftClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *shiftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.off)
}

func (c *shiftClock) set(d time.Duration) {
	c.mu.Lock()
	c.off = d
	c.mu.Unlock()
}

// stack is the console on a real SQLite store, signing in through the dev
// issuer over HTTP with Authorization Code and PKCE, all on one loopback
// server as in -dev.
type stack struct {
	t       testing.TB
	url     string
	store   *sqlite.Store
	secrets *secrets.Service
	access  *access.Service
	clock   *shiftClock
}

func newStack(t testing.TB) *stack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := sqlite.Open(ctx, filepath.Join(dir, "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := local.Open(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuerURL := srv.URL + "/dev/oidc"
	issuer, err := auth.OpenDevIssuer(filepath.Join(dir, "issuer.key"), issuerURL, "escrow")
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", issuer.Handler()))
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuerURL, Audience: "escrow"})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := auth.NewRP(auth.RPConfig{Issuer: issuerURL, ClientID: "escrow", RedirectURL: srv.URL + "/auth/callback", Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	svc := secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Grants: store, Checkouts: store, QLockKeys: store})
	acc := access.New(access.Config{Store: store, Requests: store, Audit: store})
	co := checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys, Grants: store})
	clock := &shiftClock{}
	reports := report.New(report.Config{Store: store, Requests: store, Audit: store})
	h, err := web.New(web.Config{Secrets: svc, Access: acc, Checkout: co, Reports: reports, Sessions: store, Login: rp, PublicURL: srv.URL, Insecure: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", h)
	return &stack{t: t, url: srv.URL, store: store, secrets: svc, access: acc, clock: clock}
}

func as(p *escrow.Principal) context.Context {
	return escrow.NewContext(context.Background(), p)
}

var admin = &escrow.Principal{Subject: "admin", Roles: []string{escrow.RoleAdmin}}

// seed makes /ops (engineering may view, approvers may list) with an
// approval policy, and /open (engineering may view, no policy), with one
// secret each; it returns their ids.
func (s *stack) seed(password string) (gated, open string) {
	t := s.t
	ctx := as(admin)
	if _, err := s.secrets.SetFolderACL(ctx, "/ops", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView},
		{Principal: "group:approvers", Permission: escrow.PermList}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.secrets.SetFolderPolicy(ctx, "/ops", &escrow.Policy{
		Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
			Steps:          []escrow.ApprovalStep{{Approvers: []string{"group:approvers"}, Quorum: 1}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour), AllowFutureStart: true},
		Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Change number", Pattern: `^CHG[0-9]{7}$`,
			PatternMessage: "Enter the change number, e.g. CHG0012345"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.secrets.SetFolderACL(ctx, "/open", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	g, err := s.secrets.Create(ctx, secrets.CreateInput{Name: "db", Folder: "/ops", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "dba", "password": password}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.secrets.Create(ctx, secrets.CreateInput{Name: "app", Folder: "/open", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "app", "password": password + "-open"}})
	if err != nil {
		t.Fatal(err)
	}
	return g.ID, o.ID
}

// seedCheckout makes /glass/db: engineering may view; one holder at a
// time for 15 minutes, extendable once, with a reason of 10 characters.
func (s *stack) seedCheckout(password string) string {
	t := s.t
	ctx := as(admin)
	if _, err := s.secrets.SetFolderACL(ctx, "/glass", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.secrets.SetFolderPolicy(ctx, "/glass", &escrow.Policy{
		Checkout: &escrow.CheckoutRule{Required: true, Interval: escrow.Duration(15 * time.Minute), MaxExtensions: 1},
		Comment:  escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Why?", MinLength: 10},
	}, nil); err != nil {
		t.Fatal(err)
	}
	sec, err := s.secrets.Create(ctx, secrets.CreateInput{Name: "db", Folder: "/glass", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "glass", "password": password}})
	if err != nil {
		t.Fatal(err)
	}
	return sec.ID
}

// browser is one user's cookie jar against the stack.
type browser struct {
	t    testing.TB
	s    *stack
	c    *http.Client
	user string
}

func (s *stack) browser(user string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: s.t, s: s, c: c, user: user}
}

// page is one answer: status, final location (for redirects) and body.
type page struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(path), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form as a browser on our origin would (with Origin).
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.postFrom(path, form, b.s.url)
}

func (b *browser) postFrom(path string, form url.Values, origin string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(path), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

func (b *browser) abs(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	return b.s.url + path
}

// follow GETs redirects until a page answers.
func (b *browser) follow(p page) page {
	b.t.Helper()
	for i := 0; p.status == http.StatusSeeOther || p.status == http.StatusFound; i++ {
		if i > 10 {
			b.t.Fatal("redirect loop")
		}
		p = b.get(p.location)
	}
	return p
}

// signIn goes to path, is sent to the dev issuer, picks the user there
// as a person would (POSTing the page's form), and follows the way back.
// It returns the page it lands on.
func (b *browser) signIn(path string) page {
	b.t.Helper()
	p := b.get(path)
	for p.status == http.StatusSeeOther && !strings.Contains(p.location, "/dev/oidc/authorize") {
		p = b.get(p.location)
	}
	if !strings.Contains(p.location, "/dev/oidc/authorize") {
		b.t.Fatalf("GET %s: want a redirect to the issuer, got %d %s", path, p.status, p.location)
	}
	authz, err := url.Parse(p.location)
	if err != nil {
		b.t.Fatal(err)
	}
	chooser := b.get(p.location)
	if chooser.status != http.StatusOK || !strings.Contains(chooser.body, "Sign in as") {
		b.t.Fatalf("issuer page: %d %s", chooser.status, chooser.body)
	}
	form := authz.Query()
	form.Set("user", b.user)
	back := b.postFrom(b.s.url+"/dev/oidc/authorize", form, "")
	if back.status != http.StatusSeeOther || !strings.Contains(back.location, "/auth/callback") {
		b.t.Fatalf("issuer answer: %d %s %s", back.status, back.location, back.body)
	}
	return b.follow(b.get(back.location))
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a page's forms.
func (b *browser) csrf(p page) string {
	b.t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page:\n%s", p.body)
	}
	return m[1]
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.s.url)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// records returns the audit records of action, oldest last.
func (s *stack) records(action string) []*escrow.AuditRecord {
	s.t.Helper()
	page, err := s.secrets.QueryAudit(as(admin), escrow.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		s.t.Fatal(err)
	}
	return page.Records
}
