package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// QuantumLock routes. The client only carries what internal/qlock made:
// public keys, sealed private keys and locked blobs. A QuantumLock
// password or a locked plaintext never goes into a request.

// QLock actions of POST /v1/secrets/{id}/qlock.
const (
	QLockLock   = "lock"   // first lock of a plain secret
	QLockShare  = "share"  // the same members plus Subject
	QLockRevoke = "revoke" // the same members less Subject
	QLockRelock = "relock" // the same members, new locked content
)

// QLockRequest is the body of POST /v1/secrets/{id}/qlock: a value locked
// in the client for the secret's next version,
// max(CurrentVersion, PendingVersion) + 1.
type QLockRequest struct {
	Action string `json:"action"`
	// Subject is the member shared with or revoked.
	Subject string `json:"subject,omitempty"`
	// Blob is the locked value (internal/qlock's format).
	Blob []byte `json:"blob"`
	// Fields are the field names inside the blob (lock only).
	Fields []string `json:"fields,omitempty"`
	// Value holds the fields left readable (lock only).
	Value map[string]string `json:"value,omitempty"`
	// Revision, if set, makes the write conditional.
	Revision *int64 `json:"revision,omitempty"`
}

// PutQLockKey stores the caller's QuantumLock key: a new one, or the same
// public key with its private key sealed under a new password. A different
// key while one exists answers a conflict *APIError.
func (c *Client) PutQLockKey(ctx context.Context, publicKey, sealed []byte) (*escrow.QLockKey, error) {
	in := struct {
		PublicKey []byte `json:"publicKey"`
		Sealed    []byte `json:"sealed"`
	}{publicKey, sealed}
	var out escrow.QLockKey
	if err := c.do(ctx, http.MethodPut, "/v1/qlock/key", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QLockKey returns the caller's own key with its sealed private key. It
// answers a not_found *APIError if the caller has none.
func (c *Client) QLockKey(ctx context.Context) (*escrow.QLockKey, error) {
	var out escrow.QLockKey
	if err := c.do(ctx, http.MethodGet, "/v1/qlock/key", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QLockPublicKeys returns the public keys (never the sealed private keys)
// of the users that have one; users without a key are left out.
func (c *Client) QLockPublicKeys(ctx context.Context, users []string) ([]*escrow.QLockKey, error) {
	var out struct {
		Keys []*escrow.QLockKey `json:"keys"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/qlock/keys", url.Values{"user": users}, nil, &out); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// LockSecret stores a locked value as the secret's next version. The
// server checks the blob's members against the action and its binding to
// the secret and version; it cannot open it.
func (c *Client) LockSecret(ctx context.Context, id string, req *QLockRequest) (*Secret, error) {
	var out Secret
	if err := c.do(ctx, http.MethodPost, secretRoute(id, "qlock"), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
