package report

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// ActionRun is the audit action of a report run.
const ActionRun = "report.run"

// Config holds the ports the service reads.
type Config struct {
	Store    escrow.Store        // secret paths, when a record does not carry one
	Requests escrow.RequestStore // requests and grants
	Audit    escrow.AuditLog     // the trail, and the run's own record
	Clock    escrow.Clock        // nil = system clock
	Logger   *slog.Logger        // nil = discard
	// PageSize is how many records one read fetches (default 1000; the
	// reports that merge many indexes use a quarter of it per index). At
	// most about two pages per index are held at once.
	PageSize int
}

// Service runs compliance reports.
type Service struct {
	store    escrow.Store
	requests escrow.RequestStore
	log      escrow.AuditLog
	clock    escrow.Clock
	logger   *slog.Logger
	rec      *audit.Recorder
	pageSize int
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, requests: cfg.Requests, log: cfg.Audit, clock: cfg.Clock, logger: cfg.Logger,
		pageSize: cfg.PageSize}
	if s.clock == nil {
		s.clock = escrow.SystemClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.pageSize <= 0 || s.pageSize > 1000 {
		s.pageSize = 1000
	}
	s.rec = &audit.Recorder{Log: cfg.Audit, Clock: s.clock, Logger: s.logger}
	return s
}

// Params are a report's parameters; each report takes some of them (see
// Catalog) and refuses the others.
type Params struct {
	From, To time.Time // inclusive From, exclusive To; zero means open
	User     string    // a subject
	Secret   string    // a secret's id or full /path
	Ticket   string    // a change or incident number
}

// Column is one column of a report.
type Column struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
}

// Param is one parameter a report takes.
type Param struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	Doc      string `json:"doc"`
}

// Info describes a report: what it answers, its parameters and columns.
type Info struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Params      []Param  `json:"params"`
	Columns     []Column `json:"columns"`
}

// Parameter names, as the API and the CLI spell them.
const (
	ParamFrom   = "from"
	ParamTo     = "to"
	ParamUser   = "user"
	ParamSecret = "secret"
	ParamTicket = "ticket"
)

var (
	pFrom   = Param{ParamFrom, false, "inclusive start, RFC 3339"}
	pTo     = Param{ParamTo, false, "exclusive end, RFC 3339"}
	pUser   = Param{ParamUser, true, "the user's subject"}
	pSecret = Param{ParamSecret, true, "the secret's id or full path (/prod/db/admin)"}
	pTicket = Param{ParamTicket, true, "the change or incident number"}
)

// runner streams one report's rows.
type runner func(s *Service, ctx context.Context, r *run) error

type definition struct {
	Info
	run runner
}

// reports is the catalogue, in the order `escrow report list` shows it.
var reports = []definition{
	{Info{"access-by-user", "Everything one user did or tried: reveals, checkouts, requests, decisions, refusals.",
		[]Param{pUser, pFrom, pTo}, auditColumns}, (*Service).accessByUser},
	{Info{"access-to-secret", "Everything done or tried on one secret, by anyone.",
		[]Param{pSecret, pFrom, pTo}, auditColumns}, (*Service).accessToSecret},
	{Info{"ticket", "Everything done under one change or incident number: requests, approvals, checkouts, reveals.",
		[]Param{pTicket, {ParamFrom, false, pFrom.Doc}, {ParamTo, false, pTo.Doc}}, auditColumns}, (*Service).ticket},
	{Info{"requests", "Access requests created in the range: who asked for what and why, each step's approvers and decisions, and how long approval took.",
		[]Param{pFrom, pTo}, requestColumns}, (*Service).requestsReport},
	{Info{"grants", "Grants in force now or starting later, with their windows and time left.",
		[]Param{}, grantColumns}, (*Service).grantsReport},
	{Info{"checkouts", "Checkouts, check-ins, extensions, forced check-ins, expiries and rotations; failed rotations are flagged.",
		[]Param{pFrom, pTo}, checkoutColumns}, (*Service).checkouts},
	{Info{"sod-exceptions", "Separation-of-duty exceptions (empty in a healthy system): forced check-ins, rotate-now and revocations of others' grants by admins, and any decision by the requester themself.",
		[]Param{pFrom, pTo}, sodColumns}, (*Service).sodExceptions},
	{Info{"denied", "Denied and failed attempts of every action.",
		[]Param{pFrom, pTo}, auditColumns}, (*Service).denied},
	{Info{"activity", "The whole trail in the range, every action of everyone (an export for archives and SIEMs).",
		[]Param{pFrom, pTo}, auditColumns}, (*Service).activity},
}

// Catalog describes every report.
func Catalog() []Info {
	out := make([]Info, len(reports))
	for i, d := range reports {
		out[i] = d.Info
	}
	return out
}

func find(name string) (definition, bool) {
	for _, d := range reports {
		if d.Name == name {
			return d, true
		}
	}
	return definition{}, false
}

// run is the state of one report run.
type run struct {
	params   Params
	secretID string // Params.Secret resolved to an id
	w        RowWriter
	vals     []Value
	paths    map[string]string // secret id -> path, for records without one
	now      time.Time
}

// Run streams report name with params into w, rows as their pages
// arrive. The caller needs the admin or auditor role. Every run writes one
// audit record (action report.run, the report and its parameters in
// Details) before any row; if it cannot be written nothing is returned
// (fail closed).
//
// Returns ErrUnauthenticated without a principal, ErrForbidden without
// the role, ErrNotFound for an unknown report or secret, ErrInvalid for a
// parameter the report does not take, a missing one or from not before
// to, ErrUnavailable if the audit log cannot be written, and the error of
// w or of a store read once rows have begun.
func (s *Service) Run(ctx context.Context, name string, params Params, w RowWriter) error {
	rec := s.rec.New(ctx, ActionRun, "report:"+truncate(name, 64))
	rec.Details = details(name, params)
	d, r, err := s.prepare(ctx, name, params, w, rec)
	if err != nil {
		return s.rec.Fail(ctx, rec, err)
	}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return err
	}
	if err := w.Begin(d.Columns); err != nil {
		return err
	}
	r.vals = make([]Value, len(d.Columns))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d.run(s, ctx, r); err != nil {
		lvl := slog.LevelError
		if ctx.Err() != nil {
			lvl = slog.LevelWarn // the caller went away
		}
		s.logger.Log(ctx, lvl, "report failed after it began", "report", name, "requestId", rec.RequestID, "err", err)
		return err
	}
	return w.End()
}

// prepare checks the caller, the report and its parameters.
func (s *Service) prepare(ctx context.Context, name string, p Params, w RowWriter, rec *escrow.AuditRecord) (definition, *run, error) {
	pr := escrow.PrincipalFrom(ctx)
	if pr == nil || pr.Subject == "" {
		return definition{}, nil, escrow.ErrUnauthenticated
	}
	if !pr.IsAdmin() && !pr.HasRole(escrow.RoleAuditor) {
		return definition{}, nil, escrow.Errorf(escrow.CodeForbidden, "reports need the admin or auditor role")
	}
	d, ok := find(name)
	if !ok {
		return definition{}, nil, escrow.Errorf(escrow.CodeNotFound, "no report named %q; the reports are %s", truncate(name, 64), strings.Join(names(), ", "))
	}
	if err := check(d.Info, p); err != nil {
		return definition{}, nil, err
	}
	r := &run{params: p, w: w, paths: map[string]string{}, now: s.clock.Now()}
	if p.Secret != "" {
		id, err := s.resolve(ctx, p.Secret)
		if err != nil {
			return definition{}, nil, err
		}
		r.secretID = id
		rec.Details["secretId"] = id
	}
	return d, r, nil
}

func names() []string {
	out := make([]string, len(reports))
	for i, d := range reports {
		out[i] = d.Name
	}
	return out
}

// check refuses parameters the report does not take, missing required
// ones and an empty range.
func check(info Info, p Params) error {
	given := map[string]bool{ParamFrom: !p.From.IsZero(), ParamTo: !p.To.IsZero(),
		ParamUser: p.User != "", ParamSecret: p.Secret != "", ParamTicket: p.Ticket != ""}
	takes := map[string]bool{}
	var list []string
	for _, pa := range info.Params {
		takes[pa.Name] = true
		list = append(list, pa.Name)
		if pa.Required && !given[pa.Name] {
			return escrow.Errorf(escrow.CodeInvalid, "report %s needs the %s parameter (%s)", info.Name, pa.Name, pa.Doc)
		}
	}
	for _, n := range []string{ParamUser, ParamSecret, ParamTicket, ParamFrom, ParamTo} {
		if given[n] && !takes[n] {
			if len(list) == 0 {
				return escrow.Errorf(escrow.CodeInvalid, "report %s takes no parameters (got %s)", info.Name, n)
			}
			return escrow.Errorf(escrow.CodeInvalid, "report %s takes no %s parameter; it takes %s", info.Name, n, strings.Join(list, ", "))
		}
	}
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		return escrow.Errorf(escrow.CodeInvalid, "from must be before to")
	}
	for _, v := range []string{p.User, p.Secret, p.Ticket} {
		if len(v) > 256 {
			return escrow.Errorf(escrow.CodeInvalid, "parameters are at most 256 characters")
		}
	}
	return nil
}

// resolve turns a secret parameter into an id: a /path is looked up (the
// secret may since be deleted), anything else is taken as an id.
func (s *Service) resolve(ctx context.Context, secret string) (string, error) {
	if !strings.HasPrefix(secret, "/") {
		return secret, nil
	}
	sec, err := s.store.GetSecretByPath(ctx, path.Dir(secret), path.Base(secret))
	if errors.Is(err, escrow.ErrNotFound) || errors.Is(err, escrow.ErrInvalid) {
		return "", escrow.Errorf(escrow.CodeNotFound, "no secret at %s (give its id if it was renamed)", secret)
	}
	if err != nil {
		return "", internal("find secret by path", err)
	}
	return sec.ID, nil
}

// details is the run's audit record details: the report and the
// parameters given (never a secret value: there is none here).
func details(name string, p Params) map[string]string {
	d := map[string]string{"report": truncate(name, 64)}
	if !p.From.IsZero() {
		d[ParamFrom] = p.From.UTC().Format(time.RFC3339Nano)
	}
	if !p.To.IsZero() {
		d[ParamTo] = p.To.UTC().Format(time.RFC3339Nano)
	}
	for k, v := range map[string]string{ParamUser: p.User, ParamSecret: p.Secret, ParamTicket: p.Ticket} {
		if v != "" {
			d[k] = truncate(v, 256)
		}
	}
	return d
}

// emit writes the run's current row.
func (r *run) emit() error {
	err := r.w.Row(r.vals)
	clear(r.vals)
	return err
}

// internal keeps coded errors and marks anything else internal.
func internal(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return err
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}

func invalidf(format string, args ...any) error {
	return escrow.Errorf(escrow.CodeInvalid, format, args...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// isAdmin reports whether an audited actor held the admin role.
func isAdmin(a escrow.Actor) bool { return slices.Contains(a.Roles, escrow.RoleAdmin) }
