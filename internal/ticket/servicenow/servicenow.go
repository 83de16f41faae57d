// Package servicenow is the ticket.System for ServiceNow, over its Table
// API: change requests (change_request) and incidents (incident), looked up
// by number, and work notes written back to them.
//
// It reads every field with sysparm_display_value=all, which gives both the
// stored value and the label for each: labels (state "Implement", the
// assignee's name, the group's name) come from display_value, dates from
// value, because ServiceNow stores dates in UTC but renders their display
// value in the API user's time zone and date format, which Escrow cannot
// know.
//
// It must never put a credential into a log, an error or a ticket, and
// never return a ticket it could not read exactly as ServiceNow documents
// it: any answer of another shape is an error (fail closed).
package servicenow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Config configures one ServiceNow instance.
type Config struct {
	Name        string // the configured system's name, copied to Ticket.System
	BaseURL     string // e.g. https://acme.service-now.com
	Credentials ticket.Credentials
	Timeout     time.Duration // for a whole call, retries included; 0 = ticket.DefaultTimeout
	HTTPClient  *http.Client  // nil = a default client
	Logger      *slog.Logger  // nil = no logging
}

// System is a ServiceNow instance.
type System struct {
	name string
	base string // without a trailing slash, for links
	c    *ticket.Client
	log  *slog.Logger
}

var _ ticket.System = (*System)(nil)

// New returns the System for cfg. It fails with code invalid if the base
// URL is not an absolute http(s) URL without credentials in it, or if the
// credentials are neither a username and password nor a token.
func New(cfg Config) (*System, error) {
	// Checked here so that NewClient, which quotes a bad URL, never sees
	// one carrying a password.
	if u, err := url.Parse(cfg.BaseURL); err == nil && u.User != nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "ServiceNow %q: the base URL must not carry credentials", cfg.Name)
	}
	if cr := cfg.Credentials; cr.Token == "" && (cr.Username == "" || cr.Password == "") {
		return nil, escrow.Errorf(escrow.CodeInvalid, "ServiceNow %q: credentials need a username and password, or a token", cfg.Name)
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	c, err := ticket.NewClient(base, cfg.HTTPClient, cfg.Timeout, ticket.Basic(cfg.Credentials))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &System{name: cfg.Name, base: base, c: c, log: log}, nil
}

// table is a ServiceNow table Escrow reads tickets from.
type table struct {
	name   string
	kind   ticket.Kind
	fields string // sysparm_fields
}

// Dot-walked fields (assigned_to.user_name) save a second call to sys_user.
var (
	changeTable = table{"change_request", ticket.Change,
		"sys_id,number,state,short_description,assigned_to,assigned_to.user_name,assigned_to.email,assignment_group,start_date,end_date,cmdb_ci"}
	// An incident has no planned window.
	incidentTable = table{"incident", ticket.Incident,
		"sys_id,number,state,short_description,assigned_to,assigned_to.user_name,assigned_to.email,assignment_group,cmdb_ci"}
)

// tablesFor returns the tables to search, in order: by the default number
// prefixes, else both (instances may renumber).
func tablesFor(number string) []table {
	switch {
	case strings.HasPrefix(number, "CHG"):
		return []table{changeTable}
	case strings.HasPrefix(number, "INC"):
		return []table{incidentTable}
	}
	return []table{changeTable, incidentTable}
}

// numberRE is what a ServiceNow number may look like. It keeps the encoded
// query to a single term: "^", "=" or "," in a number could otherwise
// widen it (CHG1^ORnumberISNOTEMPTY would match any change).
var numberRE = regexp.MustCompile(`^[A-Z][A-Z0-9_-]{0,39}$`)

// sysIDRE is a ServiceNow sys_id: 32 hex digits. It goes into a path and a
// link, so nothing else is accepted.
var sysIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// dateLayout is how the Table API writes a date-time value (in UTC).
const dateLayout = "2006-01-02 15:04:05"

// Lookup implements ticket.System.
func (s *System) Lookup(ctx context.Context, number string) (*ticket.Ticket, error) {
	rec, tbl, err := s.find(ctx, number)
	if err != nil {
		return nil, err
	}
	t, err := s.toTicket(rec, tbl)
	if err != nil {
		s.log.WarnContext(ctx, "servicenow answer rejected", "system", s.name, "table", tbl.name, "code", escrow.ErrorCode(err), "error", escrow.ErrorMessage(err))
		return nil, err
	}
	return t, nil
}

// Comment implements ticket.System: it adds text to the ticket's work
// notes (visible to ServiceNow staff, not to the caller of an incident).
func (s *System) Comment(ctx context.Context, number, text string) error {
	if strings.TrimSpace(text) == "" {
		return escrow.Errorf(escrow.CodeInvalid, "a comment needs text")
	}
	rec, tbl, err := s.find(ctx, number)
	if err != nil {
		return err
	}
	sysID := rec.SysID.Value
	if !sysIDRE.MatchString(sysID) {
		return s.fail(ctx, tbl, rec.Number.Value, escrow.CodeInternal, "the answer carries no valid sys_id")
	}
	var out struct {
		Result *struct {
			SysID string `json:"sys_id"`
		} `json:"result"`
	}
	q := url.Values{"sysparm_fields": {"sys_id"}}
	body := map[string]string{"work_notes": text}
	if err := s.c.Do(ctx, http.MethodPatch, "/api/now/table/"+tbl.name+"/"+sysID, q, body, &out); err != nil {
		return s.fail(ctx, tbl, rec.Number.Value, escrow.ErrorCode(err), "add work notes: "+message(err))
	}
	if out.Result == nil || out.Result.SysID != sysID {
		return s.fail(ctx, tbl, rec.Number.Value, escrow.CodeInternal, "add work notes: the answer is not the record that was updated")
	}
	s.log.InfoContext(ctx, "servicenow work notes added", "system", s.name, "table", tbl.name, "number", rec.Number.Value)
	return nil
}

// find looks the number up in each table it may be in.
func (s *System) find(ctx context.Context, number string) (*record, table, error) {
	n := strings.ToUpper(strings.TrimSpace(number))
	if !numberRE.MatchString(n) {
		return nil, table{}, escrow.Errorf(escrow.CodeInvalid, "a ServiceNow ticket number is letters then digits, like CHG0012345")
	}
	tables := tablesFor(n)
	for _, tbl := range tables {
		rec, err := s.query(ctx, tbl, n)
		if errors.Is(err, escrow.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, tbl, err
		}
		return rec, tbl, nil
	}
	kinds := "change or incident"
	if len(tables) == 1 {
		kinds = string(tables[0].kind)
	}
	s.log.DebugContext(ctx, "servicenow ticket not found", "system", s.name, "number", n)
	return nil, table{}, escrow.Errorf(escrow.CodeNotFound, "ServiceNow %q has no %s %s", s.name, kinds, n)
}

// query asks one table for the record with number n. An empty result (or a
// 404, which older releases sent for one) is ErrNotFound.
func (s *System) query(ctx context.Context, tbl table, n string) (*record, error) {
	q := url.Values{
		"sysparm_query":         {"number=" + n},
		"sysparm_limit":         {"1"},
		"sysparm_display_value": {"all"},
		"sysparm_fields":        {tbl.fields},
	}
	var out struct {
		// A pointer, so that an answer without "result" is told apart
		// from an empty one.
		Result *[]record `json:"result"`
	}
	err := s.c.Do(ctx, http.MethodGet, "/api/now/table/"+tbl.name, q, nil, &out)
	switch {
	case errors.Is(err, escrow.ErrNotFound):
		return nil, err
	case err != nil:
		return nil, s.fail(ctx, tbl, n, escrow.ErrorCode(err), message(err))
	case out.Result == nil:
		return nil, s.fail(ctx, tbl, n, escrow.CodeInternal, `the answer has no "result"`)
	case len(*out.Result) == 0:
		return nil, escrow.ErrNotFound
	}
	// sysparm_limit=1 asks for one; should more come, only an exact
	// match of the number counts.
	for i := range *out.Result {
		if rec := &(*out.Result)[i]; strings.EqualFold(rec.Number.Value, n) {
			return rec, nil
		}
	}
	return nil, s.fail(ctx, tbl, n, escrow.CodeInternal, "the answer is for another ticket")
}

// fail returns an error with code that names the system and ticket, and
// logs it. msg must be safe to show (it never holds a credential or body).
func (s *System) fail(ctx context.Context, tbl table, n string, code escrow.Code, msg string) error {
	s.log.WarnContext(ctx, "servicenow call failed", "system", s.name, "table", tbl.name, "number", n, "code", code, "error", msg)
	return escrow.Errorf(code, "ServiceNow %q, %s %s: %s", s.name, tbl.kind, n, msg)
}

// message returns the client-safe text of a ticket.Client error, keeping
// the specific cause even for internal ones (which ErrorMessage hides):
// the requester must see why access was refused, and Client's messages
// never hold a credential or a body.
func message(err error) string {
	var e *escrow.Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "internal error"
}

func (s *System) toTicket(rec *record, tbl table) (*ticket.Ticket, error) {
	n := rec.Number.Value
	fail := func(format string, args ...any) error {
		return escrow.Errorf(escrow.CodeInternal, "ServiceNow %q, %s %s: %s", s.name, tbl.kind, n, fmt.Sprintf(format, args...))
	}
	if !sysIDRE.MatchString(rec.SysID.Value) {
		return nil, fail("the answer carries no valid sys_id")
	}
	start, err := parseDate(rec.StartDate.Value)
	if err != nil {
		return nil, fail("start_date is not a ServiceNow date-time")
	}
	end, err := parseDate(rec.EndDate.Value)
	if err != nil {
		return nil, fail("end_date is not a ServiceNow date-time")
	}
	// The login is what Escrow can match a requester against; the name
	// (the display value) is the fallback when the API user may not read
	// sys_user.user_name.
	assignee := rec.AssignedToUserName.DisplayValue
	if assignee == "" {
		assignee = rec.AssignedTo.DisplayValue
	}
	return &ticket.Ticket{
		System:            s.name,
		Number:            n,
		Kind:              tbl.kind,
		State:             rec.State.DisplayValue,
		Summary:           rec.ShortDescription.DisplayValue,
		Assignee:          assignee,
		AssigneeEmail:     rec.AssignedToEmail.DisplayValue,
		AssignmentGroup:   rec.AssignmentGroup.DisplayValue,
		PlannedStart:      start,
		PlannedEnd:        end,
		ConfigurationItem: rec.CmdbCI.DisplayValue,
		URL:               s.base + "/nav_to.do?uri=" + tbl.name + ".do?sys_id=" + rec.SysID.Value,
	}, nil
}

func parseDate(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	return time.ParseInLocation(dateLayout, v, time.UTC)
}
