package httpapi

import (
	"net/http"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/secrets"
)

type qlockKeyRequest struct {
	PublicKey []byte `json:"publicKey"`
	Sealed    []byte `json:"sealed"`
}

func (a *api) putQLockKey(w http.ResponseWriter, r *http.Request) error {
	var req qlockKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	k, err := a.svc.PutQLockKey(r.Context(), req.PublicKey, req.Sealed)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (a *api) getQLockKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.svc.QLockKey(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (a *api) listQLockKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := a.svc.QLockPublicKeys(r.Context(), r.URL.Query()["user"])
	if err != nil {
		return err
	}
	if ks == nil {
		ks = []*escrow.QLockKey{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": ks})
	return nil
}

func (a *api) lockSecret(w http.ResponseWriter, r *http.Request) error {
	var req secrets.QLockInput
	if err := decode(r, &req); err != nil {
		return err
	}
	sec, err := a.svc.LockSecret(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sec)
	return nil
}
