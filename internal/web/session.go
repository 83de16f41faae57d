package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
)

// session is the signed-in user of one request.
type session struct {
	escrow.Session
	id string // the cookie's value: never stored, never logged
}

// csrf is the session's CSRF token: an HMAC of a fixed label under the
// session's ID. Only the cookie's holder can compute it, and the store,
// which keeps just the ID's hash, cannot.
func (s *session) csrf() string {
	if s == nil {
		return ""
	}
	m := hmac.New(sha256.New, []byte(s.id))
	m.Write([]byte("escrow web csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *session) checkCSRF(token string) bool {
	want := s.csrf()
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// Cookie names. The __Host- prefix makes a browser refuse the cookie unless
// it is Secure, host-only and for path /; -dev on plain http cannot have it.
const (
	sessionCookieSecure = "__Host-escrow-session"
	sessionCookieDev    = "escrow-session"
	loginCookie         = "escrow-login"
	loginTTL            = 10 * time.Minute
	// stepUpMaxAge is how fresh the identity provider's authentication
	// must be on a step-up sign-in (OIDC max_age).
	stepUpMaxAge = time.Minute
)

func (c *console) sessionCookieName() string {
	if c.cfg.Insecure {
		return sessionCookieDev
	}
	return sessionCookieSecure
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Why a request has no session: an expired one is sent to sign in with
// expired=1.
var (
	errNoSession      = errors.New("not signed in")
	errSessionExpired = errors.New("your session has expired; sign in again")
)

// session returns the request's live session, checked against the clock.
func (c *console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(c.sessionCookieName())
	if err != nil || len(ck.Value) < 32 || len(ck.Value) > 128 {
		return nil, errNoSession
	}
	st, err := c.cfg.Sessions.GetSession(r.Context(), hashID(ck.Value))
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, errSessionExpired
	}
	if err != nil {
		return nil, err
	}
	if now := c.clock.Now(); !now.Before(st.Expires) {
		// Ended by the clock: remove it, so nothing (not even a clock set
		// back) revives it, and say so in the audit trail.
		ctx := escrow.NewContext(r.Context(), &st.Principal)
		rec := escrow.NewAuditRecord(ctx, now, escrow.ActionSessionLogout, "session")
		rec.Reason = "expired"
		if err := c.cfg.Sessions.DeleteSession(ctx, st.IDHash, rec); err != nil && !errors.Is(err, escrow.ErrNotFound) {
			return nil, err
		}
		return nil, errSessionExpired
	}
	return &session{Session: *st, id: ck.Value}, nil
}

// toLogin sends the browser to sign in, coming back to next.
func (c *console) toLogin(w http.ResponseWriter, r *http.Request, next string, why error) {
	if why != nil && !errors.Is(why, errNoSession) && !errors.Is(why, errSessionExpired) {
		c.fail(w, r, nil, why) // the store is down: say so rather than loop through sign-in
		return
	}
	q := url.Values{"next": {next}}
	if errors.Is(why, errSessionExpired) {
		q.Set("expired", "1")
	}
	http.Redirect(w, r, "/login?"+q.Encode(), http.StatusSeeOther)
}

// loginState is what the browser keeps (in an HttpOnly cookie scoped to
// /auth/) between leaving for the identity provider and coming back: it
// binds the answer to this browser (state) and proves the code is ours
// (PKCE verifier, nonce).
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"r"`
	StepUp   bool   `json:"u,omitempty"`
	Started  int64  `json:"t"`
}

// login starts a sign-in: GET /login?next=/path[&stepup=1]. With stepup
// the identity provider is asked to authenticate the user again (prompt
// login), for a decision that needs a recent sign-in.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	next := safePath(r.URL.Query().Get("next"))
	if next == "" {
		next = "/"
	}
	stepUp := r.URL.Query().Get("stepup") == "1"
	// A step-up asks for a fresh authentication (prompt=login, max_age),
	// and the callback refuses an auth_time older than that.
	opt := auth.BeginOptions{ForceLogin: stepUp}
	if stepUp {
		opt.MaxAge = stepUpMaxAge
	}
	if s, err := c.session(r); err == nil {
		opt.LoginHint = s.Principal.Subject
		if !stepUp {
			http.Redirect(w, r, next, http.StatusSeeOther) // already signed in
			return
		}
	}
	l, err := c.cfg.Login.Begin(r.Context(), opt)
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	b, err := json.Marshal(loginState{State: l.State, Nonce: l.Nonce, Verifier: l.CodeVerifier, Next: next,
		StepUp: stepUp, Started: c.clock.Now().Unix()})
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/auth/",
		MaxAge: int(loginTTL / time.Second), HttpOnly: true, Secure: !c.cfg.Insecure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, l.URL, http.StatusSeeOther)
}

// callback finishes a sign-in: it checks the state against this browser's
// cookie, exchanges the code (with the PKCE verifier) for an ID token that
// the verifier checks (and whose nonce must match), then makes a new
// session, ending the browser's old one.
func (c *console) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ls, ok := c.readLoginState(r)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/auth/", MaxAge: -1, HttpOnly: true,
		Secure: !c.cfg.Insecure, SameSite: http.SameSiteLaxMode})
	switch {
	case !ok:
		c.render(w, r, http.StatusBadRequest, "error", nil, &view{Title: "Sign-in failed",
			Error: "This sign-in was not started here or took longer than 10 minutes.", Retry: "/login"})
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1:
		c.render(w, r, http.StatusBadRequest, "error", nil, &view{Title: "Sign-in failed",
			Error: "The identity provider's answer does not belong to this sign-in.", Retry: "/login?next=" + url.QueryEscape(ls.Next)})
		return
	case q.Get("error") != "":
		c.render(w, r, http.StatusUnauthorized, "error", nil, &view{Title: "Sign-in cancelled",
			Error: "The identity provider did not sign you in (" + truncate(q.Get("error"), 64) + ").", Retry: "/login?next=" + url.QueryEscape(ls.Next)})
		return
	}
	var maxAge time.Duration
	retry := url.Values{"next": {ls.Next}}
	if ls.StepUp {
		maxAge = stepUpMaxAge
		retry.Set("stepup", "1")
	}
	p, authTime, err := c.cfg.Login.FinishMaxAge(r.Context(), q.Get("code"), ls.Verifier, ls.Nonce, maxAge)
	if err != nil {
		c.logger.WarnContext(r.Context(), "web sign-in failed", "err", err)
		c.render(w, r, httpapi.StatusOf(escrow.ErrorCode(err)), "error", nil, &view{Title: "Sign-in failed",
			Error: escrow.ErrorMessage(err), Retry: "/login?" + retry.Encode()})
		return
	}
	ctx := escrow.NewContext(r.Context(), p)
	if old, err := c.session(r); err == nil {
		octx := escrow.NewContext(r.Context(), &old.Principal)
		rec := escrow.NewAuditRecord(octx, c.clock.Now(), escrow.ActionSessionLogout, "session")
		rec.Reason = "replaced by a new sign-in"
		if err := c.cfg.Sessions.DeleteSession(octx, old.IDHash, rec); err != nil &&
			!errors.Is(err, escrow.ErrNotFound) {
			c.fail(w, r, nil, err)
			return
		}
	}
	id, err := newSessionID()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	now := c.clock.Now()
	st := &escrow.Session{IDHash: hashID(id), Principal: *p, AuthTime: authTime.UTC(), Created: now, Expires: now.Add(c.cfg.SessionTTL)}
	rec := escrow.NewAuditRecord(ctx, now, escrow.ActionSessionLogin, "session")
	rec.Details = map[string]string{"stepUp": strconv.FormatBool(ls.StepUp), "expires": st.Expires.Format(time.RFC3339)}
	if err := c.cfg.Sessions.CreateSession(ctx, st, rec); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(), Value: id, Path: "/", MaxAge: int(c.cfg.SessionTTL / time.Second),
		HttpOnly: true, Secure: !c.cfg.Insecure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, ls.Next, http.StatusSeeOther)
}

func (c *console) readLoginState(r *http.Request) (loginState, bool) {
	var ls loginState
	ck, err := r.Cookie(loginCookie)
	if err != nil || len(ck.Value) > 2048 {
		return ls, false
	}
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || json.Unmarshal(b, &ls) != nil || ls.State == "" || ls.Verifier == "" {
		return ls, false
	}
	if age := c.clock.Now().Unix() - ls.Started; age < 0 || age > int64(loginTTL/time.Second) {
		return ls, false
	}
	if ls.Next = safePath(ls.Next); ls.Next == "" {
		ls.Next = "/"
	}
	return ls, true
}

func newSessionID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// logout ends the session on the server (audited) and in the browser.
func (c *console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	rec := escrow.NewAuditRecord(r.Context(), c.clock.Now(), escrow.ActionSessionLogout, "session")
	if err := c.cfg.Sessions.DeleteSession(r.Context(), s.IDHash, rec); err != nil && !errors.Is(err, escrow.ErrNotFound) {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: !c.cfg.Insecure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/signed-out", http.StatusSeeOther)
	return nil
}

func (c *console) signedOut(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signedout", nil, &view{Title: "Signed out"})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
