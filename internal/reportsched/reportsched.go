// Package reportsched mails compliance reports on a schedule: an admin
// defines a schedule (which report, with what parameters, how often, to
// whom); each hour (EventBridge Scheduler invoking the reports function in
// AWS, a ticker in -dev) every schedule whose window has ended is run over
// that window and mailed as a CSV attachment.
//
// A window is mailed at least once: LastRun moves on only after the mail
// was accepted, so a failed run is retried at the next tick (a mail may
// then arrive twice; reports are harmless to receive twice). Every change
// and every run is audited.
package reportsched

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
	"github.com/escrow-pam/escrow/internal/report"
)

// Audited actions.
const (
	ActionPut    = "report.schedule.put"
	ActionList   = "report.schedule.list"
	ActionDelete = "report.schedule.delete"
	ActionSent   = "report.schedule.sent"
)

// Runner is the subject scheduled runs act as: an auditor, which may run
// reports and nothing else.
const Runner = "escrow-reports"

// Config holds what the service needs.
type Config struct {
	Reports  *report.Service
	Store    escrow.ReportScheduleStore
	Audit    escrow.AuditLog
	Notifier notify.Notifier // nil: runs fail (and are retried) until mail is configured
	Clock    escrow.Clock    // nil = system clock
	Logger   *slog.Logger    // nil = discard
}

// Service defines and runs schedules.
type Service struct {
	reports  *report.Service
	store    escrow.ReportScheduleStore
	notifier notify.Notifier
	clock    escrow.Clock
	logger   *slog.Logger
	rec      *audit.Recorder
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{reports: cfg.Reports, store: cfg.Store, notifier: cfg.Notifier, clock: cfg.Clock, logger: cfg.Logger}
	if s.clock == nil {
		s.clock = escrow.SystemClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.rec = &audit.Recorder{Log: cfg.Audit, Clock: s.clock, Logger: s.logger}
	return s
}

func need(ctx context.Context, auditorToo bool) (*escrow.Principal, error) {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return nil, escrow.ErrUnauthenticated
	}
	if p.IsAdmin() || (auditorToo && p.HasRole(escrow.RoleAuditor)) {
		return p, nil
	}
	return nil, escrow.Errorf(escrow.CodeForbidden, "only admins may define report schedules")
}

// Put creates or replaces a schedule (admin). A new schedule's first window
// is the next one to end: it does not mail the past.
func (s *Service) Put(ctx context.Context, in *escrow.ReportSchedule) (*escrow.ReportSchedule, error) {
	rec := s.rec.New(ctx, ActionPut, "report-schedule:"+in.Name)
	out, err := s.put(ctx, in, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	return out, nil
}

func (s *Service) put(ctx context.Context, in *escrow.ReportSchedule, rec *escrow.AuditRecord) (*escrow.ReportSchedule, error) {
	p, err := need(ctx, false)
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := checkReport(in.Report, in.Params); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	sc := *in
	sc.CreatedBy, sc.CreatedAt, sc.Revision = p.Subject, now, 1
	sc.LastRun, _ = sc.Due(now)
	prev := int64(0)
	old, err := s.store.GetReportSchedule(ctx, in.Name)
	switch {
	case err == nil:
		prev, sc.Revision, sc.CreatedBy, sc.CreatedAt = old.Revision, old.Revision+1, old.CreatedBy, old.CreatedAt
	case !errors.Is(err, escrow.ErrNotFound):
		return nil, fmt.Errorf("read schedule: %w", err)
	}
	rec.Details = map[string]string{"report": sc.Report, "every": sc.Every, "recipients": strings.Join(sc.Recipients, ",")}
	if err := s.store.PutReportSchedule(ctx, &sc, prev, rec); err != nil {
		return nil, err
	}
	return &sc, nil
}

// checkReport refuses an unknown report or a parameter it does not take
// (from and to are the schedule's window, never fixed).
func checkReport(name string, params map[string]string) error {
	for _, info := range report.Catalog() {
		if info.Name != name {
			continue
		}
		for k := range params {
			if k == report.ParamFrom || k == report.ParamTo ||
				!slices.ContainsFunc(info.Params, func(p report.Param) bool { return p.Name == k }) {
				return escrow.Errorf(escrow.CodeInvalid, "report %s does not take parameter %q on a schedule", name, k)
			}
		}
		for _, p := range info.Params {
			if p.Required && params[p.Name] == "" {
				return escrow.Errorf(escrow.CodeInvalid, "report %s needs parameter %q", name, p.Name)
			}
		}
		return nil
	}
	return escrow.Errorf(escrow.CodeInvalid, "no report %q (escrow report list)", name)
}

// List returns every schedule (admin or auditor).
func (s *Service) List(ctx context.Context) ([]*escrow.ReportSchedule, error) {
	rec := s.rec.New(ctx, ActionList, "report-schedules")
	if _, err := need(ctx, true); err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	out, err := s.store.ListReportSchedules(ctx)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes a schedule (admin).
func (s *Service) Delete(ctx context.Context, name string) error {
	rec := s.rec.New(ctx, ActionDelete, "report-schedule:"+name)
	err := func() error {
		if _, err := need(ctx, false); err != nil {
			return err
		}
		old, err := s.store.GetReportSchedule(ctx, name)
		if err != nil {
			return err
		}
		return s.store.DeleteReportSchedule(ctx, name, old.Revision, rec)
	}()
	if err != nil {
		return s.rec.Fail(ctx, rec, err)
	}
	return nil
}

// MaxAttachment keeps a report's CSV within what one mail carries.
const MaxAttachment = 7 << 20

// RunDue runs and mails every schedule whose window has ended, as the
// Runner; it returns how many it sent. One schedule failing does not stop
// the others; their errors are joined.
func (s *Service) RunDue(ctx context.Context) (int, error) {
	now := s.clock.Now()
	ctx = escrow.NewContext(ctx, &escrow.Principal{Subject: Runner, Roles: []string{escrow.RoleAuditor}})
	ctx = escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: escrow.NewID(now), UserAgent: "escrow scheduled reports"})
	all, err := s.store.ListReportSchedules(ctx)
	if err != nil {
		return 0, fmt.Errorf("list schedules: %w", err)
	}
	sent := 0
	var errs []error
	for _, sc := range all {
		end, due := sc.Due(now)
		if !due {
			continue
		}
		if err := s.runOne(ctx, sc, end); err != nil {
			s.logger.WarnContext(ctx, "scheduled report failed; retried at the next tick", "schedule", sc.Name, "err", err)
			errs = append(errs, fmt.Errorf("schedule %s: %w", sc.Name, err))
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

type capped struct {
	bytes.Buffer
	max int
}

var errTooBig = errors.New("report too large to mail")

func (c *capped) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.max {
		return 0, errTooBig
	}
	return c.Buffer.Write(p)
}

func (s *Service) runOne(ctx context.Context, sc *escrow.ReportSchedule, end time.Time) error {
	from := sc.Window(end)
	params := report.Params{From: from, To: end, User: sc.Params[report.ParamUser], Secret: sc.Params[report.ParamSecret],
		Ticket: sc.Params[report.ParamTicket]}
	buf := &capped{max: MaxAttachment}
	w := report.NewCSVWriter(buf)
	text := fmt.Sprintf("Escrow report %q (%s) for %s to %s, attached as CSV.\n", sc.Report, sc.Name,
		from.Format(time.RFC3339), end.Format(time.RFC3339))
	var atts []notify.Attachment
	switch err := s.reports.Run(ctx, sc.Report, params, w); {
	case errors.Is(err, errTooBig):
		text += fmt.Sprintf("\nThe report is larger than %d MiB, too large to mail: run it with escrow report %s --from %s --to %s.\n",
			MaxAttachment>>20, sc.Report, from.Format(time.RFC3339), end.Format(time.RFC3339))
	case err != nil:
		return err
	default:
		text += fmt.Sprintf("\n%d rows.\n", w.Rows())
		atts = []notify.Attachment{{Name: fmt.Sprintf("%s-%s.csv", sc.Name, end.Format("20060102T1504Z")),
			ContentType: report.ContentType(report.FormatCSV), Data: buf.Bytes()}}
	}
	if s.notifier == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "no mail transport is configured")
	}
	msg := notify.Message{ID: escrow.NewID(s.clock.Now()), To: sc.Recipients, Kind: "report.scheduled", Ref: sc.Name,
		Subject: fmt.Sprintf("Escrow report %s: %s to %s", sc.Name, from.Format("2006-01-02 15:04"), end.Format("2006-01-02 15:04 MST")),
		Text:    text, Attachments: atts, Time: s.clock.Now()}
	if err := s.notifier.Send(ctx, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	rec := s.rec.New(ctx, ActionSent, "report-schedule:"+sc.Name)
	rec.Details = map[string]string{"report": sc.Report, "from": from.Format(time.RFC3339), "to": end.Format(time.RFC3339),
		"recipients": strings.Join(sc.Recipients, ","), "bytes": fmt.Sprint(buf.Len())}
	next := *sc
	next.LastRun, next.Revision = end, sc.Revision+1
	if err := s.store.PutReportSchedule(ctx, &next, sc.Revision, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil // changed meanwhile (or another runner recorded it): the next tick decides
		}
		return fmt.Errorf("record the run: %w", err)
	}
	return nil
}
