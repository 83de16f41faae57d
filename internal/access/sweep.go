package access

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Sweeper is the subject that sweep's audit records name.
const Sweeper = "escrow-sweeper"

// Audited actions of the sweep.
const (
	ActionGrantActivate  = "grant.activate"
	ActionGrantExpire    = "grant.expire"
	ActionRequestTimeout = "request.timeout"
)

// SweepResult counts what one sweep changed.
type SweepResult struct {
	Activated, Expired, TimedOut, Conflicts int
}

// Sweep is the safety net that brings stored state in line with the clock:
// it expires grants past their end, activates booked grants whose window
// has started, and times out pending requests nobody decided in time, each
// with its audit record. Access never depends on it (grants are checked
// against the clock on every use); it keeps listings, reports and the audit
// trail true. A change that races another writer is skipped and counted:
// the next sweep sees the new state.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	ctx = escrow.NewContext(ctx, &escrow.Principal{Subject: Sweeper})
	ctx = escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: escrow.NewID(s.clock.Now()), UserAgent: "escrow sweeper"})
	var res SweepResult
	if err := s.sweepGrants(ctx, &res); err != nil {
		return res, err
	}
	err := s.sweepRequests(ctx, &res)
	return res, err
}

func (s *Service) sweepGrants(ctx context.Context, res *SweepResult) error {
	q := escrow.GrantQuery{Open: true, Limit: 1000}
	for {
		page, err := s.requests.ListGrants(ctx, q)
		if err != nil {
			return internal("list open grants", err)
		}
		for _, g := range page.Grants {
			if err := s.sweepGrant(ctx, g, res); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

func (s *Service) sweepGrant(ctx context.Context, g *escrow.Grant, res *SweepResult) error {
	now := s.clock.Now()
	prev := g.Revision
	var action string
	switch {
	case g.StatusAt(now) == escrow.StatusExpired:
		if g.Expire(now) != nil {
			return nil
		}
		action = ActionGrantExpire
	case g.Status == escrow.StatusApproved && g.StatusAt(now) == escrow.StatusActive:
		if g.Activate(now) != nil {
			return nil
		}
		action = ActionGrantActivate
	default:
		return nil
	}
	rec := s.record(ctx, action, "grant:"+g.ID)
	rec.SecretID, rec.Ticket = g.SecretID, g.Ticket
	rec.Details = map[string]string{"grant": g.ID, "request": g.RequestID, "holder": g.Subject,
		"end": g.End.Format(time.RFC3339Nano), "lagMs": itoa64(now.Sub(edge(g, action)).Milliseconds())}
	if err := s.requests.UpdateGrant(ctx, g, prev, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			res.Conflicts++
			return nil
		}
		return internal("update grant", err)
	}
	if action == ActionGrantExpire {
		res.Expired++
	} else {
		res.Activated++
	}
	r := s.syncRequest(ctx, g, now)
	if action == ActionGrantExpire && r != nil {
		s.writeBack(ctx, r.Policy.Ticket, g, fmt.Sprintf("Escrow: %s access to %s for %s ended at %s (request %s).",
			g.Access, g.SecretPath, g.Subject, stamp(g.End), g.RequestID))
	}
	return nil
}

// edge is the moment a sweep action catches up with.
func edge(g *escrow.Grant, action string) time.Time {
	if action == ActionGrantExpire {
		return g.End
	}
	return g.Start
}

func (s *Service) sweepRequests(ctx context.Context, res *SweepResult) error {
	q := escrow.RequestQuery{Status: escrow.StatusPending, Limit: 1000}
	for {
		page, err := s.requests.ListRequests(ctx, q)
		if err != nil {
			return internal("list pending requests", err)
		}
		for _, r := range page.Requests {
			now := s.clock.Now()
			prev := r.Revision
			if r.TimeOut(now) != nil {
				continue
			}
			rec := s.record(ctx, ActionRequestTimeout, "request:"+r.ID)
			rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
			rec.Details = map[string]string{"request": r.ID, "requester": r.Requester.Subject,
				"deadline": r.ExpiresAt.Format(time.RFC3339)}
			if err := s.requests.UpdateRequest(ctx, r, prev, nil, rec); err != nil {
				if errors.Is(err, escrow.ErrConflict) {
					res.Conflicts++
					continue
				}
				return internal("time out request", err)
			}
			res.TimedOut++
			s.notifyRequester(ctx, r, nil, "nobody decided by "+stamp(r.ExpiresAt))
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

// RunSweeper sweeps every interval until ctx ends, logging what changed and
// any failure (the next tick tries again).
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Sweep(ctx)
		if err != nil {
			s.logger.ErrorContext(ctx, "sweep failed", "err", err)
			continue
		}
		if res != (SweepResult{}) {
			s.logger.InfoContext(ctx, "sweep", "activated", res.Activated, "expired", res.Expired,
				"timedOut", res.TimedOut, "conflicts", res.Conflicts)
		}
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
