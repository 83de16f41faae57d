// Package ticket is the port to change and incident ticket systems
// (ServiceNow, BMC Helix, Jira, or any system behind a generic HTTP
// validator): the ticket as Escrow sees it, the System interface each
// adapter implements, and an HTTP client that fails closed.
//
// Adapters live in ticket/servicenow, ticket/bmc, ticket/jira and
// ticket/webhook. None may put a credential into a log line, an error or an
// audit record: errors name what went wrong (status, rule, field), never
// what was sent.
package ticket

import (
	"context"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Kind is what a ticket is (the domain's type).
type Kind = escrow.TicketKind

// Kinds.
const (
	Change   = escrow.TicketChange
	Incident = escrow.TicketIncident
)

// Ticket is the domain's ticket: what Escrow needs to know of a ticket to
// validate access against it.
type Ticket = escrow.Ticket

// System is one configured ticket system.
type System interface {
	// Lookup returns the ticket with this number. It fails closed, with
	// errors carrying escrow codes:
	//   - ErrNotFound: no such ticket (or not of a kind the system serves);
	//   - ErrUnavailable: the system cannot be reached, timed out, or kept
	//     answering 429/5xx after retries within the timeout;
	//   - ErrInternal (code internal): authentication refused, a redirect
	//     to another host, or an answer that is not what the vendor
	//     documents (malformed or unexpected JSON): a misconfiguration or
	//     an impostor, never a reason to grant anything.
	Lookup(ctx context.Context, number string) (*Ticket, error)

	// Comment adds a note to the ticket (write-back: access approved,
	// used, expired). Same errors as Lookup.
	Comment(ctx context.Context, number, text string) error
}

// Credentials authenticate to a ticket system. They come from an Escrow
// secret (never from plain configuration) and never leave the adapter.
type Credentials struct {
	Username string // basic auth
	Password string
	Token    string // bearer token (OAuth), instead of username/password
}
