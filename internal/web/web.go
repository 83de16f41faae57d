// Package web is Escrow's web console: server-rendered pages for requesters,
// approvers and auditors, served under / by the same http.Handler as the
// REST API (so by the api Lambda and by `escrow server -dev` alike).
//
// Sign-in is OpenID Connect Authorization Code with PKCE (auth.RP). A
// sign-in makes a server-side session (escrow.SessionStore, audited); the
// browser holds only a random ID in an HttpOnly, SameSite=Lax cookie that
// is Secure everywhere but on loopback in -dev. Every state-changing form
// carries a CSRF token derived from that ID and is also refused when its
// Origin is foreign. Deciding on a request needs a recent sign-in (the
// approval rule's stepUp age): an older session is sent to sign in again.
//
// Pages call the same use cases as the API, as the signed-in user, so every
// permission check and audit record is the API's own. The console only
// hides actions the user cannot take; it never grants one. A secret value
// reaches a page only in the answer to the reveal or checkout the user
// asked for, which is never cached; a QuantumLocked value never does (the
// page shows the CLI command that opens it, client-side).
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/secrets"
)

//go:embed templates static
var assets embed.FS

// Login runs the OpenID Connect sign-in; *auth.RP implements it.
type Login interface {
	Begin(ctx context.Context, opt auth.BeginOptions) (*auth.Login, error)
	// FinishMaxAge with maxAge > 0 refuses an authentication older than
	// maxAge (a step-up).
	FinishMaxAge(ctx context.Context, code, codeVerifier, nonce string, maxAge time.Duration) (*escrow.Principal, time.Time, error)
}

// Config wires the console.
type Config struct {
	Secrets  *secrets.Service
	Access   *access.Service
	Checkout *checkout.Service // optional: without it, checkout actions are not offered
	Reports  *report.Service   // optional: without it, the reports page says so
	Sessions escrow.SessionStore
	Login    Login
	// PublicURL is the console's origin (https://escrow.example.com): the
	// Origin every form must come from.
	PublicURL string
	// Insecure drops the cookie's Secure flag: only for -dev on loopback,
	// where the console is served over plain http.
	Insecure bool
	// SessionTTL bounds a session whatever the user does (default 8h).
	SessionTTL time.Duration
	Clock      escrow.Clock
	Logger     *slog.Logger
}

// DefaultSessionTTL is how long a session lasts.
const DefaultSessionTTL = 8 * time.Hour

type console struct {
	cfg    Config
	origin string
	pages  map[string]*template.Template
	static http.Handler
	clock  escrow.Clock
	logger *slog.Logger
}

// New returns the console's handler. Mount it at / (it answers 404 pages
// for paths it does not know).
func New(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Secrets == nil || cfg.Access == nil || cfg.Sessions == nil || cfg.Login == nil:
		return nil, errors.New("web: Secrets, Access, Sessions and Login are required")
	case cfg.PublicURL == "":
		return nil, errors.New("web: PublicURL is required")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("web: PublicURL must be an absolute http(s) URL")
	}
	if u.Scheme == "http" && !cfg.Insecure {
		return nil, errors.New("web: PublicURL is plain http; the session cookie would be Secure and never sent back (set Insecure only for -dev on loopback)")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	c := &console{cfg: cfg, origin: u.Scheme + "://" + u.Host, clock: cfg.Clock, logger: cfg.Logger}
	if c.clock == nil {
		c.clock = escrow.SystemClock{}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	st, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix("/static/", http.FileServerFS(st))
	return c.routes(), nil
}

func (c *console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /login", c.login)
	mux.HandleFunc("GET /auth/callback", c.callback)
	mux.HandleFunc("GET /signed-out", c.signedOut)
	mux.Handle("POST /logout", c.action(c.logout))
	mux.Handle("GET /{$}", c.page(func(w http.ResponseWriter, r *http.Request, s *session) error {
		http.Redirect(w, r, "/secrets", http.StatusSeeOther)
		return nil
	}))
	mux.Handle("GET /secrets", c.page(c.secretsPage))
	mux.Handle("GET /secrets/{id}", c.page(c.secretPage))
	mux.Handle("POST /secrets/{id}/reveal", c.action(c.reveal))
	mux.Handle("POST /secrets/{id}/request", c.action(c.requestAccess))
	mux.Handle("POST /secrets/{id}/checkout", c.action(c.checkoutSecret))
	mux.Handle("POST /secrets/{id}/checkin", c.action(c.checkin))
	mux.Handle("POST /secrets/{id}/extend", c.action(c.extend))
	mux.Handle("GET /requests", c.page(c.requestsPage))
	mux.Handle("GET /requests/{id}", c.page(c.requestPage))
	mux.Handle("POST /requests/{id}/decision", c.action(c.decide))
	mux.Handle("POST /requests/{id}/cancel", c.action(c.cancel))
	mux.Handle("GET /approvals", c.page(c.approvalsPage))
	mux.Handle("GET /audit", c.page(c.auditPage))
	mux.Handle("GET /reports", c.page(c.reportsPage))
	mux.Handle("GET /reports/{file}", c.page(c.reportDownload))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s, _ := c.session(r)
		c.render(w, r, http.StatusNotFound, "error", s, &view{Title: "Not found",
			Error: "There is no page at " + r.URL.Path + "."})
	})
	return securityHeaders(mux)
}

// securityHeaders sets what every console answer carries: no caching (pages
// may hold values and CSRF tokens), no framing, no sniffing, a strict
// content security policy (scripts and styles only from /static), and no
// referrer to other origins.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

// page serves a GET page to a signed-in user; anyone else is sent to sign
// in and brought back.
func (c *console) page(fn func(http.ResponseWriter, *http.Request, *session) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			c.toLogin(w, r, r.URL.RequestURI(), err)
			return
		}
		r = r.WithContext(escrow.NewContext(r.Context(), &s.Principal))
		if err := fn(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// action serves a state-changing POST: it needs a live session, a form
// from our own origin and the session's CSRF token. An expired session is
// sent to sign in and brought back to the page the form was on (the form
// is not replayed: the user sees the page again and decides again).
func (c *console) action(fn func(http.ResponseWriter, *http.Request, *session) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			c.render(w, r, http.StatusBadRequest, "error", nil, &view{Title: "Bad request", Error: "The form could not be read."})
			return
		}
		if !c.sameOrigin(r) {
			c.refuseCSRF(w, r, "the form came from another site")
			return
		}
		s, err := c.session(r)
		if err != nil {
			c.toLogin(w, r, c.returnPath(r), err)
			return
		}
		if !s.checkCSRF(r.PostForm.Get("csrf")) {
			c.refuseCSRF(w, r, "the form's security token is missing or stale")
			return
		}
		r = r.WithContext(escrow.NewContext(r.Context(), &s.Principal))
		if err := fn(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// sameOrigin refuses a form whose Origin (or, without one, Referer) names
// another origin. Browsers send Origin on every cross-site POST; the CSRF
// token is the main defence, this the second.
func (c *console) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == c.origin
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Scheme+"://"+u.Host == c.origin
	}
	return true
}

func (c *console) refuseCSRF(w http.ResponseWriter, r *http.Request, why string) {
	c.logger.WarnContext(r.Context(), "web form refused (CSRF)", "path", r.URL.Path, "why", why)
	c.render(w, r, http.StatusForbidden, "error", nil, &view{Title: "Form refused",
		Error: "This form was refused because " + why + ". Nothing was changed. Go back, reload the page and try again."})
}

// returnPath is where a POST's user goes back to after signing in again:
// the page the form was on (the form's "back" field), else the console's
// home.
func (c *console) returnPath(r *http.Request) string {
	if p := safePath(r.PostForm.Get("back")); p != "" {
		return p
	}
	return "/"
}

// safePath accepts only a local path, so a return address can never send
// the user to another site.
func safePath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return ""
	}
	return p
}

// fail renders a use case's error as a page with its status and its
// client-safe message.
func (c *console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := escrow.ErrorCode(err)
	status := httpapi.StatusOf(code)
	if status >= 500 {
		c.logger.ErrorContext(r.Context(), "web page failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", s, &view{Title: titleOf(code), Error: escrow.ErrorMessage(err)})
}

func titleOf(code escrow.Code) string {
	switch code {
	case escrow.CodeInvalid:
		return "That did not work"
	case escrow.CodeForbidden:
		return "Not allowed"
	case escrow.CodeNotFound:
		return "Not found"
	case escrow.CodeConflict:
		return "Conflict"
	case escrow.CodeUnavailable:
		return "Unavailable"
	}
	return "Something went wrong"
}
