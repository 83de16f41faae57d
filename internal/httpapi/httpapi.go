// Package httpapi is Escrow's REST API: one http.Handler, served by the api
// Lambda (through aws-lambda-go-api-proxy) and by `escrow server -dev`.
//
// It decodes requests strictly, authenticates bearer tokens, calls the use
// cases and maps escrow error codes to HTTP statuses in exactly one place
// (StatusOf). It must never return an internal error's text to a client, and
// never log a request or response body.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/ticketing"
)

// Authenticator verifies a bearer token. Errors carry escrow codes
// (unauthenticated, unavailable).
type Authenticator interface {
	Verify(ctx context.Context, token string) (*escrow.Principal, error)
}

// Config wires the handler.
type Config struct {
	Secrets *secrets.Service
	Access  *access.Service
	Tickets *ticketing.Service
	// Checkout, if set, serves checkout, check-in and rotation; without it
	// those routes answer 503.
	Checkout *checkout.Service
	// Digests, if set, serves the signed audit digests and their keys.
	Digests Digests
	// Reports, if set, serves compliance reports; without it they answer
	// 503.
	Reports *report.Service
	// Schedules, if set, lets admins define mailed report schedules.
	Schedules *reportsched.Service
	Auth      Authenticator
	Logger    *slog.Logger
	// Dev, if not nil, is mounted at /dev/ (only `escrow server -dev` sets it).
	Dev http.Handler
	// Web, if not nil, is the web console (package web), mounted at / for
	// every path the API does not own (/v1/, /healthz, /openapi.json,
	// /dev/).
	Web http.Handler
}

// maxBody caps every request body; values are at most 64 KiB.
const maxBody = 1 << 20

type api struct {
	svc       *secrets.Service
	access    *access.Service
	tickets   *ticketing.Service
	checkout  *checkout.Service
	digests   Digests
	reports   *report.Service
	schedules *reportsched.Service
	auth      Authenticator
	logger    *slog.Logger
}

// route is one entry of the API; the table is also checked against the
// OpenAPI document by a test.
type route struct {
	method, pattern string
	auth            bool
	h               func(*api, http.ResponseWriter, *http.Request) error
}

var routes = []route{
	{"GET", "/healthz", false, (*api).healthz},
	{"GET", "/openapi.json", false, (*api).openapi},
	{"GET", "/v1/me", true, (*api).me},
	{"POST", "/v1/secrets", true, (*api).createSecret},
	{"GET", "/v1/secrets", true, (*api).listSecrets},
	{"GET", "/v1/secrets/{id}", true, (*api).getSecret},
	{"PUT", "/v1/secrets/{id}", true, (*api).updateSecret},
	{"DELETE", "/v1/secrets/{id}", true, (*api).deleteSecret},
	{"GET", "/v1/secrets/{id}/value", true, (*api).revealSecret},
	{"POST", "/v1/secrets/{id}/value", true, (*api).revealSecretWith},
	{"GET", "/v1/secrets/{id}/policy", true, (*api).getPolicy},
	{"PUT", "/v1/secrets/{id}/policy", true, (*api).setSecretPolicy},
	{"PUT", "/v1/folders/policy", true, (*api).setFolderPolicy},
	{"GET", "/v1/secrets/{id}/versions", true, (*api).listVersions},
	{"PUT", "/v1/secrets/{id}/acl", true, (*api).setACL},
	{"GET", "/v1/folders", true, (*api).getFolder},
	{"PUT", "/v1/folders", true, (*api).setFolderACL},
	{"GET", "/v1/audit", true, (*api).queryAudit},
	{"GET", "/v1/reports", true, (*api).listReports},
	{"GET", "/v1/reports/{name}", true, (*api).runReport},
	{"GET", "/v1/report-schedules", true, (*api).listSchedules},
	{"PUT", "/v1/report-schedules/{name}", true, (*api).putSchedule},
	{"DELETE", "/v1/report-schedules/{name}", true, (*api).deleteSchedule},
	{"GET", "/v1/audit/digests", true, (*api).listDigests},
	{"GET", "/v1/audit/keys", true, (*api).digestKeys},
	{"POST", "/v1/secrets/{id}/requests", true, (*api).createRequest},
	{"GET", "/v1/requests", true, (*api).listRequests},
	{"GET", "/v1/requests/{id}", true, (*api).getRequest},
	{"POST", "/v1/requests/{id}/decision", true, (*api).decideRequest},
	{"POST", "/v1/requests/{id}/cancel", true, (*api).cancelRequest},
	{"GET", "/v1/grants", true, (*api).listGrants},
	{"POST", "/v1/grants/{id}/revoke", true, (*api).revokeGrant},
	{"POST", "/v1/secrets/{id}/checkout", true, (*api).checkoutSecret},
	{"GET", "/v1/secrets/{id}/checkout", true, (*api).getCheckout},
	{"POST", "/v1/secrets/{id}/checkin", true, (*api).checkinSecret},
	{"POST", "/v1/secrets/{id}/extend", true, (*api).extendCheckout},
	{"POST", "/v1/secrets/{id}/force-checkin", true, (*api).forceCheckin},
	{"POST", "/v1/secrets/{id}/rotate", true, (*api).rotateNow},
	{"PUT", "/v1/secrets/{id}/rotation", true, (*api).setRotation},
	{"PUT", "/v1/qlock/key", true, (*api).putQLockKey},
	{"GET", "/v1/qlock/key", true, (*api).getQLockKey},
	{"GET", "/v1/qlock/keys", true, (*api).listQLockKeys},
	{"POST", "/v1/secrets/{id}/qlock", true, (*api).lockSecret},
	{"GET", "/v1/ticket-systems", true, (*api).listTicketSystems},
	{"PUT", "/v1/ticket-systems/{name}", true, (*api).putTicketSystem},
	{"POST", "/v1/ticket-systems/{name}/default", true, (*api).defaultTicketSystem},
	{"POST", "/v1/ticket-systems/{name}/test", true, (*api).testTicketSystem},
}

// New returns the API handler.
func New(cfg Config) http.Handler {
	a := &api{svc: cfg.Secrets, access: cfg.Access, tickets: cfg.Tickets, checkout: cfg.Checkout, digests: cfg.Digests, reports: cfg.Reports, schedules: cfg.Schedules, auth: cfg.Auth, logger: cfg.Logger}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.pattern, a.wrap(rt))
	}
	if cfg.Dev != nil {
		mux.Handle("/dev/", cfg.Dev)
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := a.requestContext(r)
		w.Header().Set("X-Request-Id", escrow.RequestInfoFrom(ctx).RequestID)
		writeError(w, r.WithContext(ctx), escrow.Errorf(escrow.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	mux.Handle("/v1/", notFound)
	if cfg.Web == nil {
		mux.Handle("/", notFound)
		return mux
	}
	// The console's use cases audit with the same request id, source ip and
	// user agent as the API's.
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := a.requestContext(r)
		w.Header().Set("X-Request-Id", escrow.RequestInfoFrom(ctx).RequestID)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		cfg.Web.ServeHTTP(sw, r.WithContext(ctx))
		a.logRequest(ctx, "web request", r.Method, r.URL.Path, sw.status, start)
	}))
	return mux
}

// requestContext adds the request id, source ip and user agent.
func (a *api) requestContext(r *http.Request) context.Context {
	ri := escrow.RequestInfoFrom(r.Context())
	if ri.RequestID == "" {
		ri.RequestID = escrow.NewID(time.Now())
	}
	ri.SourceIP = sourceIP(r)
	ri.UserAgent = truncate(r.UserAgent(), 256)
	return escrow.WithRequestInfo(r.Context(), ri)
}

func (a *api) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := a.requestContext(r)
		ri := escrow.RequestInfoFrom(ctx)
		h := w.Header()
		h.Set("X-Request-Id", ri.RequestID)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		var err error
		if rt.auth {
			ctx, err = a.authenticate(ctx, r)
		}
		if err == nil {
			r.Body = http.MaxBytesReader(sw, r.Body, maxBody)
			err = rt.h(a, sw, r.WithContext(ctx))
		}
		if err != nil {
			writeError(sw, r.WithContext(ctx), err)
		}
		a.logRequest(ctx, "request", r.Method, rt.pattern, sw.status, start)
	})
}

// logRequest logs one answered request: debug, or error for a 5xx. It
// names the route (or the console's path), never a query or a body.
func (a *api) logRequest(ctx context.Context, msg, method, route string, status int, start time.Time) {
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelError
	}
	a.logger.Log(ctx, lvl, msg, "method", method, "route", route, "status", status,
		"ms", float64(time.Since(start).Microseconds())/1000, "requestId", escrow.RequestInfoFrom(ctx).RequestID, "sub", subject(ctx))
}

// authenticate verifies the bearer token. A failure is audited (who tried,
// from where) and answered 401.
func (a *api) authenticate(ctx context.Context, r *http.Request) (context.Context, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var err error
	var p *escrow.Principal
	if !ok || strings.TrimSpace(token) == "" {
		err = escrow.Errorf(escrow.CodeUnauthenticated, "missing bearer token (Authorization: Bearer <token>)")
	} else if p, err = a.auth.Verify(ctx, strings.TrimSpace(token)); err == nil {
		return escrow.NewContext(ctx, p), nil
	}
	if escrow.ErrorCode(err) != escrow.CodeUnavailable {
		// Whatever the verifier said, the client is unauthenticated.
		err = &escrow.Error{Code: escrow.CodeUnauthenticated, Message: escrow.ErrorMessage(err), Err: err}
	}
	return ctx, a.svc.RecordAuthFailure(ctx, r.Method+" "+r.URL.Path, err)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// StatusOf is the one mapping from error codes to HTTP statuses (the web
// console answers with it too).
func StatusOf(code escrow.Code) int {
	switch code {
	case escrow.CodeInvalid:
		return http.StatusBadRequest
	case escrow.CodeUnauthenticated:
		return http.StatusUnauthorized
	case escrow.CodeForbidden:
		return http.StatusForbidden
	case escrow.CodeNotFound:
		return http.StatusNotFound
	case escrow.CodeConflict:
		return http.StatusConflict
	case escrow.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code      escrow.Code `json:"code"`
		Message   string      `json:"message"`
		RequestID string      `json:"requestId"`
	} `json:"error"`
}

// writeError answers err with its status and a client-safe message.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var b errorBody
	b.Error.Code = escrow.ErrorCode(err)
	b.Error.Message = escrow.ErrorMessage(err)
	b.Error.RequestID = escrow.RequestInfoFrom(r.Context()).RequestID
	if b.Error.Code == escrow.CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="escrow"`)
	}
	writeJSON(w, StatusOf(b.Error.Code), b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// decode reads exactly one JSON value into v, rejecting unknown fields,
// trailing data and bodies over the cap.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return escrow.Errorf(escrow.CodeInvalid, "request body is larger than %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			return escrow.Errorf(escrow.CodeInvalid, "request body is empty; expected a JSON object")
		}
		return escrow.Errorf(escrow.CodeInvalid, "request body: %s", jsonProblem(err))
	}
	if dec.More() {
		return escrow.Errorf(escrow.CodeInvalid, "request body has data after the JSON object")
	}
	return nil
}

// jsonProblem describes a decode error without echoing values.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "malformed JSON"
	case errors.As(err, &typ):
		return "field " + typ.Field + " must be " + typ.Type.String()
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed JSON"
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func subject(ctx context.Context) string {
	if p := escrow.PrincipalFrom(ctx); p != nil {
		return p.Subject
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
