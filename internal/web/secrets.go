package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/secrets"
)

// listLimit bounds the secrets one browse page reads.
const listLimit = 1000

type crumb struct{ Name, Path string }

type secretsData struct {
	Folder     string
	Crumbs     []crumb
	Subfolders []crumb
	Query      string
	Secrets    []*escrow.Secret
	More       bool // the listing was cut at listLimit
	Below      bool // Secrets are those below Folder, which holds none itself
}

// secretsPage browses a folder (and searches below it): GET
// /secrets?folder=/prod&q=db.
func (c *console) secretsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	folder, err := escrow.CleanFolder(r.URL.Query().Get("folder"))
	if err != nil {
		return err
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	page, err := c.cfg.Secrets.List(r.Context(), secrets.ListInput{Folder: folder, Recursive: true, Limit: listLimit})
	if err != nil {
		return err
	}
	d := &secretsData{Folder: folder, Query: q, More: page.Next != ""}
	d.Crumbs = crumbs(folder)
	seen := map[string]bool{}
	needle := strings.ToLower(q)
	for _, sec := range page.Secrets {
		if q == "" {
			// Browsing: this folder's secrets, and its subfolders.
			if sec.Folder == folder {
				d.Secrets = append(d.Secrets, sec)
			} else if sub := childFolder(folder, sec.Folder); sub != "" && !seen[sub] {
				seen[sub] = true
				d.Subfolders = append(d.Subfolders, crumb{Name: strings.TrimPrefix(sub, strings.TrimSuffix(folder, "/")+"/"), Path: sub})
			}
			continue
		}
		if matches(sec, needle) {
			d.Secrets = append(d.Secrets, sec)
		}
	}
	// A folder with nothing of its own lists what lies below it, so the
	// first page is never just a list of folder names.
	if q == "" && len(d.Secrets) == 0 && len(page.Secrets) > 0 {
		d.Secrets, d.Below = page.Secrets, true
	}
	c.render(w, r, http.StatusOK, "secrets", s, &view{Title: "Secrets", Nav: "secrets", Data: d})
	return nil
}

func matches(sec *escrow.Secret, needle string) bool {
	if strings.Contains(strings.ToLower(sec.Path()), needle) || strings.Contains(strings.ToLower(sec.Description), needle) {
		return true
	}
	for k, v := range sec.Tags {
		if strings.Contains(strings.ToLower(k+"="+v), needle) {
			return true
		}
	}
	return false
}

// childFolder returns the child of parent on the way to folder, or "".
func childFolder(parent, folder string) string {
	prefix := strings.TrimSuffix(parent, "/") + "/"
	rest, ok := strings.CutPrefix(folder, prefix)
	if !ok || rest == "" {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return prefix + name
}

func crumbs(folder string) []crumb {
	out := []crumb{{Name: "All secrets", Path: "/"}}
	if folder == "/" {
		return out
	}
	p := ""
	for _, part := range strings.Split(strings.Trim(folder, "/"), "/") {
		p += "/" + part
		out = append(out, crumb{Name: part, Path: p})
	}
	return out
}

// option is one choice of a select.
type option struct{ Value, Label string }

// field is one field of a revealed value.
type field struct{ Name, Value string }

// secretForm is what the user typed, kept when a form is refused.
type secretForm struct {
	Comment, Ticket, Access, Duration, Start string
	Later                                    bool
}

type secretData struct {
	S          *escrow.Secret
	Perm       escrow.Permission
	Policy     *escrow.Policy
	PolicyFrom string
	Words      []string
	Tags       []field

	Grants   []*escrow.Grant // the user's, not ended
	Active   *escrow.Grant   // one that lets the user view now
	Checkout *escrow.Checkout
	Mine     bool // the user holds the checkout

	CanReveal    bool
	RevealNeeds  string // why there is no reveal button
	CanRequest   bool
	RequestKinds []escrow.AccessKind
	Durations    []option
	AllowFuture  bool
	CanCheckout  bool
	CanExtend    bool

	Comment       escrow.CommentRule
	CommentNeeded bool // the comment rule applies to reveals
	NeedTicket    bool

	Revealed *revealed
	Form     secretForm
}

// revealed is a value on the page: only in the answer to a reveal or a
// checkout.
type revealed struct {
	Version int
	Fields  []field
	Expires time.Time // a checkout's end
}

func (c *console) loadSecret(r *http.Request, id string) (*secretData, error) {
	ctx := r.Context()
	sec, err := c.cfg.Secrets.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &secretData{S: sec}
	if d.Perm, err = c.cfg.Secrets.PermissionOn(ctx, sec); err != nil {
		return nil, err
	}
	pv, err := c.cfg.Secrets.GetPolicy(ctx, id)
	if err != nil {
		return nil, err
	}
	d.Policy, d.PolicyFrom = pv.Policy, pv.From
	d.Words = policyWords(pv.Policy, pv.From)
	for k, v := range sec.Tags {
		d.Tags = append(d.Tags, field{k, v})
	}
	slices.SortFunc(d.Tags, func(a, b field) int { return strings.Compare(a.Name, b.Name) })
	if d.Grants, err = c.cfg.Access.GrantsOn(ctx, id); err != nil {
		return nil, err
	}
	now := c.clock.Now()
	me := escrow.PrincipalFrom(ctx).Subject
	for _, g := range d.Grants {
		if g.Authorizes(me, escrow.AccessView, now) {
			d.Active = g
		}
	}
	pol := d.Policy
	if pol == nil {
		pol = &escrow.Policy{}
	}
	if c.cfg.Checkout != nil && pol.Checkout != nil {
		if d.Checkout, err = c.cfg.Checkout.Status(ctx, id); err != nil {
			return nil, err
		}
		d.Mine = d.Checkout.Open() && d.Checkout.Holds(me, now)
	}
	d.Comment = pol.Comment
	d.CommentNeeded = pol.Comment.OnReveal && pol.Comment.Mode != escrow.CommentOff && pol.Comment.Mode != ""
	d.NeedTicket = pol.Ticket != nil
	c.decideActions(d, pol, me, now)
	return d, nil
}

// decideActions works out which actions to offer. It mirrors the checks
// of the use cases so the page does not offer what would be refused; the
// use cases still decide.
func (c *console) decideActions(d *secretData, pol *escrow.Policy, me string, now time.Time) {
	canView := d.Perm.Includes(escrow.PermView)
	needApproval := pol.Approval.Requires(escrow.AccessView)
	checkoutRequired := pol.Checkout != nil && pol.Checkout.Required
	switch {
	case d.S.QLock != nil:
		d.RevealNeeds = "locked"
	case !canView:
		d.RevealNeeds = "You may see this secret exists, but the access list does not let you view it."
	case checkoutRequired && !d.Mine:
		d.RevealNeeds = "Check it out to reveal it."
	case needApproval && d.Active == nil:
		d.RevealNeeds = "Viewing it needs an approved request; request access below."
	default:
		d.CanReveal = true
	}
	if a := pol.Approval; a != nil && canView && d.S.QLock == nil {
		for _, k := range a.For {
			if k == escrow.AccessEdit && !d.Perm.Includes(escrow.PermEdit) {
				continue
			}
			d.RequestKinds = append(d.RequestKinds, k)
		}
		d.CanRequest = len(d.RequestKinds) > 0
		d.AllowFuture = a.AllowFutureStart
		most := a.MaxDuration.D()
		for _, dur := range []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 24 * time.Hour} {
			if dur < most {
				d.Durations = append(d.Durations, option{Value: dur.String(), Label: humanDuration(dur)})
			}
		}
		d.Durations = append(d.Durations, option{Value: most.String(), Label: humanDuration(most) + " (the most allowed)"})
	}
	if c.cfg.Checkout != nil && pol.Checkout != nil && canView && d.S.QLock == nil {
		busy := d.Checkout.Open()
		needGrant := pol.Approval.Requires(escrow.AccessCheckout)
		hasGrant := false
		for _, g := range d.Grants {
			hasGrant = hasGrant || g.Authorizes(me, escrow.AccessCheckout, now)
		}
		d.CanCheckout = !busy && (!needGrant || hasGrant)
		d.CanExtend = d.Mine && d.Checkout.Status == escrow.CheckoutActive &&
			(d.Checkout.MaxExtensions == 0 || d.Checkout.Extensions < d.Checkout.MaxExtensions)
	}
}

func (c *console) secretPage(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := c.loadSecret(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "secret", s, &view{Title: d.S.Path(), Nav: "secrets", Notice: doneMessage(r), Data: d})
	return nil
}

// doneMessage turns a redirect's ?done= into a fixed message (never
// arbitrary text from the URL).
func doneMessage(r *http.Request) string {
	switch r.URL.Query().Get("done") {
	case "requested":
		return "Your request was sent to its approvers."
	case "checkedin":
		return "Checked in. The password is being changed, so the one you saw stops working."
	case "extended":
		return "Your checkout was extended."
	case "approved":
		return "You approved this request."
	case "denied":
		return "You denied this request."
	case "cancelled":
		return "The request was cancelled."
	}
	return ""
}

// secretAgain renders the secret page after a form, with an error and what
// the user typed, or with a revealed value.
func (c *console) secretAgain(w http.ResponseWriter, r *http.Request, s *session, id string, form secretForm, val *revealed, failure error) error {
	d, err := c.loadSecret(r, id)
	if err != nil {
		return err
	}
	d.Form, d.Revealed = form, val
	v := &view{Title: d.S.Path(), Nav: "secrets", Data: d, Back: "/secrets/" + url.PathEscape(id)}
	status := http.StatusOK
	if failure != nil {
		status = httpapi.StatusOf(escrow.ErrorCode(failure))
		v.Error = escrow.ErrorMessage(failure)
	}
	c.render(w, r, status, "secret", s, v)
	return nil
}

func formOf(r *http.Request) secretForm {
	f := r.PostForm
	return secretForm{Comment: f.Get("comment"), Ticket: f.Get("ticket"), Access: f.Get("access"),
		Duration: f.Get("duration"), Start: f.Get("start"), Later: f.Get("when") == "later"}
}

// reveal: POST /secrets/{id}/reveal (comment). The value is on this one
// answer's page and nowhere else.
func (c *console) reveal(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	form := formOf(r)
	comment := strings.TrimSpace(form.Comment)
	if t := strings.TrimSpace(form.Ticket); t != "" && !strings.Contains(comment, t) {
		comment = strings.TrimSpace(t + " " + comment)
	}
	rv, err := c.cfg.Secrets.RevealWith(r.Context(), id, secrets.RevealOptions{Comment: comment})
	if err != nil {
		return c.secretAgain(w, r, s, id, form, nil, err)
	}
	return c.secretAgain(w, r, s, id, secretForm{}, &revealed{Version: rv.Version, Fields: fields(rv.Value)}, nil)
}

func fields(v escrow.SecretValue) []field {
	out := make([]field, 0, len(v))
	for _, k := range v.FieldNames() {
		out = append(out, field{k, v[k]})
	}
	return out
}

// requestAccess: POST /secrets/{id}/request (access, when=now|later,
// start, tz, duration, comment, ticket).
func (c *console) requestAccess(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	form := formOf(r)
	in := access.RequestInput{SecretID: id, Access: escrow.AccessKind(form.Access), Comment: form.Comment, Ticket: strings.TrimSpace(form.Ticket)}
	if in.Access == "" {
		in.Access = escrow.AccessView
	}
	var err error
	if in.Duration, err = time.ParseDuration(form.Duration); err != nil || in.Duration <= 0 {
		return c.secretAgain(w, r, s, id, form, nil, escrow.Errorf(escrow.CodeInvalid, "choose how long you need access (for example 1h)"))
	}
	if form.Later {
		if in.Start, err = localTime(form.Start, r.PostForm.Get("tz")); err != nil {
			return c.secretAgain(w, r, s, id, form, nil, err)
		}
	}
	req, err := c.cfg.Access.Request(r.Context(), in)
	if err != nil {
		return c.secretAgain(w, r, s, id, form, nil, err)
	}
	http.Redirect(w, r, "/requests/"+url.PathEscape(req.ID)+"?done=requested", http.StatusSeeOther)
	return nil
}

// localTime reads a datetime-local value in the browser's zone, given as
// minutes west of UTC (JavaScript's getTimezoneOffset; UTC without it).
func localTime(v, tz string) (time.Time, error) {
	t, err := time.Parse("2006-01-02T15:04", v)
	if err != nil {
		return time.Time{}, escrow.Errorf(escrow.CodeInvalid, "give the start as a date and time")
	}
	if tz != "" {
		off, err := strconv.Atoi(tz)
		if err != nil || off < -14*60 || off > 14*60 {
			return time.Time{}, escrow.Errorf(escrow.CodeInvalid, "the browser's time zone is not understood")
		}
		t = t.Add(time.Duration(off) * time.Minute)
	}
	return t.UTC(), nil
}

// checkoutSecret: POST /secrets/{id}/checkout (comment, ticket). The
// answer's page holds the value until the user leaves it.
func (c *console) checkoutSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	form := formOf(r)
	if c.cfg.Checkout == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "checkout is not configured on this server")
	}
	res, err := c.cfg.Checkout.Checkout(r.Context(), checkout.Input{SecretID: id, Comment: form.Comment, Ticket: strings.TrimSpace(form.Ticket)})
	if err != nil {
		return c.secretAgain(w, r, s, id, form, nil, err)
	}
	return c.secretAgain(w, r, s, id, secretForm{}, &revealed{Version: res.Version, Fields: fields(res.Value), Expires: res.Checkout.Expires}, nil)
}

func (c *console) checkin(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if c.cfg.Checkout == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "checkout is not configured on this server")
	}
	if _, err := c.cfg.Checkout.Checkin(r.Context(), id, r.PostForm.Get("comment")); err != nil {
		return c.secretAgain(w, r, s, id, formOf(r), nil, err)
	}
	http.Redirect(w, r, "/secrets/"+url.PathEscape(id)+"?done=checkedin", http.StatusSeeOther)
	return nil
}

func (c *console) extend(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if c.cfg.Checkout == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "checkout is not configured on this server")
	}
	if _, err := c.cfg.Checkout.Extend(r.Context(), id); err != nil {
		return c.secretAgain(w, r, s, id, secretForm{}, nil, err)
	}
	http.Redirect(w, r, "/secrets/"+url.PathEscape(id)+"?done=extended", http.StatusSeeOther)
	return nil
}
