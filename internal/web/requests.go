package web

import (
	"net/http"
	"net/url"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
)

type requestsData struct {
	Requests []*escrow.Request
	Next     string
	Inbox    bool // the approvals inbox, not "my requests"
	// Items are the inbox's requests with what deciding needs.
	Items []inboxItem
}

// inboxItem is one pending decision in the approvals inbox.
type inboxItem struct {
	R          *escrow.Request
	Step       stepView
	NeedStepUp bool
}

func (c *console) requestsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	page, err := c.cfg.Access.List(r.Context(), access.ListInput{Cursor: r.URL.Query().Get("cursor"), Limit: 50})
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "requests", s, &view{Title: "My requests", Nav: "requests",
		Data: &requestsData{Requests: page.Requests, Next: page.Next}})
	return nil
}

func (c *console) approvalsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	page, err := c.cfg.Access.List(r.Context(), access.ListInput{PendingForMe: true, Cursor: r.URL.Query().Get("cursor"), Limit: 50})
	if err != nil {
		return err
	}
	d := &requestsData{Requests: page.Requests, Next: page.Next, Inbox: true}
	now := c.clock.Now()
	for _, req := range page.Requests {
		it := inboxItem{R: req, NeedStepUp: now.Sub(s.AuthTime) > req.Policy.Approval.StepUpAge()}
		if a := req.Policy.Approval; a != nil && req.Step < len(a.Steps) {
			st := a.Steps[req.Step]
			it.Step = stepView{N: req.Step + 1, Of: len(a.Steps), Name: st.Name, Quorum: st.Quorum,
				Approvals: req.Approvals(req.Step), Approvers: prettyPrincipals(st.Approvers), Current: true}
		}
		d.Items = append(d.Items, it)
	}
	c.render(w, r, http.StatusOK, "requests", s, &view{Title: "Approvals", Nav: "approvals", Data: d})
	return nil
}

type requestData struct {
	R          *escrow.Request
	Mine       bool
	CanDecide  bool
	CanCancel  bool
	StepUp     time.Duration // how recent a sign-in deciding needs
	SignedInAt time.Time
	NeedStepUp bool // the session is older than StepUp: sign in again first
	Steps      []stepView
	Notice     string
	Comment    string // a refused decision's comment, kept
}

type stepView struct {
	N, Of     int
	Name      string
	Quorum    int
	Approvals int
	Approvers []string
	Current   bool
}

func (c *console) loadRequest(r *http.Request, s *session, id string) (*requestData, error) {
	req, err := c.cfg.Access.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	me := &s.Principal
	d := &requestData{R: req, Mine: req.Requester.Subject == me.Subject, SignedInAt: s.AuthTime}
	d.CanCancel = d.Mine && (req.Status == escrow.StatusPending || req.Status == escrow.StatusApproved)
	d.CanDecide = req.Eligible(me, now)
	d.StepUp = req.Policy.Approval.StepUpAge()
	d.NeedStepUp = now.Sub(s.AuthTime) > d.StepUp
	d.Notice = req.Policy.Notice
	if a := req.Policy.Approval; a != nil {
		for i, st := range a.Steps {
			d.Steps = append(d.Steps, stepView{N: i + 1, Of: len(a.Steps), Name: st.Name, Quorum: st.Quorum,
				Approvals: req.Approvals(i), Approvers: prettyPrincipals(st.Approvers), Current: i == req.Step && req.Status == escrow.StatusPending})
		}
	}
	return d, nil
}

// requestPage is where the approval mail's link lands: GET /requests/{id}.
func (c *console) requestPage(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := c.loadRequest(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "request", s, &view{Title: "Request for " + d.R.SecretPath, Nav: navOf(d), Notice: doneMessage(r), Data: d})
	return nil
}

func navOf(d *requestData) string {
	if d.Mine {
		return "requests"
	}
	return "approvals"
}

// decide: POST /requests/{id}/decision (decision=approve|deny, comment).
// A session older than the rule's step-up age is sent to sign in again
// and back to the request, undecided.
func (c *console) decide(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	d, err := c.loadRequest(r, s, id)
	if err != nil {
		return err
	}
	back := "/requests/" + url.PathEscape(id)
	if d.NeedStepUp {
		http.Redirect(w, r, "/login?"+url.Values{"next": {back}, "stepup": {"1"}}.Encode(), http.StatusSeeOther)
		return nil
	}
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		return escrow.Errorf(escrow.CodeInvalid, "choose approve or deny")
	}
	comment := r.PostForm.Get("comment")
	if _, _, err := c.cfg.Access.Decide(r.Context(), id, approve, comment); err != nil {
		d2, lerr := c.loadRequest(r, s, id)
		if lerr != nil {
			return err
		}
		d2.Comment = comment
		c.render(w, r, httpapi.StatusOf(escrow.ErrorCode(err)), "request", s, &view{Title: "Request for " + d2.R.SecretPath, Nav: navOf(d2),
			Error: escrow.ErrorMessage(err), Data: d2, Back: back})
		return nil
	}
	done := "denied"
	if approve {
		done = "approved"
	}
	http.Redirect(w, r, back+"?done="+done, http.StatusSeeOther)
	return nil
}

func (c *console) cancel(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if _, err := c.cfg.Access.Cancel(r.Context(), id, r.PostForm.Get("comment")); err != nil {
		return err
	}
	http.Redirect(w, r, "/requests/"+url.PathEscape(id)+"?done=cancelled", http.StatusSeeOther)
	return nil
}
