package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// NewRequest asks for access. Start zero means now; give End or Duration.
type NewRequest struct {
	Access   escrow.AccessKind `json:"access,omitempty"`
	Start    *time.Time        `json:"start,omitempty"`
	End      *time.Time        `json:"end,omitempty"`
	Duration string            `json:"duration,omitempty"`
	Comment  string            `json:"comment,omitempty"`
	Ticket   string            `json:"ticket,omitempty"`
}

// RequestAccess files an access request for a secret.
func (c *Client) RequestAccess(ctx context.Context, secretID string, req *NewRequest) (*escrow.Request, error) {
	var out escrow.Request
	if err := c.do(ctx, http.MethodPost, "/v1/secrets/"+url.PathEscape(secretID)+"/requests", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RequestsOptions select requests.
type RequestsOptions struct {
	PendingForMe bool
	All          bool
	SecretID     string
	Cursor       string
	Limit        int
}

// RequestPage is one page of requests.
type RequestPage struct {
	Requests []*escrow.Request `json:"requests"`
	Next     string            `json:"next"`
}

// ListRequests lists requests: mine, pending for me, or all.
func (c *Client) ListRequests(ctx context.Context, o RequestsOptions) (*RequestPage, error) {
	q := url.Values{}
	if o.PendingForMe {
		q.Set("pendingForMe", "true")
	}
	if o.All {
		q.Set("all", "true")
	}
	if o.SecretID != "" {
		q.Set("secret", o.SecretID)
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out RequestPage
	if err := c.do(ctx, http.MethodGet, "/v1/requests", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRequest returns one request with its decisions.
func (c *Client) GetRequest(ctx context.Context, id string) (*escrow.Request, error) {
	var out escrow.Request
	if err := c.do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Decided is the answer to a decision: the request and, after the final
// approval, its grant.
type Decided struct {
	Request *escrow.Request `json:"request"`
	Grant   *escrow.Grant   `json:"grant"`
}

// Decide approves or denies a request.
func (c *Client) Decide(ctx context.Context, id string, approve bool, comment string) (*Decided, error) {
	d := "deny"
	if approve {
		d = "approve"
	}
	var out Decided
	if err := c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/decision", nil,
		map[string]string{"decision": d, "comment": comment}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelRequest withdraws a request.
func (c *Client) CancelRequest(ctx context.Context, id, comment string) (*escrow.Request, error) {
	var out escrow.Request
	if err := c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/cancel", nil,
		map[string]string{"comment": comment}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GrantPage is one page of grants.
type GrantPage struct {
	Grants []*escrow.Grant `json:"grants"`
	Next   string          `json:"next"`
}

// ListGrants lists my grants, or (admin, auditor) a secret's.
func (c *Client) ListGrants(ctx context.Context, secretID string) (*GrantPage, error) {
	q := url.Values{}
	if secretID != "" {
		q.Set("secret", secretID)
	}
	var out GrantPage
	if err := c.do(ctx, http.MethodGet, "/v1/grants", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeGrant ends a grant now.
func (c *Client) RevokeGrant(ctx context.Context, id, comment string) (*escrow.Grant, error) {
	var out escrow.Grant
	if err := c.do(ctx, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/revoke", nil,
		map[string]string{"comment": comment}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TicketSystems lists the configured ticket systems and the default.
func (c *Client) TicketSystems(ctx context.Context) ([]*escrow.TicketSystemConfig, string, error) {
	var out struct {
		TicketSystems []*escrow.TicketSystemConfig `json:"ticketSystems"`
		Default       string                       `json:"default"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/ticket-systems", nil, nil, &out); err != nil {
		return nil, "", err
	}
	return out.TicketSystems, out.Default, nil
}

// PutTicketSystem creates or replaces a ticket system.
func (c *Client) PutTicketSystem(ctx context.Context, cfg *escrow.TicketSystemConfig) (*escrow.TicketSystemConfig, error) {
	var out escrow.TicketSystemConfig
	if err := c.do(ctx, http.MethodPut, "/v1/ticket-systems/"+url.PathEscape(cfg.Name), nil, cfg, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetDefaultTicketSystem makes name the default.
func (c *Client) SetDefaultTicketSystem(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/ticket-systems/"+url.PathEscape(name)+"/default", nil, map[string]string{}, nil)
}

// TestTicketSystem looks a ticket up for real.
func (c *Client) TestTicketSystem(ctx context.Context, name, number string) (*escrow.Ticket, error) {
	var out escrow.Ticket
	if err := c.do(ctx, http.MethodPost, "/v1/ticket-systems/"+url.PathEscape(name)+"/test", nil, map[string]string{"number": number}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
