// Package bmc adapts BMC Helix ITSM (Remedy AR System REST API) to the
// ticket port: it logs in with POST /api/jwt/login, caches the AR-JWT, and
// reads changes (form CHG:Infrastructure Change) and incidents (HPD:Help
// Desk) through /api/arsys/v1/entry/{form}?q=....
//
// Write-back (Comment) creates a work info entry: CHG:WorkLog for a change,
// HPD:WorkLog for an incident, with Work Log Type "General Information" and
// View Access "Internal" so that a note about privileged access is never
// shown to the ticket's customer.
//
// It must never put the password or the AR-JWT into an error, a log line or
// an audit record, and never grant anything on an answer it does not
// understand: every doubt is an error.
package bmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Form names and fields of the ITSM data model used here.
const (
	changeForm    = "CHG:Infrastructure Change"
	incidentForm  = "HPD:Help Desk"
	changeWorkLog = "CHG:WorkLog"
	incWorkLog    = "HPD:WorkLog"
	changeIDField = "Infrastructure Change ID"
	incidentField = "Incident Number"
	entryPath     = "/api/arsys/v1/entry/"
	loginPath     = "/api/jwt/login"
	maxToken      = 16 << 10
	maxWorkLogDsc = 100 // Description of a work log entry is a 100-character field
)

// Config configures one BMC Helix system.
type Config struct {
	Name        string // the configured system's name, copied into each Ticket
	BaseURL     string // e.g. https://example-restapi.onbmc.com
	Credentials ticket.Credentials
	Timeout     time.Duration // bounds one Lookup or Comment, login included; 0 = ticket.DefaultTimeout
	HTTPClient  *http.Client  // nil = a fresh client
}

// System is a BMC Helix ITSM ticket system.
type System struct {
	name    string
	creds   ticket.Credentials
	timeout time.Duration
	client  *ticket.Client
	login   *http.Client // never follows a redirect
	loginU  string

	mu    sync.Mutex
	token string // cached AR-JWT, "" when none
}

var _ ticket.System = (*System)(nil)

// New returns a System. It needs a username and password: AR-JWT login has
// no other grant.
func New(cfg Config) (*System, error) {
	if cfg.Credentials.Username == "" || cfg.Credentials.Password == "" {
		return nil, escrow.Errorf(escrow.CodeInvalid, "BMC Helix needs a username and password in its credential secret")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = ticket.DefaultTimeout
	}
	hc := http.Client{}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	// The transport notes a 401 for the call that saw it, so that an
	// expired token is told apart from other refusals without reading
	// error strings (ticket.Client reports 401 and 403 alike).
	hc.Transport = &watch401{base: base}
	s := &System{name: cfg.Name, creds: cfg.Credentials, timeout: timeout}
	c, err := ticket.NewClient(cfg.BaseURL, &hc, timeout, s.authorize)
	if err != nil {
		return nil, err
	}
	s.client = c
	lc := hc
	lc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.login = &lc
	lu := *c.Base()
	lu.Path = strings.TrimSuffix(lu.Path, "/") + loginPath
	lu.RawQuery = ""
	s.loginU = lu.String()
	return s, nil
}

type tokenKey struct{}
type saw401Key struct{}

func (s *System) authorize(r *http.Request) {
	if t, ok := r.Context().Value(tokenKey{}).(string); ok {
		r.Header.Set("Authorization", "AR-JWT "+t)
	}
}

type watch401 struct{ base http.RoundTripper }

func (w *watch401) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		if f, ok := r.Context().Value(saw401Key{}).(*atomic.Bool); ok {
			f.Store(true)
		}
	}
	return resp, err
}

// call runs do with a token, logging in first if none is cached, and once
// more if the system answers 401 (the token expired or was revoked).
func (s *System) call(ctx context.Context, do func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		tok, err := s.currentToken(ctx)
		if err != nil {
			return err
		}
		var saw401 atomic.Bool
		cctx := context.WithValue(context.WithValue(ctx, tokenKey{}, tok), saw401Key{}, &saw401)
		err = do(cctx)
		if err == nil || !saw401.Load() || attempt > 0 {
			return err
		}
		s.forget(tok)
	}
}

func (s *System) currentToken(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" {
		return s.token, nil
	}
	// Logging in under the lock keeps concurrent lookups from each
	// opening a session.
	tok, err := s.doLogin(ctx)
	if err != nil {
		return "", err
	}
	s.token = tok
	return tok, nil
}

// forget drops tok if it is still the cached one (another call may have
// logged in again already).
func (s *System) forget(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token = ""
	}
}

// doLogin posts the form the AR REST API documents and reads the AR-JWT
// from the plain-text answer. ticket.Client only speaks JSON, so this one
// request is made here, with the same fail-closed rules: bounded time, no
// redirect, bounded body, errors that quote neither what was sent nor what
// came back.
func (s *System) doLogin(ctx context.Context) (string, error) {
	form := url.Values{"username": {s.creds.Username}, "password": {s.creds.Password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.loginU, strings.NewReader(form.Encode()))
	if err != nil {
		return "", escrow.Errorf(escrow.CodeInternal, "build BMC login request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/plain")
	resp, err := s.login.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", escrow.Errorf(escrow.CodeUnavailable, "BMC login: the ticket system did not answer within %s", s.timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", escrow.Errorf(escrow.CodeUnavailable, "BMC login: the ticket system cannot be reached (%v)", err)
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxToken+1))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", escrow.Errorf(escrow.CodeInternal, "BMC login: the ticket system refused Escrow's credentials (HTTP %d)", resp.StatusCode)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return "", escrow.Errorf(escrow.CodeInternal, "BMC login: the ticket system redirected (HTTP %d); refusing", resp.StatusCode)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "", escrow.Errorf(escrow.CodeUnavailable, "BMC login: the ticket system failed (HTTP %d)", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return "", escrow.Errorf(escrow.CodeInternal, "BMC login: the ticket system answered HTTP %d", resp.StatusCode)
	case rerr != nil:
		return "", escrow.Errorf(escrow.CodeUnavailable, "BMC login: the answer was cut off")
	}
	tok := strings.TrimSpace(string(data))
	if !validToken(tok) {
		return "", escrow.Errorf(escrow.CodeInternal, "BMC login: the answer is not an AR-JWT")
	}
	return tok, nil
}

// validToken accepts a JWT-looking token: three base64url parts, bounded.
func validToken(t string) bool {
	return len(t) > 0 && len(t) <= maxToken && jwtRE.MatchString(t)
}

var jwtRE = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`)

// numberRE is what an ITSM id looks like: a prefix and digits. Anything
// else never reaches the query string.
var numberRE = regexp.MustCompile(`^([A-Z]{3})[0-9]{1,20}$`)

type form struct {
	name, idField, workLog string
	kind                   ticket.Kind
}

// formFor routes a number by its prefix. Helix numbers changes CRQ...; CHG
// is accepted too for sites that renumbered.
func formFor(number string) (form, error) {
	m := numberRE.FindStringSubmatch(number)
	if m != nil {
		switch m[1] {
		case "CRQ", "CHG":
			return form{changeForm, changeIDField, changeWorkLog, ticket.Change}, nil
		case "INC":
			return form{incidentForm, incidentField, incWorkLog, ticket.Incident}, nil
		}
	}
	return form{}, &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("%q is not a change (CRQ/CHG) or incident (INC) number of this BMC system", number)}
}

// entries is the documented answer of GET /api/arsys/v1/entry/{form}.
type entries struct {
	Entries *[]struct {
		Values map[string]any `json:"values"`
	} `json:"entries"`
}

// Lookup implements ticket.System.
func (s *System) Lookup(ctx context.Context, number string) (*ticket.Ticket, error) {
	f, err := formFor(number)
	if err != nil {
		return nil, err
	}
	q := url.Values{"q": {fmt.Sprintf("'%s'=\"%s\"", f.idField, number)}}
	var out entries
	err = s.call(ctx, func(ctx context.Context) error {
		return s.client.Do(ctx, http.MethodGet, entryPath+f.name, q, nil, &out)
	})
	if err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return nil, s.notFound(number)
		}
		return nil, fmt.Errorf("look up %s in BMC: %w", number, err)
	}
	if out.Entries == nil {
		return nil, escrow.Errorf(escrow.CodeInternal, "look up %s in BMC: the answer has no entries list", number)
	}
	switch len(*out.Entries) {
	case 0:
		return nil, s.notFound(number)
	case 1:
	default:
		return nil, escrow.Errorf(escrow.CodeInternal, "look up %s in BMC: %d entries have this number", number, len(*out.Entries))
	}
	v := (*out.Entries)[0].Values
	t, err := s.toTicket(f, number, v)
	if err != nil {
		return nil, fmt.Errorf("look up %s in BMC: %w", number, err)
	}
	return t, nil
}

func (s *System) notFound(number string) error {
	return &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("no ticket %s in %s", number, s.name)}
}

func (s *System) toTicket(f form, number string, v map[string]any) (*ticket.Ticket, error) {
	r := reader{v: v}
	t := &ticket.Ticket{System: s.name, Number: number, Kind: f.kind}
	if id := r.str(f.idField); id != number {
		return nil, escrow.Errorf(escrow.CodeInternal, "the entry's %s is not the number asked for", f.idField)
	}
	t.Summary = r.str("Description")
	t.ConfigurationItem = r.str("HPD_CI", "CI Name")
	switch f.kind {
	case ticket.Change:
		t.State = r.str("Change Request Status")
		t.Assignee = r.str("ASCHG")
		t.AssignmentGroup = r.str("ASGRP")
		t.PlannedStart = r.time("Scheduled Start Date")
		t.PlannedEnd = r.time("Scheduled End Date")
	case ticket.Incident:
		t.State = r.str("Status")
		t.Assignee = r.str("Assignee Login ID", "Assignee")
		t.AssignmentGroup = r.str("Assigned Group")
	}
	if r.err != nil {
		return nil, r.err
	}
	if t.State == "" {
		return nil, escrow.Errorf(escrow.CodeInternal, "the entry has no status")
	}
	return t, nil
}

// reader reads typed values out of an entry, remembering the first field
// of an unexpected type.
type reader struct {
	v   map[string]any
	err error
}

// str returns the first of fields that is set (null and absent are unset).
func (r *reader) str(fields ...string) string {
	for _, f := range fields {
		switch x := r.v[f].(type) {
		case nil:
			continue
		case string:
			if x != "" {
				return x
			}
		default:
			r.fail(f)
			return ""
		}
	}
	return ""
}

func (r *reader) time(field string) time.Time {
	s := r.str(field)
	if s == "" {
		return time.Time{}
	}
	t, err := parseTime(s)
	if err != nil {
		r.fail(field)
	}
	return t
}

func (r *reader) fail(field string) {
	if r.err == nil {
		r.err = escrow.Errorf(escrow.CodeInternal, "the entry's %q is not what the BMC API documents", field)
	}
}

// parseTime reads AR REST timestamps: ISO 8601, with the offset written
// +0000 (as AR answers) or +00:00.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05-0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not an ISO 8601 timestamp")
}

// Comment implements ticket.System: it creates a work info entry.
func (s *System) Comment(ctx context.Context, number, text string) error {
	f, err := formFor(number)
	if err != nil {
		return err
	}
	if strings.TrimSpace(text) == "" {
		return escrow.Errorf(escrow.CodeInvalid, "a comment needs text")
	}
	body := map[string]any{"values": map[string]string{
		f.idField:              number,
		"Description":          firstLine(text, maxWorkLogDsc),
		"Detailed Description": text,
		"Work Log Type":        "General Information",
		"View Access":          "Internal",
		"Secure Work Log":      "No",
	}}
	err = s.call(ctx, func(ctx context.Context) error {
		return s.client.Do(ctx, http.MethodPost, entryPath+f.workLog, nil, body, nil)
	})
	if err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return s.notFound(number)
		}
		return fmt.Errorf("comment on %s in BMC: %w", number, err)
	}
	return nil
}

// firstLine returns text's first line, cut to max runes.
func firstLine(text string, max int) string {
	line, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) <= max {
		return line
	}
	r := []rune(line)
	return string(r[:max])
}
