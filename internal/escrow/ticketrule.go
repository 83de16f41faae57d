package escrow

import (
	"slices"
	"strings"
	"time"
)

// TicketRule is the ticket part of a policy: which ticket a request must
// name and what must be true of it. Every rule that fails is named in the
// error the requester sees.
type TicketRule struct {
	// System is the configured ticket system to ask ("" = the default).
	System string `json:"system,omitempty"`
	// Kinds the ticket may be (change, incident); empty allows both.
	Kinds []TicketKind `json:"kinds,omitempty"`
	// States the ticket must be in (case-insensitive), e.g. Implement,
	// Scheduled. Empty allows any.
	States []string `json:"states,omitempty"`
	// RequesterIsAssignee: the requester's email or subject must be the
	// ticket's assignee.
	RequesterIsAssignee bool `json:"requesterIsAssignee,omitempty"`
	// RequesterInGroup: one of the requester's groups must be the ticket's
	// assignment group (case-insensitive).
	RequesterInGroup bool `json:"requesterInGroup,omitempty"`
	// WithinWindow: the requested window must lie inside the ticket's
	// planned window.
	WithinWindow bool `json:"withinWindow,omitempty"`
	// WindowFromTicket: the access window is the ticket's planned window
	// (the request's own is ignored).
	WindowFromTicket bool `json:"windowFromTicket,omitempty"`
	// CITag names a secret tag whose value must equal the ticket's
	// configuration item (case-insensitive).
	CITag string `json:"ciTag,omitempty"`
	// Standalone: a ticket that passes every rule grants access for the
	// allowed window without a human approver.
	Standalone bool `json:"standalone,omitempty"`
	// WriteBack: comment on the ticket when access is approved, used and
	// expired.
	WriteBack bool `json:"writeBack,omitempty"`
}

// Validate checks the rule's shape.
func (r *TicketRule) Validate() error {
	if r == nil {
		return nil
	}
	for _, k := range r.Kinds {
		if k != TicketChange && k != TicketIncident {
			return Errorf(CodeInvalid, "ticket.kinds: %q is not change or incident", k)
		}
	}
	if r.WithinWindow && r.WindowFromTicket {
		return Errorf(CodeInvalid, "ticket.withinWindow and ticket.windowFromTicket exclude each other")
	}
	if len(r.States) > 20 || len(r.CITag) > 64 {
		return Errorf(CodeInvalid, "ticket rule too large")
	}
	return nil
}

// Check applies the rule to a ticket for a request by requester for sec
// over [start, end). The error names the first rule that fails, so the
// requester knows what to fix.
func (r *TicketRule) Check(t *Ticket, requester Actor, sec *Secret, start, end time.Time) error {
	fail := func(rule, format string, args ...any) error {
		e := Errorf(CodeForbidden, "ticket rule %q: "+format, append([]any{rule}, args...)...)
		return e
	}
	if len(r.Kinds) > 0 && !slices.Contains(r.Kinds, t.Kind) {
		return fail("kinds", "%s is a %s; the policy wants %s", t.Number, t.Kind, joinKinds(r.Kinds))
	}
	if len(r.States) > 0 && !slices.ContainsFunc(r.States, func(s string) bool { return strings.EqualFold(s, t.State) }) {
		return fail("states", "%s is %s; the policy allows %s", t.Number, orNone(t.State), strings.Join(r.States, ", "))
	}
	if r.RequesterIsAssignee {
		ok := t.Assignee != "" && (strings.EqualFold(t.Assignee, requester.Subject) || strings.EqualFold(t.Assignee, requester.Email)) ||
			t.AssigneeEmail != "" && strings.EqualFold(t.AssigneeEmail, requester.Email)
		if !ok {
			return fail("requesterIsAssignee", "%s is assigned to %s, not to you", t.Number, orNone(firstOf(t.AssigneeEmail, t.Assignee)))
		}
	}
	if r.RequesterInGroup && !slices.ContainsFunc(requester.Groups, func(g string) bool { return t.AssignmentGroup != "" && strings.EqualFold(g, t.AssignmentGroup) }) {
		return fail("requesterInGroup", "%s belongs to group %s, which is not one of yours", t.Number, orNone(t.AssignmentGroup))
	}
	if r.WithinWindow || r.WindowFromTicket {
		if t.PlannedStart.IsZero() || t.PlannedEnd.IsZero() || !t.PlannedEnd.After(t.PlannedStart) {
			return fail("window", "%s has no planned start and end", t.Number)
		}
	}
	if r.WithinWindow && (start.Before(t.PlannedStart) || end.After(t.PlannedEnd)) {
		return fail("withinWindow", "the requested window %s to %s is outside %s's planned window %s to %s", stamp(start), stamp(end),
			t.Number, stamp(t.PlannedStart), stamp(t.PlannedEnd))
	}
	if r.CITag != "" {
		want := sec.Tags[r.CITag]
		if want == "" || !strings.EqualFold(want, t.ConfigurationItem) {
			return fail("ciTag", "%s is for configuration item %s, but this secret's %s tag is %s", t.Number,
				orNone(t.ConfigurationItem), r.CITag, orNone(want))
		}
	}
	return nil
}

func joinKinds(ks []TicketKind) string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return strings.Join(out, " or ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
