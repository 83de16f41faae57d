package report

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var requestColumns = []Column{
	{"created", "when the request was made (UTC)"},
	{"request", "the request's id"},
	{"requester", "who asked (subject)"},
	{"requesterEmail", "the requester's email"},
	{"secret", "the secret's id"},
	{"path", "the secret's path"},
	{"access", "view, edit or checkout"},
	{"start", "the requested window's start"},
	{"end", "the requested window's end"},
	{"status", "pending, approved, active, expired, denied, cancelled, timed_out or revoked"},
	{"ticket", "the change or incident number"},
	{"comment", "the requester's reason"},
	{"steps", "each approval step: who may approve and how many must (JSON: an array of {step, name, approvers, quorum})"},
	{"decisions", "each decision: step, approver, approve or deny, time and comment (JSON: an array of {step, approver, email, approve, time, comment})"},
	{"approvedBy", "the people who approved, in order (JSON: an array)"},
	{"decidedAt", "when the request was granted or denied"},
	{"timeToApproveSeconds", "seconds from the request to its last approval (empty unless granted)"},
	{"grant", "the grant's id, if granted"},
	{"grantStart", "the granted window's start"},
	{"grantEnd", "the granted window's end"},
	{"cancelledBy", "who cancelled it"},
}

type stepJSON struct {
	Step      int      `json:"step"`
	Name      string   `json:"name,omitempty"`
	Approvers []string `json:"approvers"`
	Quorum    int      `json:"quorum"`
}

type decisionJSON struct {
	Step     int       `json:"step"`
	Approver string    `json:"approver"`
	Email    string    `json:"email,omitempty"`
	Approve  bool      `json:"approve"`
	Time     time.Time `json:"time"`
	Comment  string    `json:"comment,omitempty"`
}

func (s *Service) requestsReport(ctx context.Context, r *run) error {
	return s.eachRequest(ctx, r, func(req *escrow.Request) error {
		v := r.vals
		v[0], v[1], v[2], v[3] = Time(req.CreatedAt), Str(req.ID), Str(req.Requester.Subject), Str(req.Requester.Email)
		v[4], v[5], v[6], v[7] = Str(req.SecretID), Str(req.SecretPath), Str(string(req.Access)), Time(req.Start)
		v[8], v[9], v[10], v[11] = Time(req.End), Str(string(req.Status)), Str(req.Ticket), Str(req.Comment)
		v[12], v[13], v[14] = steps(req), decisions(req), approvedBy(req)
		v[15], v[16], v[17] = Time(req.DecidedAt), timeToApprove(req), Str(req.GrantID)
		v[18], v[19], v[20] = Time(req.GrantStart), Time(req.GrantEnd), Str(req.CancelledBy)
		return r.emit()
	})
}

// eachRequest calls f for each request created in the run's range, newest
// first, walking the index of all requests by creation time: pages newer
// than To are skipped, and the walk stops at the first one before From.
func (s *Service) eachRequest(ctx context.Context, r *run, f func(*escrow.Request) error) error {
	q := escrow.RequestQuery{Limit: s.pageSize}
	from, to := r.params.From, r.params.To
	for {
		page, err := s.requests.ListRequests(ctx, q)
		if err != nil {
			return internal("list requests", err)
		}
		for _, req := range page.Requests {
			if !to.IsZero() && !req.CreatedAt.Before(to) {
				continue
			}
			if !from.IsZero() && req.CreatedAt.Before(from) {
				return nil
			}
			if err := f(req); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

func steps(req *escrow.Request) Value {
	a := req.Policy.Approval
	if a == nil || len(a.Steps) == 0 {
		return Structured("", []stepJSON{})
	}
	out := make([]stepJSON, len(a.Steps))
	parts := make([]string, len(a.Steps))
	for i, st := range a.Steps {
		out[i] = stepJSON{Step: i + 1, Name: st.Name, Approvers: st.Approvers, Quorum: st.Quorum}
		label := itoa(i + 1)
		if st.Name != "" {
			label += " (" + st.Name + ")"
		}
		parts[i] = "step " + label + ": " + itoa(st.Quorum) + " of " + strings.Join(st.Approvers, ", ")
	}
	return Structured(strings.Join(parts, "; "), out)
}

func decisions(req *escrow.Request) Value {
	out := make([]decisionJSON, len(req.Decisions))
	parts := make([]string, len(req.Decisions))
	for i, d := range req.Decisions {
		out[i] = decisionJSON{Step: d.Step + 1, Approver: d.Approver.Subject, Email: d.Approver.Email,
			Approve: d.Approve, Time: d.Time.UTC(), Comment: d.Comment}
		verb := "denied"
		if d.Approve {
			verb = "approved"
		}
		parts[i] = "step " + itoa(d.Step+1) + ": " + d.Approver.Subject + " " + verb + " at " + d.Time.UTC().Format(timeLayout)
		if d.Comment != "" {
			parts[i] += ": " + strconv.Quote(d.Comment)
		}
	}
	return Structured(strings.Join(parts, "; "), out)
}

func approvedBy(req *escrow.Request) Value {
	who := []string{}
	for _, d := range req.Decisions {
		if d.Approve {
			who = append(who, d.Approver.Subject)
		}
	}
	return Structured(strings.Join(who, ", "), who)
}

// timeToApprove is the time from the request to its last approval (to the
// grant for a ticket that stands in for approvers), for granted requests.
func timeToApprove(req *escrow.Request) Value {
	if req.GrantID == "" {
		return Null()
	}
	last := req.DecidedAt
	for _, d := range req.Decisions {
		if d.Approve && d.Time.After(last) {
			last = d.Time
		}
	}
	if last.IsZero() {
		return Null()
	}
	return Int(int64(last.Sub(req.CreatedAt).Round(time.Second) / time.Second))
}

var grantColumns = []Column{
	{"grant", "the grant's id"},
	{"request", "the request it answers"},
	{"subject", "who holds it"},
	{"secret", "the secret's id"},
	{"path", "the secret's path"},
	{"access", "view, edit or checkout"},
	{"status", "active (in force now) or upcoming (its window starts later)"},
	{"start", "the window's start (UTC)"},
	{"end", "the window's end"},
	{"startsInSeconds", "seconds until an upcoming grant starts"},
	{"timeLeftSeconds", "seconds until the grant ends"},
	{"ticket", "the change or incident number"},
	{"created", "when it was granted"},
}

// grantsReport lists open grants by their sparse index. Status is read
// from the clock as well as the record, as access is: a grant past its
// end is left out even if nothing has marked it expired yet.
func (s *Service) grantsReport(ctx context.Context, r *run) error {
	q := escrow.GrantQuery{Open: true, Limit: s.pageSize}
	for {
		page, err := s.requests.ListGrants(ctx, q)
		if err != nil {
			return internal("list grants", err)
		}
		for _, g := range page.Grants {
			status, startsIn := "active", Null()
			switch g.StatusAt(r.now) {
			case escrow.StatusActive:
			case escrow.StatusApproved:
				status, startsIn = "upcoming", seconds(g.Start.Sub(r.now))
			default:
				continue
			}
			v := r.vals
			v[0], v[1], v[2], v[3] = Str(g.ID), Str(g.RequestID), Str(g.Subject), Str(g.SecretID)
			v[4], v[5], v[6], v[7] = Str(g.SecretPath), Str(string(g.Access)), Str(status), Time(g.Start)
			v[8], v[9], v[10], v[11] = Time(g.End), startsIn, seconds(g.End.Sub(r.now)), Str(g.Ticket)
			v[12] = Time(g.CreatedAt)
			if err := r.emit(); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

// seconds rounds d up to whole seconds: time left is never shown as less
// than it is.
func seconds(d time.Duration) Value {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return Int(s)
}

func itoa(n int) string { return strconv.Itoa(n) }
