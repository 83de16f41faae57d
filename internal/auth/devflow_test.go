package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auth"
)

func TestPKCEKnownAnswer(t *testing.T) {
	// RFC 7636 Appendix B.
	if got := challengeOf(verifierA); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("challenge %q", got)
	}
	// The issuer agrees: a code bound to the RFC's challenge redeems with
	// the RFC's verifier.
	e := newOIDC(t)
	params := e.authzParams(verifierA)
	params.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	if a := e.token(t, e.tokenForm(e.code(t, params, "alice"), verifierA)); a.status != 200 {
		t.Fatalf("token: %d %v", a.status, a.body)
	}
}

func TestDevDiscoveryAdvertisesCodeFlow(t *testing.T) {
	e := newOIDC(t)
	resp, err := e.srv.Client().Get(e.issuerURL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	strs := func(k string) []string {
		var out []string
		list, _ := doc[k].([]any)
		for _, v := range list {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	switch {
	case doc["authorization_endpoint"] != e.issuerURL+"/authorize",
		doc["token_endpoint"] != e.issuerURL+"/token",
		!slices.Equal(strs("response_types_supported"), []string{"code", "id_token"}),
		!slices.Equal(strs("grant_types_supported"), []string{"authorization_code"}),
		!slices.Equal(strs("code_challenge_methods_supported"), []string{"S256"}),
		!slices.Equal(strs("token_endpoint_auth_methods_supported"), []string{"none"}),
		!slices.Contains(strs("claims_supported"), "nonce"),
		!slices.Contains(strs("claims_supported"), "auth_time"):
		t.Fatalf("discovery: %v", doc)
	}
}

func TestAuthorizePage(t *testing.T) {
	e := newOIDC(t)
	params := e.authzParams(verifierA)
	params.Set("login_hint", "carol")
	p := e.get(t, e.issuerURL+"/authorize?"+params.Encode())
	if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET authorize: %d %s\n%s", p.status, p.header.Get("Content-Type"), p.body)
	}
	for _, want := range []string{
		`<title>Escrow dev sign-in</title>`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`development identity provider`,
		`<html lang="en">`,
		`alice@example.com · groups: engineering`,
		`roles: admin`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	h := p.header
	if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self' "+e.srv.URL) {
		t.Errorf("headers: %v", h)
	}
	action, hidden, buttons := p.form(t)
	if action.String() != e.issuerURL+"/authorize" {
		t.Errorf("form posts to %s, want the authorize endpoint under the mount", action)
	}
	for k := range params {
		if hidden.Get(k) != params.Get(k) {
			t.Errorf("hidden %s = %q, want %q", k, hidden.Get(k), params.Get(k))
		}
	}
	var texts []string
	for _, b := range buttons {
		texts = append(texts, b.text)
	}
	want := []string{"Sign in as Carol", "Sign in as Alice", "Sign in as Bob", "Sign in as Admin", "Sign in as Auditor", "Cancel"}
	if !slices.Equal(texts, want) {
		t.Fatalf("buttons %q, want %q (the hinted user first)", texts, want)
	}
	if !buttons[0].autofocus || buttons[1].autofocus || buttons[0].name != "user" || buttons[0].value != "carol" {
		t.Errorf("first button %+v should be carol's and autofocused, alone", buttons[0])
	}
}

func TestAuthorizePageEscapes(t *testing.T) {
	e := newOIDC(t)
	if err := e.d.SetUsers([]auth.DevUser{{Subject: `x"y`, Name: `<img src=x onerror=alert(1)>`, Email: "<b>@example.com"}}); err != nil {
		t.Fatal(err)
	}
	params := e.authzParams(verifierA)
	params.Set("state", `"><script>alert(1)</script>`)
	p := e.get(t, e.issuerURL+"/authorize?"+params.Encode())
	if p.status != 200 {
		t.Fatalf("status %d", p.status)
	}
	for _, bad := range []string{"<script>alert", "<img src", "<b>@"} {
		if strings.Contains(p.body, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	if !strings.Contains(p.body, "Sign in as &lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the name is not shown escaped:\n%s", p.body)
	}
	// The escaped values still round-trip through the form.
	q := e.callback(t, e.press(t, p, "Sign in as <img src=x onerror=alert(1)>"))
	if q.Get("state") != `"><script>alert(1)</script>` {
		t.Fatalf("state came back as %q", q.Get("state"))
	}
}

func TestSetUsers(t *testing.T) {
	e := newOIDC(t)
	if err := e.d.SetUsers([]auth.DevUser{{Subject: "a"}, {Subject: "a"}}); err == nil {
		t.Error("duplicate subjects accepted")
	}
	if err := e.d.SetUsers([]auth.DevUser{{Name: "No Subject"}}); err == nil {
		t.Error("a user without a subject accepted")
	}
	if err := e.d.SetUsers([]auth.DevUser{{Subject: "zed", Name: "Zed"}}); err != nil {
		t.Fatal(err)
	}
	params := e.authzParams(verifierA)
	p := e.get(t, e.issuerURL+"/authorize?"+params.Encode())
	if !strings.Contains(p.body, "Sign in as Zed") || strings.Contains(p.body, "Sign in as Alice") {
		t.Fatalf("page does not list exactly the set users:\n%s", p.body)
	}
	form := url.Values{}
	for k, v := range params {
		form[k] = v
	}
	form.Set("user", "alice") // no longer offered
	if p := e.post(t, e.issuerURL+"/authorize", form); p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
		t.Fatalf("signing in as a user not offered: %d", p.status)
	}
	if err := e.d.SetUsers(nil); err != nil {
		t.Fatal(err)
	}
	if p := e.get(t, e.issuerURL+"/authorize?"+params.Encode()); !strings.Contains(p.body, "Sign in as Alice") {
		t.Fatal("SetUsers(nil) did not restore the demo users")
	}
}

func TestAuthorizeRefuses(t *testing.T) {
	e := newOIDC(t)
	cases := []struct {
		name string
		edit func(url.Values)
		want string // in the error page
	}{
		{"foreign redirect", func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") }, "loopback"},
		{"look-alike loopback", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1.evil.example/cb") }, "loopback"},
		{"look-alike localhost", func(v url.Values) { v.Set("redirect_uri", "http://localhost.evil.example/cb") }, "loopback"},
		{"relative redirect", func(v url.Values) { v.Set("redirect_uri", "/callback") }, "absolute"},
		{"script redirect", func(v url.Values) { v.Set("redirect_uri", "javascript:alert(1)") }, "absolute"},
		{"fragment", func(v url.Values) { v.Set("redirect_uri", e.srv.URL+"/callback#x") }, "fragment"},
		{"credentials", func(v url.Values) { v.Set("redirect_uri", "http://u:p@127.0.0.1/cb") }, "credentials"},
		{"no redirect", func(v url.Values) { v.Del("redirect_uri") }, "redirect_uri is missing"},
		{"other client", func(v url.Values) { v.Set("client_id", "someone-else") }, "unknown client_id"},
		{"implicit", func(v url.Values) { v.Set("response_type", "id_token") }, "response_type"},
		{"plain challenge", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "S256"},
		{"no method", func(v url.Values) { v.Del("code_challenge_method") }, "S256"},
		{"no challenge", func(v url.Values) { v.Del("code_challenge") }, "PKCE is required"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, "43 to 128"},
		{"repeated state", func(v url.Values) { v.Add("state", "two") }, "repeated"},
		{"no openid scope", func(v url.Values) { v.Set("scope", "profile") }, "openid"},
		{"bad prompt", func(v url.Values) { v.Set("prompt", "maybe") }, "prompt"},
		{"negative max_age", func(v url.Values) { v.Set("max_age", "-1") }, "max_age"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			params := e.authzParams(verifierA)
			c.edit(params)
			check := func(method string, p page) {
				t.Helper()
				if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
					t.Fatalf("%s: status %d, Location %q; want 400 and no redirect", method, p.status, p.header.Get("Location"))
				}
				if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || !strings.Contains(p.body, c.want) {
					t.Fatalf("%s: error page lacks %q:\n%s", method, c.want, p.body)
				}
			}
			check("GET", e.get(t, e.issuerURL+"/authorize?"+params.Encode()))
			// The form is checked again: a forged post is refused too.
			params.Set("user", "alice")
			check("POST", e.post(t, e.issuerURL+"/authorize", params))
		})
	}
}

func TestAuthorizeRedirectHosts(t *testing.T) {
	// An issuer on a non-loopback origin: loopback redirects and its own
	// origin are fine, nothing else.
	d, err := auth.OpenDevIssuer(filepath.Join(t.TempDir(), "k.pem"), "https://escrow.test/dev/oidc", audience)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	for redirect, ok := range map[string]bool{
		"http://localhost:5173/auth/callback":          true,
		"http://LOCALHOST/cb":                          true,
		"http://127.0.0.1/cb":                          true,
		"http://127.0.0.2:9/cb":                        true,
		"http://[::1]:8080/cb":                         true,
		"https://escrow.test/auth/callback":            true,
		"https://escrow.test:444/cb":                   false,
		"http://escrow.test/cb":                        false,
		"https://escrow.test.evil.example/cb":          false,
		"https://evil.example/?x=https://escrow.test/": false,
		"http://10.0.0.1/cb":                           false,
	} {
		v := url.Values{"response_type": {"code"}, "client_id": {audience}, "redirect_uri": {redirect},
			"code_challenge": {challengeOf(verifierA)}, "code_challenge_method": {"S256"}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/authorize?"+v.Encode(), nil))
		if got := rec.Code == http.StatusOK; got != ok {
			t.Errorf("redirect_uri %s: status %d, want accepted=%v", redirect, rec.Code, ok)
		}
	}
}

func TestAuthorizeCancelAndPromptNone(t *testing.T) {
	e := newOIDC(t)
	params := e.authzParams(verifierA)
	q := e.callback(t, e.press(t, e.get(t, e.issuerURL+"/authorize?"+params.Encode()), "Cancel"))
	if q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Has("code") {
		t.Fatalf("cancel: %v", q)
	}
	params.Set("prompt", "none")
	q = e.callback(t, e.get(t, e.issuerURL+"/authorize?"+params.Encode()))
	if q.Get("error") != "login_required" || q.Get("state") != "st" {
		t.Fatalf("prompt=none: %v", q)
	}
}

func TestAuthorizeKeepsRedirectQuery(t *testing.T) {
	e := newOIDC(t)
	params := e.authzParams(verifierA)
	params.Set("redirect_uri", e.srv.URL+"/callback?tenant=a&state=forged")
	p := e.post(t, e.issuerURL+"/authorize", withUser(params, "bob"))
	if p.status != http.StatusSeeOther {
		t.Fatalf("status %d", p.status)
	}
	loc, _ := url.Parse(p.header.Get("Location"))
	q := loc.Query()
	if q.Get("tenant") != "a" || q.Get("code") == "" || !slices.Equal(q["state"], []string{"st"}) {
		t.Fatalf("callback query %v: want tenant kept, one state (the request's), a code", q)
	}
	// The code is bound to the redirect URI with its query.
	form := e.tokenForm(q.Get("code"), verifierA)
	form.Set("redirect_uri", e.srv.URL+"/callback?tenant=a&state=forged")
	if a := e.token(t, form); a.status != 200 {
		t.Fatalf("token: %d %v", a.status, a.body)
	}
}

func withUser(params url.Values, user string) url.Values {
	form := url.Values{"user": {user}}
	for k, v := range params {
		form[k] = v
	}
	return form
}

func TestTokenExchange(t *testing.T) {
	e := newOIDC(t)
	code := e.code(t, e.authzParams(verifierA), "carol")
	before := time.Now().Truncate(time.Second)
	a := e.token(t, e.tokenForm(code, verifierA))
	if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %v %v", a.status, a.header, a.body)
	}
	idToken, _ := a.body["id_token"].(string)
	if idToken == "" || a.body["access_token"] != idToken || a.body["token_type"] != "Bearer" || a.body["expires_in"] != float64(3600) {
		t.Fatalf("token response %v", a.body)
	}
	v := e.verifier(t, nil)
	for i := range 2 { // the second call is answered from the verified-token cache
		p, claims, err := v.VerifyID(background, idToken)
		if err != nil {
			t.Fatalf("VerifyID #%d: %v", i, err)
		}
		if p.Subject != "carol" || !slices.Equal(p.Groups, []string{"engineering", "oncall"}) {
			t.Fatalf("principal %+v", p)
		}
		if claims.Nonce != "n-0S6_WzA2Mj" || claims.AuthTime.Before(before) || claims.AuthTime.After(time.Now()) ||
			claims.IssuedAt.IsZero() || !slices.Equal(claims.Audience, []string{audience}) {
			t.Fatalf("claims #%d: %+v", i, claims)
		}
	}
	if p, err := v.Verify(background, idToken); err != nil || p.Subject != "carol" {
		t.Fatalf("Verify: %v", err)
	}
}

func TestTokenRefuses(t *testing.T) {
	e := newOIDC(t)
	cases := []struct {
		name      string
		edit      func(form url.Values)
		want      string
		codeSpent bool // the code cannot be redeemed afterwards
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", verifierB) }, "invalid_grant", true},
		{"wrong redirect_uri", func(f url.Values) { f.Set("redirect_uri", e.srv.URL+"/other") }, "invalid_grant", true},
		{"wrong client_id", func(f url.Values) { f.Set("client_id", "other-client") }, "invalid_client", false},
		{"unknown code", func(f url.Values) { f.Set("code", "not-a-code") }, "invalid_grant", false},
		{"no verifier", func(f url.Values) { f.Del("code_verifier") }, "invalid_request", false},
		{"short verifier", func(f url.Values) { f.Set("code_verifier", "abc") }, "invalid_request", false},
		{"verifier with bad characters", func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 42)+"+") }, "invalid_request", false},
		{"challenge as verifier", func(f url.Values) { f.Set("code_verifier", challengeOf(verifierA)) }, "invalid_grant", true},
		{"no code", func(f url.Values) { f.Del("code") }, "invalid_request", false},
		{"no grant type", func(f url.Values) { f.Del("grant_type") }, "invalid_request", false},
		{"other grant type", func(f url.Values) { f.Set("grant_type", "client_credentials") }, "unsupported_grant_type", false},
		{"repeated code", func(f url.Values) { f.Add("code", "x") }, "invalid_request", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code := e.code(t, e.authzParams(verifierA), "alice")
			form := e.tokenForm(code, verifierA)
			c.edit(form)
			a := e.token(t, form)
			if a.status != http.StatusBadRequest || a.err() != c.want || a.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("status %d, %v, Cache-Control %q; want 400 %s", a.status, a.body, a.header.Get("Cache-Control"), c.want)
			}
			if _, ok := a.body["id_token"]; ok {
				t.Fatal("an error answer carries a token")
			}
			a = e.token(t, e.tokenForm(code, verifierA))
			if spent := a.status != 200; spent != c.codeSpent {
				t.Fatalf("the right request afterwards: %d %v; want code spent=%v", a.status, a.body, c.codeSpent)
			}
		})
	}
}

func TestTokenCodeReplay(t *testing.T) {
	e := newOIDC(t)
	code := e.code(t, e.authzParams(verifierA), "alice")
	if a := e.token(t, e.tokenForm(code, verifierA)); a.status != 200 {
		t.Fatalf("first use: %d %v", a.status, a.body)
	}
	if a := e.token(t, e.tokenForm(code, verifierA)); a.status != 400 || a.err() != "invalid_grant" {
		t.Fatalf("replay: %d %v, want invalid_grant", a.status, a.body)
	}
}

func TestTokenCodeExpires(t *testing.T) {
	e := newOIDC(t)
	young := e.code(t, e.authzParams(verifierA), "alice")
	old := e.code(t, e.authzParams(verifierA), "alice")
	e.clock.Advance(auth.DevCodeTTL - time.Second)
	if a := e.token(t, e.tokenForm(young, verifierA)); a.status != 200 {
		t.Fatalf("a code one second from expiry: %d %v", a.status, a.body)
	}
	e.clock.Advance(time.Second)
	if a := e.token(t, e.tokenForm(old, verifierA)); a.status != 400 || a.err() != "invalid_grant" || a.body["error_description"] != "code expired" {
		t.Fatalf("an expired code: %d %v, want invalid_grant", a.status, a.body)
	}
	if auth.DevCodeTTL != 60*time.Second {
		t.Fatalf("codes live %v, want 60s", auth.DevCodeTTL)
	}
}

func TestTokenClientAuth(t *testing.T) {
	e := newOIDC(t)
	// A confidential client's secret is ignored, in the body or in Basic.
	form := e.tokenForm(e.code(t, e.authzParams(verifierA), "alice"), verifierA)
	form.Set("client_secret", "whatever")
	if a := e.token(t, form); a.status != 200 {
		t.Fatalf("client_secret in the body: %d %v", a.status, a.body)
	}
	post := func(form url.Values, user string) tokenAnswer {
		req, _ := http.NewRequest(http.MethodPost, e.issuerURL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, "secret")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := tokenAnswer{status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&a.body)
		return a
	}
	form = e.tokenForm(e.code(t, e.authzParams(verifierA), "alice"), verifierA)
	form.Del("client_id")
	if a := post(form, audience); a.status != 200 {
		t.Fatalf("client_id in Basic only: %d %v", a.status, a.body)
	}
	form = e.tokenForm(e.code(t, e.authzParams(verifierA), "alice"), verifierA)
	if a := post(form, "someone-else"); a.status != 400 || a.err() != "invalid_request" {
		t.Fatalf("client_id differing between body and Basic: %d %v", a.status, a.body)
	}
	// The body must be a form.
	req, _ := http.NewRequest(http.MethodPost, e.issuerURL+"/token", strings.NewReader(`{"grant_type":"authorization_code"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("JSON body: %d", resp.StatusCode)
	}
	resp, err = e.srv.Client().Get(e.issuerURL + "/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /token: %d", resp.StatusCode)
	}
}
