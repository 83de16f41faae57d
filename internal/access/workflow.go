package access

import (
	"context"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Workflow is the subject that the workflow tasks' audit records name.
const Workflow = "escrow-workflow"

// ActionWorkflowAwait records that the workflow waits on a request.
const ActionWorkflowAwait = "workflow.await"

// Decision is what the workflow's AwaitDecision task receives: the request's
// status and, once approved, its grant, with times rounded up to whole
// seconds so that a Wait never fires before the grant's own edge.
type Decision struct {
	Status     escrow.RequestStatus `json:"status"`
	GrantID    string               `json:"grantId,omitempty"`
	GrantStart string               `json:"grantStart,omitempty"`
	GrantEnd   string               `json:"grantEnd,omitempty"`
}

func decisionOf(r *escrow.Request) Decision {
	d := Decision{Status: r.Status, GrantID: r.GrantID}
	if r.GrantID != "" {
		d.GrantStart, d.GrantEnd = ceilStamp(r.GrantStart), ceilStamp(r.GrantEnd)
	}
	return d
}

func ceilStamp(t time.Time) string {
	if c := t.Truncate(time.Second); !c.Equal(t) {
		t = c.Add(time.Second)
	}
	return t.UTC().Format(time.RFC3339)
}

func workflowCtx(ctx context.Context, now time.Time) context.Context {
	ctx = escrow.NewContext(ctx, &escrow.Principal{Subject: Workflow})
	return escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: escrow.NewID(now), UserAgent: "escrow workflow"})
}

// startWorkflow starts the request's execution. The request stands without
// it (the API decides, the sweeper expires), so a failure is logged.
func (s *Service) startWorkflow(ctx context.Context, r *escrow.Request) {
	if s.workflow == nil {
		return
	}
	if err := s.workflow.StartRequest(ctx, r.ID, r.ExpiresAt.Sub(s.clock.Now())); err != nil {
		s.logger.WarnContext(ctx, "start request workflow", "request", r.ID, "err", err)
	}
}

// answerWorkflow hands a request's final decision to the waiting workflow.
func (s *Service) answerWorkflow(ctx context.Context, r *escrow.Request) {
	if s.workflow == nil || r.WorkflowToken == "" || r.Status == escrow.StatusPending {
		return
	}
	if err := s.workflow.SendTaskSuccess(ctx, r.WorkflowToken, decisionOf(r)); err != nil {
		s.logger.WarnContext(ctx, "answer request workflow", "request", r.ID, "err", err)
	}
}

// AwaitDecision is the workflow's AwaitDecision task: it keeps the task
// token with the request, or, if the request was decided before the
// workflow got here, answers the token at once.
func (s *Service) AwaitDecision(ctx context.Context, requestID, token string) error {
	now := s.clock.Now()
	ctx = workflowCtx(ctx, now)
	r, err := s.requests.GetRequest(ctx, requestID)
	if err != nil {
		return internal("read request", err)
	}
	if r.Status != escrow.StatusPending {
		if s.workflow == nil {
			return escrow.Errorf(escrow.CodeInternal, "no workflow to answer")
		}
		return s.workflow.SendTaskSuccess(ctx, token, decisionOf(r))
	}
	prev := r.Revision
	r.WorkflowToken = token
	r.Revision++
	r.UpdatedAt = now
	rec := s.record(ctx, ActionWorkflowAwait, "request:"+r.ID)
	rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
	rec.Details = map[string]string{"request": r.ID, "deadline": r.ExpiresAt.Format(time.RFC3339)}
	if err := s.requests.UpdateRequest(ctx, r, prev, nil, rec); err != nil {
		return internal("keep workflow token", err) // a conflict is retried by the state machine
	}
	return nil
}

// TimeOutRequest is the workflow's TimeOut task: it ends a pending request
// whose deadline passed (the sweeper may have done it already). It returns
// the request's status.
func (s *Service) TimeOutRequest(ctx context.Context, requestID string) (escrow.RequestStatus, error) {
	now := s.clock.Now()
	ctx = workflowCtx(ctx, now)
	r, err := s.requests.GetRequest(ctx, requestID)
	if err != nil {
		return "", internal("read request", err)
	}
	if r.Status != escrow.StatusPending {
		return r.Status, nil
	}
	prev := r.Revision
	if err := r.TimeOut(now); err != nil {
		return "", err // not due yet (clock skew): the state machine retries
	}
	rec := s.record(ctx, ActionRequestTimeout, "request:"+r.ID)
	rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
	rec.Details = map[string]string{"request": r.ID, "requester": r.Requester.Subject, "deadline": r.ExpiresAt.Format(time.RFC3339)}
	if err := s.requests.UpdateRequest(ctx, r, prev, nil, rec); err != nil {
		return "", internal("time out request", err)
	}
	s.notifyRequester(ctx, r, nil, "nobody decided by "+stamp(r.ExpiresAt))
	return r.Status, nil
}

// ActivateGrant and ExpireGrant are the workflow's Activate and Expire
// tasks. Each is a no-op once done (by the sweeper, or a revocation), and
// an error before its edge, which the state machine retries.
func (s *Service) ActivateGrant(ctx context.Context, grantID string) (escrow.RequestStatus, error) {
	return s.settleOne(ctx, grantID, ActionGrantActivate)
}

// ExpireGrant: see ActivateGrant.
func (s *Service) ExpireGrant(ctx context.Context, grantID string) (escrow.RequestStatus, error) {
	return s.settleOne(ctx, grantID, ActionGrantExpire)
}

func (s *Service) settleOne(ctx context.Context, grantID, action string) (escrow.RequestStatus, error) {
	now := s.clock.Now()
	ctx = workflowCtx(ctx, now)
	g, err := s.requests.GetGrant(ctx, grantID)
	if err != nil {
		return "", internal("read grant", err)
	}
	due := g.StatusAt(now)
	switch {
	case g.Status.Terminal():
		return g.Status, nil
	case action == ActionGrantActivate && g.Status == escrow.StatusActive:
		return g.Status, nil
	case action == ActionGrantActivate && due == escrow.StatusApproved,
		action == ActionGrantExpire && due != escrow.StatusExpired:
		return "", escrow.Errorf(escrow.CodeConflict, "grant %s is not due for %s yet", g.ID, action)
	}
	var res SweepResult
	if err := s.sweepGrant(ctx, g, &res); err != nil {
		return "", err
	}
	if res.Conflicts > 0 {
		return "", escrow.Errorf(escrow.CodeConflict, "grant %s changed meanwhile", g.ID)
	}
	return g.Status, nil
}
