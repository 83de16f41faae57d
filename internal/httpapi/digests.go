package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

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
	ds, err := a.digests.Digests(r.Context(), from, to)
	if err != nil {
		return err
	}
	out := make([]json.RawMessage, 0, len(ds))
	for _, d := range ds {
		b, err := d.Marshal()
		if err != nil {
			return escrow.Wrap(escrow.CodeInternal, err, "encode digest")
		}
		out = append(out, b)
	}
	writeJSON(w, http.StatusOK, map[string]any{"digests": out})
	return nil
}

func (a *api) digestKeys(w http.ResponseWriter, r *http.Request) error {
	if a.digests == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "audit digests are not configured on this server")
	}
	k, err := a.digests.PublicKeys(r.Context())
	if err != nil {
		return err
	}
	b, err := k.Marshal()
	if err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "encode keys")
	}
	writeJSON(w, http.StatusOK, json.RawMessage(b))
	return nil
}
