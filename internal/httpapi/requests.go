package httpapi

import (
	"net/http"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/escrow"
)

type requestRequest struct {
	Access   escrow.AccessKind `json:"access"`
	Start    *time.Time        `json:"start"`
	End      *time.Time        `json:"end"`
	Duration *escrow.Duration  `json:"duration"`
	Comment  string            `json:"comment"`
	Ticket   string            `json:"ticket"`
}

func (a *api) createRequest(w http.ResponseWriter, r *http.Request) error {
	var req requestRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	in := access.RequestInput{SecretID: r.PathValue("id"), Access: req.Access, Comment: req.Comment, Ticket: req.Ticket}
	if in.Access == "" {
		in.Access = escrow.AccessView
	}
	if req.Start != nil {
		in.Start = *req.Start
	}
	if req.End != nil {
		in.End = *req.End
	}
	if req.Duration != nil {
		in.Duration = req.Duration.D()
	}
	out, err := a.access.Request(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/requests/"+out.ID)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (a *api) listRequests(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	in := access.ListInput{SecretID: q.Get("secret"), Cursor: q.Get("cursor")}
	var err error
	if in.PendingForMe, err = boolParam(q.Get("pendingForMe"), "pendingForMe"); err != nil {
		return err
	}
	if in.All, err = boolParam(q.Get("all"), "all"); err != nil {
		return err
	}
	if in.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		return err
	}
	page, err := a.access.List(r.Context(), in)
	if err != nil {
		return err
	}
	if page.Requests == nil {
		page.Requests = []*escrow.Request{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": page.Requests, "next": page.Next})
	return nil
}

func (a *api) getRequest(w http.ResponseWriter, r *http.Request) error {
	out, err := a.access.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type decisionRequest struct {
	Decision string `json:"decision"` // approve | deny
	Comment  string `json:"comment"`
}

func (a *api) decideRequest(w http.ResponseWriter, r *http.Request) error {
	var req decisionRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Decision != "approve" && req.Decision != "deny" {
		return escrow.Errorf(escrow.CodeInvalid, `decision must be "approve" or "deny"`)
	}
	out, g, err := a.access.Decide(r.Context(), r.PathValue("id"), req.Decision == "approve", req.Comment)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"request": out, "grant": g})
	return nil
}

type commentRequest struct {
	Comment string `json:"comment"`
}

// optionalBody decodes a JSON body if there is one.
func optionalBody(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(r, v)
}

func (a *api) cancelRequest(w http.ResponseWriter, r *http.Request) error {
	var req commentRequest
	if err := optionalBody(r, &req); err != nil {
		return err
	}
	out, err := a.access.Cancel(r.Context(), r.PathValue("id"), req.Comment)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) listGrants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	in := access.GrantsInput{SecretID: q.Get("secret"), Cursor: q.Get("cursor")}
	var err error
	if in.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		return err
	}
	page, err := a.access.Grants(r.Context(), in)
	if err != nil {
		return err
	}
	if page.Grants == nil {
		page.Grants = []*escrow.Grant{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": page.Grants, "next": page.Next})
	return nil
}

func (a *api) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	var req commentRequest
	if err := optionalBody(r, &req); err != nil {
		return err
	}
	out, err := a.access.Revoke(r.Context(), r.PathValue("id"), req.Comment)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
