package escrow

import (
	"context"
	"net"
	"net/url"
	"time"
)

// Ticket system types.
const (
	TicketServiceNow = "servicenow"
	TicketBMC        = "bmc"
	TicketJira       = "jira"
	TicketWebhook    = "webhook"
)

// TicketSystemConfig is one configured ticket system. Its credentials are
// never here: CredentialSecret names the Escrow secret that holds them.
type TicketSystemConfig struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // servicenow | bmc | jira | webhook
	BaseURL string `json:"baseUrl"`
	// CredentialSecret is the id of the secret with the system's
	// credentials (fields username+password, or token).
	CredentialSecret string `json:"credentialSecret"`
	// Timeout bounds one call, retries included (default 5s).
	Timeout Duration `json:"timeout,omitempty"`
	// Options are adapter settings, such as Jira's custom field ids for
	// the planned window ("startField", "endField").
	Options   map[string]string `json:"options,omitempty"`
	Revision  int64             `json:"revision"`
	UpdatedAt time.Time         `json:"updatedAt"`
	UpdatedBy string            `json:"updatedBy"`
}

// Validate checks a ticket system's configuration.
func (c *TicketSystemConfig) Validate() error {
	if err := validName(c.Name, "ticket system name"); err != nil {
		return err
	}
	switch c.Type {
	case TicketServiceNow, TicketBMC, TicketJira, TicketWebhook:
	default:
		return Errorf(CodeInvalid, "ticket system type %q must be servicenow, bmc, jira or webhook", c.Type)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname()))) {
		return Errorf(CodeInvalid, "baseUrl must be an absolute https URL without credentials in it (http only on loopback)")
	}
	if c.CredentialSecret == "" {
		return Errorf(CodeInvalid, "credentialSecret must name the Escrow secret holding the system's credentials")
	}
	if c.Timeout.D() < 0 || c.Timeout.D() > time.Minute {
		return Errorf(CodeInvalid, "timeout must be at most 1m")
	}
	return nil
}

// TicketSystemStore holds ticket system configurations. Writes commit
// their audit record atomically, like Store's.
//
// Implementations: store/sqlite and store/dynamo; both pass store/storetest.
type TicketSystemStore interface {
	// PutTicketSystem creates c (prevRevision 0) or replaces it where the
	// stored revision equals prevRevision (c.Revision must be
	// prevRevision+1). Returns ErrConflict otherwise.
	PutTicketSystem(ctx context.Context, c *TicketSystemConfig, prevRevision int64, rec *AuditRecord) error

	// GetTicketSystem returns one configuration. Returns ErrNotFound.
	GetTicketSystem(ctx context.Context, name string) (*TicketSystemConfig, error)

	// ListTicketSystems returns every configuration, by name.
	ListTicketSystems(ctx context.Context) ([]*TicketSystemConfig, error)

	// SetDefaultTicketSystem names the default system ("" clears it).
	SetDefaultTicketSystem(ctx context.Context, name string, rec *AuditRecord) error

	// DefaultTicketSystem returns the default's name, or "" if none.
	DefaultTicketSystem(ctx context.Context) (string, error)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
