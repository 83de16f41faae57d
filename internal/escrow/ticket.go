package escrow

import "time"

// TicketKind is what a ticket is.
type TicketKind string

// Ticket kinds.
const (
	TicketChange   TicketKind = "change"
	TicketIncident TicketKind = "incident"
)

// Ticket is what Escrow needs to know of a change or incident ticket to
// validate access against it. Times are zero when the system has none.
type Ticket struct {
	System            string     `json:"system"` // the configured system's name
	Number            string     `json:"number"` // CHG0012345, INC0000042, PROJ-12
	Kind              TicketKind `json:"kind"`
	State             string     `json:"state"` // the vendor's state label, e.g. "Implement"
	Summary           string     `json:"summary,omitempty"`
	Assignee          string     `json:"assignee,omitempty"` // login or name, as the system has it
	AssigneeEmail     string     `json:"assigneeEmail,omitempty"`
	AssignmentGroup   string     `json:"assignmentGroup,omitempty"`
	PlannedStart      time.Time  `json:"plannedStart,omitzero"`
	PlannedEnd        time.Time  `json:"plannedEnd,omitzero"`
	ConfigurationItem string     `json:"configurationItem,omitempty"`
	URL               string     `json:"url,omitempty"` // a link for people
}
