package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// oidcEnv is a dev issuer mounted as the dev server mounts it (under
// /dev/oidc, prefix stripped) on a real HTTP server, with switches to take
// it down, replace its token endpoint and record token requests.
type oidcEnv struct {
	d         *auth.DevIssuer
	srv       *httptest.Server
	issuerURL string
	keyPath   string
	clock     *fakeClock // the dev issuer's
	// browser never follows redirects, so tests see each 303.
	browser *http.Client

	down          atomic.Bool
	mu            sync.Mutex
	tokenOverride http.HandlerFunc
	tokenRequests []recordedRequest
}

type recordedRequest struct {
	method, contentType, authorization string
	form                               url.Values
}

func newOIDC(t *testing.T) *oidcEnv {
	t.Helper()
	e := &oidcEnv{keyPath: filepath.Join(t.TempDir(), "issuer.pem"), clock: &fakeClock{t: time.Now()}}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.issuerURL = e.srv.URL + "/dev/oidc"
	d, err := auth.OpenDevIssuer(e.keyPath, e.issuerURL, audience)
	if err != nil {
		t.Fatalf("OpenDevIssuer: %v", err)
	}
	auth.SetDevClock(d, e.clock)
	e.d = d
	inner := http.StripPrefix("/dev/oidc", d.Handler())
	mux.HandleFunc("/dev/oidc/", func(w http.ResponseWriter, r *http.Request) {
		if e.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/dev/oidc/token" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			e.mu.Lock()
			e.tokenRequests = append(e.tokenRequests, recordedRequest{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), form})
			override := e.tokenOverride
			e.mu.Unlock()
			if override != nil {
				override(w, r)
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	e.browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *oidcEnv) setTokenOverride(h http.HandlerFunc) {
	e.mu.Lock()
	e.tokenOverride = h
	e.mu.Unlock()
}

func (e *oidcEnv) lastTokenRequest(t *testing.T) recordedRequest {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.tokenRequests) == 0 {
		t.Fatal("no token request was made")
	}
	return e.tokenRequests[len(e.tokenRequests)-1]
}

// verifier returns a verifier for the env's issuer, telling time by clock
// (nil: the system clock).
func (e *oidcEnv) verifier(t *testing.T, clock escrow.Clock) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: e.issuerURL, Audience: audience, HTTPClient: e.srv.Client(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rp returns a relying party redirecting to the env's own /callback.
func (e *oidcEnv) rp(t *testing.T, clock escrow.Clock, edit func(*auth.RPConfig)) *auth.RP {
	t.Helper()
	cfg := auth.RPConfig{Issuer: e.issuerURL, ClientID: audience, RedirectURL: e.srv.URL + "/callback",
		Verifier: e.verifier(t, clock), HTTPClient: e.srv.Client()}
	if edit != nil {
		edit(&cfg)
	}
	rp, err := auth.NewRP(cfg)
	if err != nil {
		t.Fatalf("NewRP: %v", err)
	}
	return rp
}

// page is a fetched HTML page.
type page struct {
	status int
	header http.Header
	body   string
	url    *url.URL
}

func (e *oidcEnv) get(t *testing.T, u string) page {
	t.Helper()
	resp, err := e.browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(body), resp.Request.URL}
}

func (e *oidcEnv) post(t *testing.T, u string, form url.Values) page {
	t.Helper()
	resp, err := e.browser.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(body), resp.Request.URL}
}

type button struct {
	name, value, text string
	autofocus         bool
}

var (
	formRE   = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	buttonRE = regexp.MustCompile(`<button type="submit" name="([^"]*)" value="([^"]*)"([^>]*)>([^<]*)</button>`)
)

// form reads the sign-in page's one form: where it posts, its hidden
// fields and its buttons, in page order.
func (p page) form(t *testing.T) (*url.URL, url.Values, []button) {
	t.Helper()
	forms := formRE.FindAllStringSubmatch(p.body, -1)
	if len(forms) != 1 || strings.Count(p.body, "<form") != 1 {
		t.Fatalf("want exactly one POST form, page:\n%s", p.body)
	}
	action, err := p.url.Parse(html.UnescapeString(forms[0][1]))
	if err != nil {
		t.Fatal(err)
	}
	hidden := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		hidden.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	var buttons []button
	for _, m := range buttonRE.FindAllStringSubmatch(p.body, -1) {
		buttons = append(buttons, button{html.UnescapeString(m[1]), html.UnescapeString(m[2]),
			html.UnescapeString(m[4]), strings.Contains(m[3], "autofocus")})
	}
	return action, hidden, buttons
}

// press submits the page's form with the button whose text is text, as a
// browser would, and returns the answer (a 303, unfollowed).
func (e *oidcEnv) press(t *testing.T, p page, text string) page {
	t.Helper()
	action, hidden, buttons := p.form(t)
	for _, b := range buttons {
		if b.text == text {
			hidden.Set(b.name, b.value)
			return e.post(t, action.String(), hidden)
		}
	}
	t.Fatalf("no button %q on the page; buttons: %+v", text, buttons)
	return page{}
}

// callback checks a 303 to the RP's callback and returns its query.
func (e *oidcEnv) callback(t *testing.T, p page) url.Values {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body:\n%s", p.status, p.body)
	}
	loc, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != e.srv.URL+"/callback" {
		t.Fatalf("redirected to %s, want the callback", got)
	}
	return loc.Query()
}

// signIn runs a login to the callback as the user named name and returns
// the code, checking the state came back.
func (e *oidcEnv) signIn(t *testing.T, l *auth.Login, name string) string {
	t.Helper()
	q := e.callback(t, e.press(t, e.get(t, l.URL), "Sign in as "+name))
	if q.Get("state") != l.State {
		t.Fatalf("state %q came back, want %q", q.Get("state"), l.State)
	}
	if q.Get("code") == "" {
		t.Fatalf("no code in the callback: %v", q)
	}
	return q.Get("code")
}

// authzParams are a valid authorization request's parameters for verifier.
func (e *oidcEnv) authzParams(verifier string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {audience},
		"redirect_uri":          {e.srv.URL + "/callback"},
		"scope":                 {"openid profile email"},
		"state":                 {"st"},
		"nonce":                 {"n-0S6_WzA2Mj"},
		"code_challenge":        {challengeOf(verifier)},
		"code_challenge_method": {"S256"},
	}
}

// code gets a code straight from POST /authorize.
func (e *oidcEnv) code(t *testing.T, params url.Values, user string) string {
	t.Helper()
	form := url.Values{}
	for k, v := range params {
		form[k] = v
	}
	form.Set("user", user)
	return e.callback(t, e.post(t, e.issuerURL+"/authorize", form)).Get("code")
}

// tokenAnswer is a decoded answer from /token.
type tokenAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a tokenAnswer) err() string { s, _ := a.body["error"].(string); return s }

func (e *oidcEnv) token(t *testing.T, form url.Values) tokenAnswer {
	t.Helper()
	resp, err := e.srv.Client().PostForm(e.issuerURL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := tokenAnswer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("token answer (status %d) is not JSON: %v", resp.StatusCode, err)
	}
	return a
}

func (e *oidcEnv) tokenForm(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {e.srv.URL + "/callback"},
		"client_id":     {audience},
		"code_verifier": {verifier},
	}
}

// A fixed, valid PKCE verifier and another.
const (
	verifierA = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 Appendix B
	verifierB = "Zm9vYmFyLWJhei1xdXV4LWNvcmdlLWdyYXVsdC1nYXJwbHk"
)

// challengeOf is the S256 challenge of verifier (RFC 7636 §4.2).
func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func wantCode(t *testing.T, err error, code escrow.Code) {
	t.Helper()
	if escrow.ErrorCode(err) != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

var background = context.Background()
