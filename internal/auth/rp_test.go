package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestRPRoundTrip(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, nil)
	l, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	u, err := url.Parse(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	switch {
	case u.Scheme+"://"+u.Host+u.Path != e.issuerURL+"/authorize",
		q.Get("response_type") != "code", q.Get("client_id") != audience,
		q.Get("redirect_uri") != e.srv.URL+"/callback", q.Get("scope") != "openid profile email",
		q.Get("state") != l.State, q.Get("nonce") != l.Nonce,
		q.Get("code_challenge") != challengeOf(l.CodeVerifier), q.Get("code_challenge_method") != "S256",
		q.Has("max_age"), q.Has("prompt"), q.Has("login_hint"):
		t.Fatalf("authorization URL %s", l.URL)
	}
	for _, s := range []string{l.State, l.Nonce, l.CodeVerifier} {
		if len(s) != 43 || strings.ContainsAny(s, "+/=") { // 32 bytes, base64url, unpadded
			t.Fatalf("%q is not 32 bytes of base64url", s)
		}
	}
	if l.State == l.Nonce || l.Nonce == l.CodeVerifier {
		t.Fatal("state, nonce and verifier are not independent")
	}

	page := e.get(t, l.URL)
	if page.status != 200 || !strings.Contains(page.body, ">Sign in as Alice</button>") {
		t.Fatalf("authorize page: %d\n%s", page.status, page.body)
	}
	code := e.signIn(t, l, "Bob")
	before := time.Now()
	p, authTime, err := rp.Finish(background, code, l.CodeVerifier, l.Nonce)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if p.Subject != "bob" || p.Email != "bob@example.com" || p.Name != "Bob" || !slices.Equal(p.Groups, []string{"approvers"}) {
		t.Fatalf("principal %+v", p)
	}
	if d := before.Sub(authTime); d < -time.Second || d > 5*time.Second {
		t.Fatalf("auth time %v, want about now (%v)", authTime, before)
	}
	// The token call was a public client's form post, with the verifier.
	r := e.lastTokenRequest(t)
	if r.method != http.MethodPost || r.contentType != "application/x-www-form-urlencoded" || r.authorization != "" {
		t.Fatalf("token request %+v", r)
	}
	want := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.srv.URL + "/callback"},
		"client_id": {audience}, "code_verifier": {l.CodeVerifier}}
	if r.form.Encode() != want.Encode() {
		t.Fatalf("token form %v, want %v", r.form, want)
	}
	// The code is spent.
	if _, _, err := rp.Finish(background, code, l.CodeVerifier, l.Nonce); escrow.ErrorCode(err) != escrow.CodeUnauthenticated {
		t.Fatalf("Finish with a spent code: %v", err)
	}
}

func TestRPBeginOptions(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, func(c *auth.RPConfig) { c.Scopes = []string{"groups", "openid"} })
	l, err := rp.Begin(background, auth.BeginOptions{MaxAge: 5 * time.Minute, ForceLogin: true, LoginHint: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(l.URL)
	q := u.Query()
	if q.Get("max_age") != "300" || q.Get("prompt") != "login" || q.Get("login_hint") != "carol" ||
		q.Get("scope") != "openid groups" || l.MaxAge != 5*time.Minute {
		t.Fatalf("authorization URL %s (MaxAge %v)", l.URL, l.MaxAge)
	}
	_, _, buttons := e.get(t, l.URL).form(t)
	if buttons[0].text != "Sign in as Carol" || !buttons[0].autofocus {
		t.Fatalf("login_hint did not put carol first: %+v", buttons[0])
	}
	l2, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l2.State == l.State || l2.Nonce == l.Nonce || l2.CodeVerifier == l.CodeVerifier {
		t.Fatal("two logins share a secret")
	}
	if _, err := rp.Begin(background, auth.BeginOptions{MaxAge: -time.Second}); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("negative max age: %v", err)
	}
}

func TestRPRefusesWrongVerifierAndCode(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, nil)
	l, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	code := e.signIn(t, l, "Alice")
	other, _ := rp.Begin(background, auth.BeginOptions{})
	_, _, err = rp.Finish(background, code, other.CodeVerifier, l.Nonce)
	wantCode(t, err, escrow.CodeUnauthenticated)
	if !strings.Contains(escrow.ErrorMessage(err), "invalid_grant") {
		t.Fatalf("message %q does not say the code was refused", escrow.ErrorMessage(err))
	}
	if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), other.CodeVerifier) {
		t.Fatalf("error %q echoes the code or verifier", err)
	}
	// A forged code is refused the same way, and not echoed.
	_, _, err = rp.Finish(background, "forged-code-4f2a", l.CodeVerifier, l.Nonce)
	wantCode(t, err, escrow.CodeUnauthenticated)
	if strings.Contains(err.Error(), "forged-code-4f2a") {
		t.Fatalf("error %q echoes the code", err)
	}
	for _, args := range [][3]string{{"", l.CodeVerifier, l.Nonce}, {code, "", l.Nonce}, {code, l.CodeVerifier, ""}} {
		if _, _, err := rp.Finish(background, args[0], args[1], args[2]); escrow.ErrorCode(err) != escrow.CodeUnauthenticated {
			t.Fatalf("Finish%q: %v", args, err)
		}
	}
}

func TestRPNonceMismatch(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, nil)
	l, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	code := e.signIn(t, l, "Alice")
	other, _ := rp.Begin(background, auth.BeginOptions{})
	p, _, err := rp.Finish(background, code, l.CodeVerifier, other.Nonce)
	wantCode(t, err, escrow.CodeUnauthenticated)
	if p != nil || !strings.Contains(escrow.ErrorMessage(err), "nonce") {
		t.Fatalf("Finish with another login's nonce: %v, %v", p, err)
	}
}

// TestRPRefusesForeignTokens has the token endpoint answer with tokens
// signed by the issuer's own key but naming another issuer or audience.
func TestRPRefusesForeignTokens(t *testing.T) {
	e := newOIDC(t)
	for _, c := range []struct {
		name, issuer, audience, want string
	}{
		{"other issuer", "http://other.example/dev/oidc", audience, "wrong issuer"},
		{"other audience", e.issuerURL, "other-client", "wrong audience"},
	} {
		t.Run(c.name, func(t *testing.T) {
			forger, err := auth.OpenDevIssuer(e.keyPath, c.issuer, c.audience) // same key file: same key and kid
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := forger.Mint(auth.DemoUsers()[3], time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e.setTokenOverride(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]string{"id_token": tok, "access_token": tok, "token_type": "Bearer"})
			})
			defer e.setTokenOverride(nil)
			rp := e.rp(t, nil, nil)
			l, err := rp.Begin(background, auth.BeginOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p, _, err := rp.Finish(background, e.signIn(t, l, "Alice"), l.CodeVerifier, l.Nonce)
			wantCode(t, err, escrow.CodeUnauthenticated)
			if p != nil || escrow.ErrorMessage(err) != c.want {
				t.Fatalf("Finish: %v, want %q", err, c.want)
			}
		})
	}
}

func TestRPMaxAge(t *testing.T) {
	e := newOIDC(t)
	clock := &fakeClock{t: time.Now()}
	rp := e.rp(t, clock, nil)
	login := func() (*auth.Login, string) {
		l, err := rp.Begin(background, auth.BeginOptions{MaxAge: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return l, e.signIn(t, l, "Admin")
	}
	// Fresh: allowed.
	l, code := login()
	if p, _, err := rp.FinishMaxAge(background, code, l.CodeVerifier, l.Nonce, l.MaxAge); err != nil || !p.IsAdmin() {
		t.Fatalf("fresh sign-in: %v", err)
	}
	// Ten minutes later (by the RP's clock, well within the token's hour),
	// the same kind of sign-in is too old for a five-minute step-up...
	l, code = login()
	l2, code2 := login()
	clock.Advance(10 * time.Minute)
	_, _, err := rp.FinishMaxAge(background, code, l.CodeVerifier, l.Nonce, l.MaxAge)
	wantCode(t, err, escrow.CodeUnauthenticated)
	if !strings.Contains(escrow.ErrorMessage(err), "too old") {
		t.Fatalf("stale sign-in: %v", err)
	}
	// ...but fine when no max age is asked: the refusal was the max age.
	if _, authTime, err := rp.Finish(background, code2, l2.CodeVerifier, l2.Nonce); err != nil || clock.Now().Sub(authTime) < 10*time.Minute {
		t.Fatalf("the same token without max age: %v (auth time %v)", err, authTime)
	}
}

func TestRPMaxAgeNeedsAuthTime(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, nil)
	l, err := rp.Begin(background, auth.BeginOptions{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	code := e.signIn(t, l, "Alice")
	// The issuer answers with a token that has the right nonce but no
	// auth_time: it may not satisfy a max age.
	e.setTokenOverride(func(w http.ResponseWriter, r *http.Request) {
		tok := auth.MintWithClaims(t, e.d, auth.DemoUsers()[0], map[string]any{"nonce": l.Nonce})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"id_token": tok, "token_type": "Bearer"})
	})
	_, _, err = rp.FinishMaxAge(background, code, l.CodeVerifier, l.Nonce, l.MaxAge)
	wantCode(t, err, escrow.CodeUnauthenticated)
	if !strings.Contains(escrow.ErrorMessage(err), "did not say when") {
		t.Fatalf("a token without auth_time under max age: %v", err)
	}
	// Without max age the same token is fine, and iat stands for auth_time.
	if _, authTime, err := rp.Finish(background, code, l.CodeVerifier, l.Nonce); err != nil || time.Since(authTime) > 5*time.Second {
		t.Fatalf("without max age: %v (auth time %v)", err, authTime)
	}
}

func TestRPConfidentialClient(t *testing.T) {
	e := newOIDC(t)
	rp := e.rp(t, nil, func(c *auth.RPConfig) { c.ClientSecret = "s3cret/+&" })
	l, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rp.Finish(background, e.signIn(t, l, "Alice"), l.CodeVerifier, l.Nonce); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	r := e.lastTokenRequest(t)
	req := &http.Request{Header: http.Header{"Authorization": {r.authorization}}}
	user, pass, ok := req.BasicAuth()
	if !ok || user != audience || pass != url.QueryEscape("s3cret/+&") {
		t.Fatalf("Basic credentials %q:%q, want the client id and the form-encoded secret", user, pass)
	}
	if r.form.Has("client_secret") || r.form.Get("client_id") != audience || r.form.Get("code_verifier") != l.CodeVerifier {
		t.Fatalf("token form %v", r.form)
	}
}

func TestRPDoesNotFollowTokenRedirects(t *testing.T) {
	e := newOIDC(t)
	var stolen atomic.Int64
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen.Add(1) }))
	t.Cleanup(thief.Close)
	e.setTokenOverride(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, thief.URL+"/token", http.StatusTemporaryRedirect) // 307 would re-post the code
	})
	rp := e.rp(t, nil, nil)
	l, err := rp.Begin(background, auth.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = rp.Finish(background, e.signIn(t, l, "Alice"), l.CodeVerifier, l.Nonce)
	if err == nil || stolen.Load() != 0 {
		t.Fatalf("Finish: %v; the redirect target got %d requests", err, stolen.Load())
	}
}

func TestRPIssuerDown(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		issuer := srv.URL + "/dev/oidc"
		srv.Close()
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuer, Audience: audience})
		if err != nil {
			t.Fatal(err)
		}
		rp, err := auth.NewRP(auth.RPConfig{Issuer: issuer, ClientID: audience, RedirectURL: "http://127.0.0.1/cb", Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		_, err = rp.Begin(background, auth.BeginOptions{})
		wantCode(t, err, escrow.CodeUnavailable)
		_, _, err = rp.Finish(background, "code", verifierA, "nonce")
		wantCode(t, err, escrow.CodeUnavailable)
	})
	t.Run("5xx then back", func(t *testing.T) {
		e := newOIDC(t)
		rp := e.rp(t, nil, nil)
		e.down.Store(true)
		_, err := rp.Begin(background, auth.BeginOptions{})
		wantCode(t, err, escrow.CodeUnavailable)
		e.down.Store(false)
		l, err := rp.Begin(background, auth.BeginOptions{}) // the failure was not cached
		if err != nil {
			t.Fatalf("Begin after the issuer came back: %v", err)
		}
		code := e.signIn(t, l, "Alice")
		e.down.Store(true) // discovery is cached; the token call fails
		_, _, err = rp.Finish(background, code, l.CodeVerifier, l.Nonce)
		wantCode(t, err, escrow.CodeUnavailable)
	})
}

func TestRPDiscoveryChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		doc  func(base string) map[string]any
	}{
		{"other issuer", func(base string) map[string]any {
			return map[string]any{"issuer": "https://evil.example", "authorization_endpoint": base + "/a", "token_endpoint": base + "/t"}
		}},
		{"no S256", func(base string) map[string]any {
			return map[string]any{"issuer": base, "authorization_endpoint": base + "/a", "token_endpoint": base + "/t",
				"code_challenge_methods_supported": []string{"plain"}}
		}},
		{"relative token endpoint", func(base string) map[string]any {
			return map[string]any{"issuer": base, "authorization_endpoint": base + "/a", "token_endpoint": "/t"}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewEncoder(w).Encode(c.doc(srv.URL))
			}))
			t.Cleanup(srv.Close)
			v, _ := auth.NewVerifier(auth.VerifierConfig{Issuer: srv.URL, Audience: audience, HTTPClient: srv.Client()})
			rp, err := auth.NewRP(auth.RPConfig{Issuer: srv.URL, ClientID: audience, RedirectURL: "http://127.0.0.1/cb", Verifier: v, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = rp.Begin(background, auth.BeginOptions{})
			wantCode(t, err, escrow.CodeInternal)
		})
	}
}

func TestNewRPChecksConfig(t *testing.T) {
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: "https://id.example", Audience: "escrow"})
	if err != nil {
		t.Fatal(err)
	}
	good := auth.RPConfig{Issuer: "https://id.example", ClientID: "escrow", RedirectURL: "https://escrow.example/auth/callback", Verifier: v}
	if _, err := auth.NewRP(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, edit := range map[string]func(*auth.RPConfig){
		"no issuer":           func(c *auth.RPConfig) { c.Issuer = "" },
		"no client":           func(c *auth.RPConfig) { c.ClientID = "" },
		"no verifier":         func(c *auth.RPConfig) { c.Verifier = nil },
		"verifier's issuer":   func(c *auth.RPConfig) { c.Issuer = "https://other.example" },
		"verifier's audience": func(c *auth.RPConfig) { c.ClientID = "other" },
		"relative redirect":   func(c *auth.RPConfig) { c.RedirectURL = "/auth/callback" },
		"no redirect":         func(c *auth.RPConfig) { c.RedirectURL = "" },
	} {
		c := good
		edit(&c)
		if _, err := auth.NewRP(c); err == nil {
			t.Errorf("%s: NewRP accepted %+v", name, c)
		}
	}
}
