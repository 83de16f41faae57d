package escrow

import (
	"context"
	"net/mail"
	"regexp"
	"time"
)

// ReportSchedule is a compliance report an admin asked to have mailed, as
// a CSV attachment, on a schedule.
type ReportSchedule struct {
	// Name is unique: 1 to 64 of a-z, 0-9 and '-'.
	Name string `json:"name"`
	// Report is the report's name (internal/report), Params its
	// parameters (user, secret, ticket); the window is the schedule's
	// period before each run.
	Report string            `json:"report"`
	Params map[string]string `json:"params,omitempty"`
	// Every is hourly, daily, weekly (Mondays) or monthly (the 1st); At is
	// the hour of day, UTC, for all but hourly.
	Every      string    `json:"every"`
	At         int       `json:"at"`
	Recipients []string  `json:"recipients"`
	CreatedBy  string    `json:"createdBy"`
	CreatedAt  time.Time `json:"createdAt"`
	// LastRun is the end of the last window mailed (zero: never).
	LastRun  time.Time `json:"lastRun,omitzero"`
	Revision int64     `json:"revision"`
}

var scheduleName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// Validate checks a schedule's shape (not that its report exists).
func (s *ReportSchedule) Validate() error {
	if !scheduleName.MatchString(s.Name) {
		return Errorf(CodeInvalid, "schedule name must be 1 to 64 of a-z, 0-9 and '-'")
	}
	if s.Report == "" {
		return Errorf(CodeInvalid, "name the report to send")
	}
	switch s.Every {
	case "hourly", "daily", "weekly", "monthly":
	default:
		return Errorf(CodeInvalid, "every must be hourly, daily, weekly or monthly")
	}
	if s.At < 0 || s.At > 23 {
		return Errorf(CodeInvalid, "at is an hour of day, 0 to 23 (UTC)")
	}
	if len(s.Recipients) == 0 || len(s.Recipients) > 50 {
		return Errorf(CodeInvalid, "name 1 to 50 recipients")
	}
	for _, r := range s.Recipients {
		if _, err := mail.ParseAddress(r); err != nil {
			return Errorf(CodeInvalid, "recipient %q is not an email address", r)
		}
	}
	if len(s.Params) > 10 {
		return Errorf(CodeInvalid, "at most 10 parameters")
	}
	return nil
}

// Due returns the end of the latest window that has ended by now and has
// not been mailed, and whether there is one: the last boundary of the
// schedule at or before now, if it is after LastRun.
func (s *ReportSchedule) Due(now time.Time) (time.Time, bool) {
	now = now.UTC()
	var b time.Time
	switch s.Every {
	case "hourly":
		b = now.Truncate(time.Hour)
	case "daily":
		b = time.Date(now.Year(), now.Month(), now.Day(), s.At, 0, 0, 0, time.UTC)
		if b.After(now) {
			b = b.AddDate(0, 0, -1)
		}
	case "weekly":
		b = time.Date(now.Year(), now.Month(), now.Day(), s.At, 0, 0, 0, time.UTC)
		for b.Weekday() != time.Monday || b.After(now) {
			b = b.AddDate(0, 0, -1)
		}
	case "monthly":
		b = time.Date(now.Year(), now.Month(), 1, s.At, 0, 0, 0, time.UTC)
		if b.After(now) {
			b = b.AddDate(0, -1, 0)
		}
	default:
		return time.Time{}, false
	}
	return b, b.After(s.LastRun)
}

// Window is the span a run ending at end covers: one period back.
func (s *ReportSchedule) Window(end time.Time) time.Time {
	switch s.Every {
	case "hourly":
		return end.Add(-time.Hour)
	case "daily":
		return end.AddDate(0, 0, -1)
	case "weekly":
		return end.AddDate(0, 0, -7)
	}
	return end.AddDate(0, -1, 0)
}

// ReportScheduleStore holds report schedules. Every write commits its
// audit record atomically with the change; rec must not be nil.
//
// Implementations: store/sqlite and store/dynamo; both pass
// store/storetest.
type ReportScheduleStore interface {
	// PutReportSchedule writes s where the stored revision equals
	// prevRevision (0: a new name); s.Revision must be prevRevision+1.
	// Returns ErrConflict otherwise.
	PutReportSchedule(ctx context.Context, s *ReportSchedule, prevRevision int64, rec *AuditRecord) error

	// GetReportSchedule returns one schedule. Returns ErrNotFound.
	GetReportSchedule(ctx context.Context, name string) (*ReportSchedule, error)

	// ListReportSchedules returns every schedule, by name, in one indexed
	// read (there are few; never a table scan).
	ListReportSchedules(ctx context.Context) ([]*ReportSchedule, error)

	// DeleteReportSchedule removes name where its revision is
	// prevRevision. Returns ErrNotFound, or ErrConflict if it changed.
	DeleteReportSchedule(ctx context.Context, name string, prevRevision int64, rec *AuditRecord) error
}
