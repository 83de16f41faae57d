package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Digests serves the signed audit digests and the keys that verify them,
// in their own encodings (auditfeed.Reader). An interface, so the API does
// not link the signature code it never runs.
type Digests interface {
	DigestsJSON(ctx context.Context, from, to time.Time) ([]json.RawMessage, error)
	PublicKeysJSON(ctx context.Context) (json.RawMessage, error)
}

func (a *api) listDigests(w http.ResponseWriter, r *http.Request) error {
	if a.digests == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "audit digests are not configured on this server")
	}
	q := r.URL.Query()
	from, err := timeParam(q.Get("from"), "from")
	if err != nil {
		return err
	}
	to, err := timeParam(q.Get("to"), "to")
	if err != nil {
		return err
	}
	ds, err := a.digests.DigestsJSON(r.Context(), from, to)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"digests": ds})
	return nil
}

func (a *api) digestKeys(w http.ResponseWriter, r *http.Request) error {
	if a.digests == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "audit digests are not configured on this server")
	}
	k, err := a.digests.PublicKeysJSON(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}
