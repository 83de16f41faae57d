package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
)

// AuditDigests returns the signed digests whose periods overlap [from, to)
// (admin or auditor). Each is parsed strictly; a malformed one is an error.
func (c *Client) AuditDigests(ctx context.Context, from, to time.Time) ([]*auditlog.SignedDigest, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	var out struct {
		Digests []json.RawMessage `json:"digests"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/audit/digests", q, nil, &out); err != nil {
		return nil, err
	}
	ds := make([]*auditlog.SignedDigest, 0, len(out.Digests))
	for i, raw := range out.Digests {
		d, err := auditlog.ParseSignedDigest(canonicalLine(raw))
		if err != nil {
			return nil, fmt.Errorf("digest %d of the answer: %w", i, err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// AuditKeys returns the public keys the server says verify its digests.
// Pin them (and compare their key id out of band) for a verification that
// does not trust the server.
func (c *Client) AuditKeys(ctx context.Context) (auditlog.PublicKeys, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/v1/audit/keys", nil, nil, &raw); err != nil {
		return auditlog.PublicKeys{}, err
	}
	return auditlog.ParsePublicKeys(canonicalLine(raw))
}

// canonicalLine restores the one-line form the auditlog formats are
// written in (a JSON answer drops the final newline).
func canonicalLine(raw []byte) []byte {
	return append(bytes.TrimSpace(raw), '\n')
}
