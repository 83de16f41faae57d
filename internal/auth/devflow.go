package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The dev issuer's Authorization Code flow (RFC 6749 §4.1, RFC 7636 PKCE,
// OpenID Connect Core §3.1). There is no session and no password: every
// visit to /authorize asks which user to be, so every sign-in is a fresh
// authentication and prompt=login and max_age are always satisfied.

const (
	// devCodeTTL is how long an authorization code can be exchanged.
	devCodeTTL = 60 * time.Second
	// devIDTokenTTL is the lifetime of tokens /token issues.
	devIDTokenTTL = time.Hour
	// devMaxCodes bounds the live codes, so a loop posting the sign-in form
	// cannot grow memory without limit.
	devMaxCodes = 10000
	// devMaxForm bounds the body of POST /authorize and /token.
	devMaxForm = 64 << 10
	// devMaxParam bounds each request parameter.
	devMaxParam = 2048
)

// authCode is what an authorization code stands for.
type authCode struct {
	clientID, redirectURI string
	challenge, nonce      string
	user                  DevUser
	authTime, expires     time.Time
}

// authzRequest holds the parameters of an authorization request.
type authzRequest struct {
	ResponseType, ClientID, RedirectURI, Scope, State, Nonce string
	CodeChallenge, CodeChallengeMethod                       string
	Prompt, MaxAge, LoginHint                                string

	redirect *url.URL // RedirectURI, parsed; set once validated
}

// authzParams names the parameters carried from the page to its form, in
// the order they are written.
var authzParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint"}

func (a *authzRequest) field(name string) *string {
	switch name {
	case "response_type":
		return &a.ResponseType
	case "client_id":
		return &a.ClientID
	case "redirect_uri":
		return &a.RedirectURI
	case "scope":
		return &a.Scope
	case "state":
		return &a.State
	case "nonce":
		return &a.Nonce
	case "code_challenge":
		return &a.CodeChallenge
	case "code_challenge_method":
		return &a.CodeChallengeMethod
	case "prompt":
		return &a.Prompt
	case "max_age":
		return &a.MaxAge
	case "login_hint":
		return &a.LoginHint
	}
	panic("auth: unknown authorization parameter " + name)
}

// parseAuthz reads and validates an authorization request. Its error is
// safe to show on the error page; the caller redirects only when there is
// none, so nothing is ever sent to a redirect URI that failed a check.
func (d *DevIssuer) parseAuthz(form url.Values) (*authzRequest, error) {
	a := &authzRequest{}
	for _, name := range authzParams {
		vs := form[name]
		if len(vs) > 1 {
			return a, fmt.Errorf("parameter %s is repeated", name)
		}
		if len(vs) == 1 {
			if len(vs[0]) > devMaxParam {
				return a, fmt.Errorf("parameter %s is too long", name)
			}
			*a.field(name) = vs[0]
		}
	}
	// The redirect URI first: nothing may be sent to one that fails.
	if a.RedirectURI == "" {
		return a, errors.New("redirect_uri is missing")
	}
	u, err := d.checkRedirect(a.RedirectURI)
	if err != nil {
		return a, err
	}
	if a.ClientID != d.audience {
		return a, fmt.Errorf("unknown client_id %q", a.ClientID)
	}
	a.redirect = u
	if a.ResponseType != "code" {
		return a, fmt.Errorf("response_type must be \"code\", not %q", a.ResponseType)
	}
	if a.Scope != "" && !containsField(a.Scope, "openid") {
		return a, errors.New("scope must include openid")
	}
	if a.CodeChallenge == "" {
		return a, errors.New("code_challenge is missing: PKCE is required")
	}
	if a.CodeChallengeMethod != "S256" {
		return a, fmt.Errorf("code_challenge_method must be S256, not %q", a.CodeChallengeMethod)
	}
	if !pkceString(a.CodeChallenge) {
		return a, errors.New("code_challenge is not 43 to 128 characters of [A-Za-z0-9-._~]")
	}
	switch a.Prompt {
	case "", "login", "none", "consent", "select_account":
	default:
		return a, fmt.Errorf("unsupported prompt %q", a.Prompt)
	}
	if a.MaxAge != "" {
		if _, err := strconv.ParseUint(a.MaxAge, 10, 31); err != nil {
			return a, errors.New("max_age must be a non-negative number of seconds")
		}
	}
	return a, nil
}

func containsField(s, want string) bool {
	for f := range strings.FieldsSeq(s) {
		if f == want {
			return true
		}
	}
	return false
}

// checkRedirect accepts an absolute http(s) URL without credentials or
// fragment whose host is loopback (a console on the developer's machine) or
// whose origin is the issuer's (a console served by the same dev server).
func (d *DevIssuer) checkRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("redirect_uri must be an absolute http or https URL")
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("redirect_uri must not carry credentials or a fragment")
	}
	if isLoopback(u.Hostname()) || (u.Scheme == d.origin.Scheme && strings.EqualFold(u.Host, d.origin.Host)) {
		return u, nil
	}
	return nil, errors.New("redirect_uri must be on a loopback host (localhost, 127.0.0.1, ::1) or on the issuer's own origin")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pkceString reports whether s has the syntax of an RFC 7636 code verifier
// (and of a code challenge): 43 to 128 unreserved characters.
func pkceString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// redirectTo sends the browser to the validated redirect URI with params
// added to its query.
func redirectTo(w http.ResponseWriter, r *http.Request, a *authzRequest, params url.Values) {
	u := *a.redirect
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if a.State != "" {
		q.Set("state", a.State)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// pageHeaders are those of every HTML page: no caching (they carry the
// request's state), no framing (clickjacking a sign-in button), no script.
func (d *DevIssuer) pageHeaders(w http.ResponseWriter, formTarget *url.URL) {
	csp := "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
	switch {
	case formTarget == nil:
		csp += "; form-action 'self'"
	case !strings.HasPrefix(formTarget.Host, "["):
		// Browsers apply form-action to the redirect that follows the
		// post; the target was validated, so its origin is a plain host.
		csp += "; form-action 'self' " + formTarget.Scheme + "://" + formTarget.Host
	default:
		// A CSP host source cannot name an IPv6 literal: rather than
		// block the redirect to one, do without form-action.
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func (d *DevIssuer) errorPage(w http.ResponseWriter, status int, msg string) {
	d.pageHeaders(w, nil)
	w.WriteHeader(status)
	_ = errorTmpl.Execute(w, struct {
		Title, Message string
	}{http.StatusText(status), msg})
}

func (d *DevIssuer) authorizePage(w http.ResponseWriter, r *http.Request) {
	a, err := d.parseAuthz(r.URL.Query())
	if err != nil {
		d.errorPage(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.Prompt == "none" {
		// No session here, so never a silent sign-in (OIDC Core §3.1.2.6).
		redirectTo(w, r, a, url.Values{"error": {"login_required"}})
		return
	}
	type userView struct {
		Index                int
		Subject, Label       string
		Email, Groups, Roles string
		Hinted               bool
	}
	var users []userView
	for _, u := range d.userList() {
		label := u.Name
		if label == "" {
			label = u.Subject
		}
		v := userView{Subject: u.Subject, Label: label, Email: u.Email,
			Groups: strings.Join(u.Groups, ", "), Roles: strings.Join(u.Roles, ", "),
			Hinted: a.LoginHint != "" && u.Subject == a.LoginHint}
		if v.Hinted {
			users = append([]userView{v}, users...)
		} else {
			users = append(users, v)
		}
	}
	for i := range users {
		users[i].Index = i
	}
	type param struct{ Name, Value string }
	var params []param
	for _, name := range authzParams {
		if v := *a.field(name); v != "" {
			params = append(params, param{name, v})
		}
	}
	d.pageHeaders(w, a.redirect)
	_ = pageTmpl.Execute(w, struct {
		Users  []userView
		Params []param
		Reauth bool
	}{users, params, a.Prompt == "login" || a.MaxAge != ""})
}

func (d *DevIssuer) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	// The page posts from the issuer's own origin; refuse another site's
	// form (login CSRF) when the browser says where the post comes from.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		d.errorPage(w, http.StatusForbidden, "this form may only be posted from the sign-in page")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, devMaxForm)
	if err := r.ParseForm(); err != nil {
		d.errorPage(w, http.StatusBadRequest, "the form could not be read")
		return
	}
	a, err := d.parseAuthz(r.PostForm)
	if err != nil {
		d.errorPage(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.PostForm.Has("cancel") {
		redirectTo(w, r, a, url.Values{"error": {"access_denied"}})
		return
	}
	sub := r.PostForm.Get("user")
	var user *DevUser
	for _, u := range d.userList() {
		if u.Subject == sub {
			user = &u
			break
		}
	}
	if user == nil {
		d.errorPage(w, http.StatusBadRequest, "unknown user")
		return
	}
	now := d.clock.Now()
	code := randomToken()
	c := &authCode{clientID: a.ClientID, redirectURI: a.RedirectURI, challenge: a.CodeChallenge,
		nonce: a.Nonce, user: *user, authTime: now, expires: now.Add(devCodeTTL)}
	if !d.putCode(code, c, now) {
		d.errorPage(w, http.StatusServiceUnavailable, "too many sign-ins in progress; try again in a minute")
		return
	}
	redirectTo(w, r, a, url.Values{"code": {code}})
}

// putCode stores a code, first dropping expired ones; it reports false if
// the store is full of live codes. Expired codes are swept when the store
// is full or a code lifetime has passed since the last sweep, so an insert
// costs O(1) amortised.
func (d *DevIssuer) putCode(code string, c *authCode, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.codes == nil {
		d.codes = make(map[string]*authCode)
	}
	if len(d.codes) >= devMaxCodes || !now.Before(d.nextSweep) {
		for k, old := range d.codes {
			if !now.Before(old.expires) {
				delete(d.codes, k)
			}
		}
		d.nextSweep = now.Add(devCodeTTL)
	}
	if len(d.codes) >= devMaxCodes {
		return false
	}
	d.codes[code] = c
	return true
}

// takeCode removes and returns a code: whatever the outcome of the
// exchange, a code is used once.
func (d *DevIssuer) takeCode(code string) *authCode {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.codes[code]
	delete(d.codes, code)
	return c
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pkceChallenge is the S256 challenge of verifier.
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tokenError answers a token request with an RFC 6749 §5.2 error.
func tokenError(w http.ResponseWriter, code, desc string) {
	writeTokenJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func writeTokenJSON(w http.ResponseWriter, status int, body any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (d *DevIssuer) token(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		tokenError(w, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, devMaxForm)
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request", "the body could not be read")
		return
	}
	form := r.PostForm // parameters in the URL are not read (RFC 6749 §3.2)
	for _, name := range []string{"grant_type", "code", "redirect_uri", "client_id", "code_verifier"} {
		if len(form[name]) > 1 {
			tokenError(w, "invalid_request", "parameter "+name+" is repeated")
			return
		}
	}
	// A public client names itself in the body. A confidential one may use
	// HTTP Basic; its secret is ignored, since the dev issuer has none.
	clientID := form.Get("client_id")
	if user, _, ok := r.BasicAuth(); ok {
		id, err := url.QueryUnescape(user)
		if err != nil || (clientID != "" && clientID != id) {
			tokenError(w, "invalid_request", "client_id in the body and the Authorization header differ")
			return
		}
		clientID = id
	}
	switch gt := form.Get("grant_type"); {
	case gt == "":
		tokenError(w, "invalid_request", "grant_type is missing")
		return
	case gt != "authorization_code":
		tokenError(w, "unsupported_grant_type", "only authorization_code is supported")
		return
	}
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	switch {
	case code == "":
		tokenError(w, "invalid_request", "code is missing")
		return
	case verifier == "":
		tokenError(w, "invalid_request", "code_verifier is missing: PKCE is required")
		return
	case !pkceString(verifier):
		tokenError(w, "invalid_request", "code_verifier is not 43 to 128 characters of [A-Za-z0-9-._~]")
		return
	case redirectURI == "":
		tokenError(w, "invalid_request", "redirect_uri is missing")
		return
	case clientID == "":
		tokenError(w, "invalid_request", "client_id is missing")
		return
	case clientID != d.audience:
		tokenError(w, "invalid_client", "unknown client")
		return
	}
	c := d.takeCode(code)
	now := d.clock.Now()
	switch {
	case c == nil:
		tokenError(w, "invalid_grant", "unknown or already used code")
		return
	case !now.Before(c.expires):
		tokenError(w, "invalid_grant", "code expired")
		return
	case c.clientID != clientID:
		tokenError(w, "invalid_grant", "code was issued to another client")
		return
	case c.redirectURI != redirectURI:
		tokenError(w, "invalid_grant", "redirect_uri does not match the authorization request")
		return
	case subtle.ConstantTimeCompare([]byte(pkceChallenge(verifier)), []byte(c.challenge)) != 1:
		tokenError(w, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}
	extra := map[string]any{"auth_time": c.authTime.Unix()}
	if c.nonce != "" {
		extra["nonce"] = c.nonce
	}
	tok, exp, err := d.mint(c.user, devIDTokenTTL, extra)
	if err != nil {
		writeTokenJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeTokenJSON(w, http.StatusOK, map[string]any{
		"id_token":     tok,
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(exp.Sub(now.Truncate(time.Second)) / time.Second),
		"scope":        "openid profile email",
	})
}

var pageTmpl = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Escrow dev sign-in</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<h1>Escrow dev sign-in</h1>
<p class="warn">This is the <strong>development identity provider</strong> of <code>escrow server -dev</code>: it signs you in as any demo user without a password. It must never face real users.</p>
{{- if .Reauth}}
<p>The application asked you to sign in again.</p>
{{- end}}
<form method="post" action="authorize" aria-labelledby="choose">
<h2 id="choose">Choose a demo user</h2>
{{- range .Params}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
<ul>
{{- range .Users}}
<li>
<button type="submit" name="user" value="{{.Subject}}" aria-describedby="user-{{.Index}}"{{if .Hinted}} autofocus{{end}}>Sign in as {{.Label}}</button>
<p id="user-{{.Index}}">{{if .Email}}{{.Email}}{{else}}{{.Subject}}{{end}} · groups: {{if .Groups}}{{.Groups}}{{else}}none{{end}} · roles: {{if .Roles}}{{.Roles}}{{else}}none{{end}}</p>
</li>
{{- end}}
</ul>
<button type="submit" name="cancel" value="1" class="cancel">Cancel</button>
</form>
</main>
</body>
</html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Escrow dev sign-in: {{.Title}}</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<h1>Escrow dev sign-in</h1>
<p role="alert">The sign-in request was refused: {{.Message}}.</p>
<p>Go back to the application and start again.</p>
</main>
</body>
</html>
`))

const pageCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;color:#111;background:#fff}
main{max-width:36rem;margin:0 auto}
.warn{background:#fff4ce;border-left:4px solid #b58100;padding:.5rem .75rem}
ul{list-style:none;padding:0}
li{margin:0 0 1rem}
li p{margin:.25rem 0 0;color:#444;font-size:.9rem}
button{font:inherit;padding:.5rem 1rem;min-height:44px;cursor:pointer;border:1px solid #335;border-radius:4px;background:#eef}
button:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
.cancel{background:#fff}`
