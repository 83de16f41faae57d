package access

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

// Kinds of mail.
const (
	KindApprovalRequest = "approval.request"
	KindRequestOutcome  = "request.outcome"
)

// notifyApprovers mails the current step's approvers, never the requester.
// Mail is best-effort: a request stands without it (approvers also find it
// with `escrow requests --pending`), so failures are logged, not returned.
// It returns who was mailed, for the audit record.
func (s *Service) notifyApprovers(ctx context.Context, r *escrow.Request) []string {
	if s.notifier == nil || s.directory == nil || r.Policy.Approval == nil || r.Step >= len(r.Policy.Approval.Steps) {
		return nil
	}
	step := r.Policy.Approval.Steps[r.Step]
	people, err := s.directory.Members(ctx, step.Approvers)
	if err != nil {
		s.logger.WarnContext(ctx, "resolve approvers for mail", "request", r.ID, "err", err)
		return nil
	}
	var to, names []string
	for _, p := range people {
		if p.Email == "" || p.Subject == r.Requester.Subject || strings.EqualFold(p.Email, r.Requester.Email) {
			continue
		}
		to = append(to, p.Email)
		names = append(names, p.Subject)
	}
	if len(to) == 0 {
		s.logger.WarnContext(ctx, "no approver to mail", "request", r.ID, "step", r.Step+1)
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s requests %s access to %s.\n\n", who(r.Requester), r.Access, r.SecretPath)
	fmt.Fprintf(&b, "Window:     %s to %s (%s)\n", stamp(r.Start), stamp(r.End), r.End.Sub(r.Start))
	fmt.Fprintf(&b, "Comment:    %s\n", orDash(r.Comment))
	if t := r.TicketInfo; t != nil {
		fmt.Fprintf(&b, "Ticket:     %s (%s, %s in %s): %s\n", t.Number, t.Kind, t.State, t.System, orDash(t.Summary))
		if !t.PlannedStart.IsZero() {
			fmt.Fprintf(&b, "            planned %s to %s; assigned to %s (%s)\n", stamp(t.PlannedStart), stamp(t.PlannedEnd),
				orDash(t.Assignee), orDash(t.AssignmentGroup))
		}
		if t.URL != "" {
			fmt.Fprintf(&b, "            %s\n", t.URL)
		}
	}
	fmt.Fprintf(&b, "Step:       %d of %d%s: %d approval(s) from %s\n", r.Step+1, len(r.Policy.Approval.Steps),
		stepName(step), step.Quorum, strings.Join(step.Approvers, ", "))
	fmt.Fprintf(&b, "Decide by:  %s\n\n", stamp(r.ExpiresAt))
	if s.publicURL != "" {
		fmt.Fprintf(&b, "Decide:     %s/requests/%s\n", s.publicURL, r.ID)
	}
	fmt.Fprintf(&b, "CLI:        escrow approve %s --comment '...'   (or: escrow deny %s)\n", r.ID, r.ID)
	fmt.Fprintf(&b, "You sign in to decide; you cannot decide on your own request, nor twice.\n")
	writeNotice(&b, r.Policy.Notice)
	fmt.Fprintf(&b, "\nRequest %s (policy from %s)\n", r.ID, r.PolicyFrom)
	s.send(ctx, notify.Message{
		To:      to,
		Subject: fmt.Sprintf("[Escrow] Approval needed: %s requests %s access to %s", r.Requester.Subject, r.Access, r.SecretPath),
		Text:    b.String(), Kind: KindApprovalRequest, Ref: r.ID,
	})
	return names
}

// notifyRequester tells the requester how their request ended (or that it
// was granted).
func (s *Service) notifyRequester(ctx context.Context, r *escrow.Request, g *escrow.Grant, comment string) {
	if s.notifier == nil || r.Requester.Email == "" {
		return
	}
	var b strings.Builder
	subject := fmt.Sprintf("[Escrow] Your request for %s is %s", r.SecretPath, r.Status)
	fmt.Fprintf(&b, "Your request for %s access to %s is %s.\n\n", r.Access, r.SecretPath, r.Status)
	if g != nil {
		fmt.Fprintf(&b, "Access:     %s to %s\n", stamp(g.Start), stamp(g.End))
		fmt.Fprintf(&b, "Reveal:     escrow secret reveal %s\n", r.SecretPath)
	}
	if n := len(r.Decisions); n > 0 {
		d := r.Decisions[n-1]
		verb := "approved"
		if !d.Approve {
			verb = "denied"
		}
		fmt.Fprintf(&b, "Last:       %s %s it: %s\n", d.Approver.Subject, verb, orDash(d.Comment))
	} else if comment != "" {
		fmt.Fprintf(&b, "Note:       %s\n", comment)
	}
	writeNotice(&b, r.Policy.Notice)
	fmt.Fprintf(&b, "\nRequest %s\n", r.ID)
	s.send(ctx, notify.Message{To: []string{r.Requester.Email}, Subject: subject, Text: b.String(), Kind: KindRequestOutcome, Ref: r.ID})
}

func (s *Service) send(ctx context.Context, m notify.Message) {
	now := s.clock.Now()
	m.ID, m.Time = escrow.NewID(now), now
	if err := s.notifier.Send(ctx, m); err != nil {
		s.logger.WarnContext(ctx, "send mail", "kind", m.Kind, "ref", m.Ref, "err", err)
	}
}

func who(a escrow.Actor) string {
	if a.Email != "" {
		return a.Subject + " <" + a.Email + ">"
	}
	return a.Subject
}

func stepName(st escrow.ApprovalStep) string {
	if st.Name == "" {
		return ""
	}
	return " (" + st.Name + ")"
}

func writeNotice(b *strings.Builder, notice string) {
	if notice = strings.TrimSpace(notice); notice != "" {
		fmt.Fprintf(b, "\nPolicy notice:\n%s\n", notice)
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
