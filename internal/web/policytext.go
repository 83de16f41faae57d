package web

import (
	"fmt"
	"strings"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// policyWords describes a policy in plain sentences, for the secret page:
// what a user must do, and what happens, before and while they use the
// secret. from is where the policy comes from ("secret", "folder:/prod").
func policyWords(p *escrow.Policy, from string) []string {
	if p == nil {
		return []string{"No policy applies: anyone the access list lets view this secret can reveal it at once. Every reveal is recorded."}
	}
	var out []string
	if f, ok := strings.CutPrefix(from, "folder:"); ok {
		out = append(out, "This policy is inherited from the folder "+f+".")
	}
	if a := p.Approval; a != nil && len(a.For) > 0 {
		kinds := make([]string, len(a.For))
		for i, k := range a.For {
			kinds[i] = string(k)
		}
		out = append(out, fmt.Sprintf("Access to %s needs an approved request.", orList(kinds)))
		for i, s := range a.Steps {
			name := ""
			if s.Name != "" {
				name = " (" + s.Name + ")"
			}
			out = append(out, fmt.Sprintf("Step %d of %d%s: %d approval%s from %s. Nobody approves their own request.",
				i+1, len(a.Steps), name, s.Quorum, plural(s.Quorum), orList(prettyPrincipals(s.Approvers))))
		}
		out = append(out, fmt.Sprintf("A request may last at most %s and is dropped if nobody decides within %s.",
			humanDuration(a.MaxDuration.D()), humanDuration(a.PendingTimeout.D())))
		if a.AllowFutureStart {
			out = append(out, "Access may be booked in advance for a later window (a maintenance window).")
		}
		if a.ClockStarts == escrow.ClockAtStart {
			out = append(out, "The window is the one requested, whenever the approval lands.")
		} else {
			out = append(out, "The clock starts when the last approval lands.")
		}
		out = append(out, fmt.Sprintf("Approvers must have signed in within %s to decide in the console.", humanDuration(a.StepUpAge())))
	}
	switch c := p.Comment; c.Mode {
	case escrow.CommentRequired:
		var uses []string
		if c.OnReveal {
			uses = append(uses, "reveal")
		}
		if p.Approval != nil && len(p.Approval.For) > 0 {
			uses = append(uses, "request")
		}
		if p.Checkout != nil {
			uses = append(uses, "checkout")
		}
		s := "A comment is required"
		if len(uses) > 0 {
			s += " for every " + andList(uses)
		}
		if c.Prompt != "" {
			s += ": " + c.Prompt
		}
		if c.MinLength > 0 {
			s += fmt.Sprintf(" (at least %d characters)", c.MinLength)
		}
		out = append(out, s+".")
		if c.PatternMessage != "" {
			out = append(out, "It must match the policy's pattern: "+c.PatternMessage)
		} else if c.Pattern != "" {
			out = append(out, "It must match the pattern "+c.Pattern+".")
		}
	case escrow.CommentOptional:
		out = append(out, "A comment is optional; it goes into the audit record.")
	}
	if t := p.Ticket; t != nil {
		sys := "the default ticket system"
		if t.System != "" {
			sys = "the ticket system " + t.System
		}
		s := "Requests must name a "
		if len(t.Kinds) > 0 {
			kinds := make([]string, len(t.Kinds))
			for i, k := range t.Kinds {
				kinds[i] = string(k)
			}
			s += orList(kinds) + " "
		}
		s += "ticket, checked live against " + sys
		if len(t.States) > 0 {
			s += " (state " + orList(t.States) + ")"
		}
		out = append(out, s+". If the ticket system cannot be reached, no access is given.")
		if t.RequesterIsAssignee {
			out = append(out, "You must be the ticket's assignee.")
		}
		if t.RequesterInGroup {
			out = append(out, "One of your groups must be the ticket's assignment group.")
		}
		if t.WithinWindow {
			out = append(out, "The window must lie inside the ticket's planned window.")
		}
		if t.WindowFromTicket {
			out = append(out, "The window is the ticket's planned window.")
		}
		if t.Standalone {
			out = append(out, "A ticket that passes every rule grants access without a human approver.")
		}
	}
	if c := p.Checkout; c != nil {
		s := fmt.Sprintf("One person at a time may check it out, for %s", humanDuration(c.IntervalOrDefault()))
		if c.MaxExtensions > 0 {
			s += fmt.Sprintf(", extendable %d time%s", c.MaxExtensions, plural(c.MaxExtensions))
		}
		out = append(out, s+".")
		if c.Required {
			out = append(out, "You must hold the checkout to reveal it.")
		}
		if c.RotateOnCheckin == nil || *c.RotateOnCheckin {
			out = append(out, "When it is checked in or the checkout ends, its password is changed (if it has a rotation), so what you saw stops working.")
		}
	}
	if len(out) == 0 || (len(out) == 1 && strings.HasPrefix(out[0], "This policy is inherited")) {
		out = append(out, "The policy adds no condition: viewing needs only the access list. Every reveal is recorded.")
	}
	return out
}

func prettyPrincipals(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		switch {
		case strings.HasPrefix(p, "group:"):
			out[i] = "group " + strings.TrimPrefix(p, "group:")
		case strings.HasPrefix(p, "user:"):
			out[i] = strings.TrimPrefix(p, "user:")
		default:
			out[i] = p
		}
	}
	return out
}

func orList(xs []string) string {
	switch len(xs) {
	case 0:
		return "nobody"
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

func andList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
