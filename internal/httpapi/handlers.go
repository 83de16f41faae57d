package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/secrets"
)

//go:embed openapi.json
var openapiDoc []byte

func (a *api) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (a *api) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapiDoc)
	return nil
}

func (a *api) me(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, escrow.PrincipalFrom(r.Context()))
	return nil
}

// secretJSON is a secret as the API shows it: with its path.
type secretJSON struct {
	*escrow.Secret
	Path string `json:"path"`
}

func toJSON(s *escrow.Secret) secretJSON { return secretJSON{Secret: s, Path: s.Path()} }

type createRequest struct {
	Name        string             `json:"name"`
	Folder      string             `json:"folder"`
	Type        escrow.SecretType  `json:"type"`
	Description string             `json:"description"`
	Tags        map[string]string  `json:"tags"`
	ACL         []escrow.ACE       `json:"acl"`
	Value       escrow.SecretValue `json:"value"`
}

func (a *api) createSecret(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	sec, err := a.svc.Create(r.Context(), secrets.CreateInput(req))
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/secrets/"+sec.ID)
	writeJSON(w, http.StatusCreated, toJSON(sec))
	return nil
}

type listResponse struct {
	Secrets []secretJSON `json:"secrets"`
	Next    string       `json:"next"`
}

func (a *api) listSecrets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	in := secrets.ListInput{Folder: q.Get("folder"), Path: q.Get("path"), Cursor: q.Get("cursor")}
	var err error
	if in.Recursive, err = boolParam(q.Get("recursive"), "recursive"); err != nil {
		return err
	}
	if in.Deleted, err = boolParam(q.Get("deleted"), "deleted"); err != nil {
		return err
	}
	if in.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		return err
	}
	page, err := a.svc.List(r.Context(), in)
	if err != nil {
		return err
	}
	resp := listResponse{Secrets: make([]secretJSON, len(page.Secrets)), Next: page.Next}
	for i, s := range page.Secrets {
		resp.Secrets[i] = toJSON(s)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *api) getSecret(w http.ResponseWriter, r *http.Request) error {
	sec, err := a.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJSON(sec))
	return nil
}

type updateRequest struct {
	Revision    *int64             `json:"revision"`
	Name        *string            `json:"name"`
	Folder      *string            `json:"folder"`
	Description *string            `json:"description"`
	Tags        *map[string]string `json:"tags"`
	Value       escrow.SecretValue `json:"value"`
}

func (a *api) updateSecret(w http.ResponseWriter, r *http.Request) error {
	var req updateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	sec, err := a.svc.Update(r.Context(), r.PathValue("id"), secrets.UpdateInput(req))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJSON(sec))
	return nil
}

func (a *api) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) revealSecret(w http.ResponseWriter, r *http.Request) error {
	version, err := intParam(r.URL.Query().Get("version"), "version")
	if err != nil {
		return err
	}
	rv, err := a.svc.Reveal(r.Context(), r.PathValue("id"), version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rv)
	return nil
}

type revealRequest struct {
	Version int    `json:"version"`
	Comment string `json:"comment"`
}

// revealSecretWith is the reveal with a body: for a comment (which the
// policy may require), kept out of URLs and the logs that record them.
func (a *api) revealSecretWith(w http.ResponseWriter, r *http.Request) error {
	var req revealRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Version < 0 {
		return escrow.Errorf(escrow.CodeInvalid, "version must be a non-negative integer")
	}
	rv, err := a.svc.RevealWith(r.Context(), r.PathValue("id"), secrets.RevealOptions(req))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rv)
	return nil
}

func (a *api) getPolicy(w http.ResponseWriter, r *http.Request) error {
	v, err := a.svc.GetPolicy(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

type policyRequest struct {
	Path     string         `json:"path"` // folders only
	Policy   *escrow.Policy `json:"policy"`
	Revision *int64         `json:"revision"`
}

func (a *api) setSecretPolicy(w http.ResponseWriter, r *http.Request) error {
	var req policyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Path != "" {
		return escrow.Errorf(escrow.CodeInvalid, "path is for folder policies (PUT /v1/folders/policy)")
	}
	sec, err := a.svc.SetSecretPolicy(r.Context(), r.PathValue("id"), req.Policy, req.Revision)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJSON(sec))
	return nil
}

func (a *api) setFolderPolicy(w http.ResponseWriter, r *http.Request) error {
	var req policyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Path == "" {
		return escrow.Errorf(escrow.CodeInvalid, "path is required")
	}
	f, err := a.svc.SetFolderPolicy(r.Context(), req.Path, req.Policy, req.Revision)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (a *api) listVersions(w http.ResponseWriter, r *http.Request) error {
	vs, err := a.svc.Versions(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	type versionJSON struct {
		Version   int       `json:"version"`
		CreatedAt time.Time `json:"createdAt"`
		CreatedBy string    `json:"createdBy"`
	}
	out := make([]versionJSON, len(vs))
	for i, v := range vs {
		out[i] = versionJSON{v.Version, v.CreatedAt, v.CreatedBy}
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": out})
	return nil
}

type aclRequest struct {
	ACL      []escrow.ACE `json:"acl"`
	Revision *int64       `json:"revision"`
}

func (a *api) setACL(w http.ResponseWriter, r *http.Request) error {
	var req aclRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.ACL == nil {
		return escrow.Errorf(escrow.CodeInvalid, "acl is required (an empty list removes every entry)")
	}
	sec, err := a.svc.SetACL(r.Context(), r.PathValue("id"), req.ACL, req.Revision)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJSON(sec))
	return nil
}

func (a *api) getFolder(w http.ResponseWriter, r *http.Request) error {
	f, err := a.svc.GetFolder(r.Context(), r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

type folderRequest struct {
	Path     string       `json:"path"`
	ACL      []escrow.ACE `json:"acl"`
	Revision *int64       `json:"revision"`
}

func (a *api) setFolderACL(w http.ResponseWriter, r *http.Request) error {
	var req folderRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Path == "" || req.ACL == nil {
		return escrow.Errorf(escrow.CodeInvalid, "path and acl are required")
	}
	f, err := a.svc.SetFolderACL(r.Context(), req.Path, req.ACL, req.Revision)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (a *api) queryAudit(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Query()
	q := escrow.AuditQuery{Actor: p.Get("actor"), SecretID: p.Get("secret"), Action: p.Get("action"), Ticket: p.Get("ticket"), Cursor: p.Get("cursor")}
	var err error
	if q.From, err = timeParam(p.Get("from"), "from"); err != nil {
		return err
	}
	if q.To, err = timeParam(p.Get("to"), "to"); err != nil {
		return err
	}
	if q.Limit, err = intParam(p.Get("limit"), "limit"); err != nil {
		return err
	}
	page, err := a.svc.QueryAudit(r.Context(), q)
	if err != nil {
		return err
	}
	if page.Records == nil {
		page.Records = []*escrow.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": page.Records, "next": page.Next})
	return nil
}

func boolParam(s, name string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, escrow.Errorf(escrow.CodeInvalid, "%s must be true or false", name)
	}
	return b, nil
}

func intParam(s, name string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, escrow.Errorf(escrow.CodeInvalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

func timeParam(s, name string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, escrow.Errorf(escrow.CodeInvalid, "%s must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z", name)
	}
	return t, nil
}
