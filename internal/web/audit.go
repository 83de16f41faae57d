package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/secrets"
)

type auditFilters struct {
	Actor, Secret, Action, Ticket, From, To string
}

type auditData struct {
	F       auditFilters
	Records []*escrow.AuditRecord
	Next    string // the next page's URL
	CSV     string // the matching report's CSV download
	CSVName string
	Asked   bool // any filter was given
}

// auditPage searches the audit trail: GET /audit?actor=&secret=&action=
// &ticket=&from=&to=&cursor= (dates as YYYY-MM-DD, both inclusive).
func (c *console) auditPage(w http.ResponseWriter, r *http.Request, s *session) error {
	qs := r.URL.Query()
	f := auditFilters{Actor: strings.TrimSpace(qs.Get("actor")), Secret: strings.TrimSpace(qs.Get("secret")),
		Action: strings.TrimSpace(qs.Get("action")), Ticket: strings.TrimSpace(qs.Get("ticket")),
		From: qs.Get("from"), To: qs.Get("to")}
	q := escrow.AuditQuery{Actor: f.Actor, Action: f.Action, Ticket: f.Ticket, Cursor: qs.Get("cursor"), Limit: 100}
	var err error
	if q.From, err = day(f.From, "from"); err != nil {
		return c.auditAgain(w, r, s, f, err)
	}
	if q.To, err = day(f.To, "to"); err != nil {
		return c.auditAgain(w, r, s, f, err)
	}
	if !q.To.IsZero() {
		q.To = q.To.Add(24 * time.Hour) // the whole last day
	}
	if q.SecretID, err = c.secretID(r, f.Secret); err != nil {
		return c.auditAgain(w, r, s, f, err)
	}
	page, err := c.cfg.Secrets.QueryAudit(r.Context(), q)
	if err != nil {
		return c.auditAgain(w, r, s, f, err)
	}
	d := &auditData{F: f, Records: page.Records, Asked: f != auditFilters{}}
	if page.Next != "" {
		nq := r.URL.Query()
		nq.Set("cursor", page.Next)
		d.Next = "/audit?" + nq.Encode()
	}
	d.CSV, d.CSVName = auditCSV(f, q)
	c.render(w, r, http.StatusOK, "audit", s, &view{Title: "Audit trail", Nav: "audit", Data: d})
	return nil
}

func (c *console) auditAgain(w http.ResponseWriter, r *http.Request, s *session, f auditFilters, err error) error {
	c.render(w, r, httpapi.StatusOf(escrow.ErrorCode(err)), "audit", s, &view{Title: "Audit trail", Nav: "audit",
		Error: escrow.ErrorMessage(err), Data: &auditData{F: f}})
	return nil
}

// secretID accepts a secret's id or its full path.
func (c *console) secretID(r *http.Request, v string) (string, error) {
	if !strings.HasPrefix(v, "/") {
		return v, nil
	}
	page, err := c.cfg.Secrets.List(r.Context(), secrets.ListInput{Path: v, Deleted: true, Limit: 1})
	if err != nil {
		return "", err
	}
	if len(page.Secrets) == 0 {
		return "", escrow.Errorf(escrow.CodeNotFound, "no secret %s that you can see", v)
	}
	return page.Secrets[0].ID, nil
}

func day(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, escrow.Errorf(escrow.CodeInvalid, "%s must be a date (YYYY-MM-DD)", name)
	}
	return t, nil
}

// auditCSV links the audit search to the report that downloads the same
// trail: by ticket, else by secret, else by user, else all activity.
func auditCSV(f auditFilters, q escrow.AuditQuery) (link, name string) {
	v := url.Values{}
	if !q.From.IsZero() {
		v.Set(report.ParamFrom, q.From.Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set(report.ParamTo, q.To.Format(time.RFC3339))
	}
	switch {
	case f.Ticket != "":
		name = "ticket"
		v.Set(report.ParamTicket, f.Ticket)
	case f.Secret != "":
		name = "access-to-secret"
		v.Set(report.ParamSecret, f.Secret)
	case f.Actor != "":
		name = "access-by-user"
		v.Set(report.ParamUser, f.Actor)
	default:
		name = "activity"
	}
	return "/reports/" + name + ".csv?" + v.Encode(), name
}

type reportsData struct {
	Reports   []report.Info
	Available bool
}

func (c *console) reportsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	if !s.Principal.IsAdmin() && !s.Principal.HasRole(escrow.RoleAuditor) {
		return escrow.Errorf(escrow.CodeForbidden, "reports are for auditors and admins")
	}
	c.render(w, r, http.StatusOK, "reports", s, &view{Title: "Reports", Nav: "reports",
		Data: &reportsData{Reports: report.Catalog(), Available: c.cfg.Reports != nil}})
	return nil
}

// reportDownload streams a report as CSV: GET /reports/{name}.csv?from=
// &to=&user=&secret=&ticket= (dates as YYYY-MM-DD or RFC 3339), as the API
// does (httpapi.ServeReport).
func (c *console) reportDownload(w http.ResponseWriter, r *http.Request, s *session) error {
	if c.cfg.Reports == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "reports are not configured on this server")
	}
	name, ok := strings.CutSuffix(r.PathValue("file"), ".csv")
	if !ok {
		return escrow.Errorf(escrow.CodeNotFound, "reports download as NAME.csv")
	}
	qs := r.URL.Query()
	var p report.Params
	var err error
	if p.From, err = when(qs.Get(report.ParamFrom), report.ParamFrom); err != nil {
		return err
	}
	if p.To, err = when(qs.Get(report.ParamTo), report.ParamTo); err != nil {
		return err
	}
	if len(qs.Get(report.ParamTo)) == len("2006-01-02") {
		p.To = p.To.Add(24 * time.Hour)
	}
	p.User, p.Secret, p.Ticket = strings.TrimSpace(qs.Get(report.ParamUser)), strings.TrimSpace(qs.Get(report.ParamSecret)), strings.TrimSpace(qs.Get(report.ParamTicket))
	return httpapi.ServeReport(w, r, c.cfg.Reports, name, p, report.FormatCSV, c.logger)
}

func when(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return day(v, name)
}
