package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// CheckedOut is the answer of a checkout: the lock and the value it hands
// out. After check-in, for a secret with a rotation, the value no longer
// works on its target.
type CheckedOut struct {
	Checkout *escrow.Checkout  `json:"checkout"`
	Path     string            `json:"path"`
	Type     string            `json:"type"`
	Version  int               `json:"version"`
	Value    map[string]string `json:"value"`
}

// Checkout checks a secret out: nobody else may check it out or reveal it
// until the checkout ends. The policy may require a comment and a ticket
// number. A secret held by someone else answers a conflict *APIError that
// names the holder and the expiry (to callers who may view the secret).
func (c *Client) Checkout(ctx context.Context, id, comment, ticket string) (*CheckedOut, error) {
	in := struct {
		Comment string `json:"comment,omitempty"`
		Ticket  string `json:"ticket,omitempty"`
	}{comment, ticket}
	var out CheckedOut
	if err := c.do(ctx, http.MethodPost, secretRoute(id, "checkout"), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CheckoutStatus returns a secret's checkout slot (status released if it
// was never checked out). Callers with list but not view permission see
// the status without the holder.
func (c *Client) CheckoutStatus(ctx context.Context, id string) (*escrow.Checkout, error) {
	return c.slot(ctx, http.MethodGet, id, "checkout", nil)
}

// Checkin gives the caller's checkout back. The answer's status is
// rotating if the password is now rotated, else released.
func (c *Client) Checkin(ctx context.Context, id, comment string) (*escrow.Checkout, error) {
	return c.slot(ctx, http.MethodPost, id, "checkin", commentBody(comment))
}

// ForceCheckin ends someone else's checkout (the secret's owner or an
// admin), with the same rotation as a check-in.
func (c *Client) ForceCheckin(ctx context.Context, id, comment string) (*escrow.Checkout, error) {
	return c.slot(ctx, http.MethodPost, id, "force-checkin", commentBody(comment))
}

// Extend adds one interval to the caller's checkout. It answers a conflict
// *APIError once the policy's extensions are used up.
func (c *Client) Extend(ctx context.Context, id string) (*escrow.Checkout, error) {
	return c.slot(ctx, http.MethodPost, id, "extend", nil)
}

// RotateNow starts a rotation of a secret's password (owner or admin); the
// secret is locked (status rotating) while it runs.
func (c *Client) RotateNow(ctx context.Context, id string) (*escrow.Checkout, error) {
	return c.slot(ctx, http.MethodPost, id, "rotate", nil)
}

// slot calls a route under a secret that answers its checkout slot.
func (c *Client) slot(ctx context.Context, method, id, verb string, in any) (*escrow.Checkout, error) {
	var out escrow.Checkout
	if err := c.do(ctx, method, secretRoute(id, verb), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// commentBody is the optional {"comment"} body; nil sends none.
func commentBody(comment string) any {
	if comment == "" {
		return nil
	}
	return map[string]string{"comment": comment}
}

// SetRotation sets how a secret's password is rotated on its target
// (owner; view on the privileged secret it names). A nil cfg clears it.
func (c *Client) SetRotation(ctx context.Context, id string, cfg *escrow.RotationConfig) (*Secret, error) {
	in := struct {
		Rotation *escrow.RotationConfig `json:"rotation"`
	}{cfg}
	var out Secret
	if err := c.do(ctx, http.MethodPut, secretRoute(id, "rotation"), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// secretRoute is the URL path of a route under one secret.
func secretRoute(id, verb string) string {
	return "/v1/secrets/" + url.PathEscape(id) + "/" + verb
}
