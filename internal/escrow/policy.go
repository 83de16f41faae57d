package escrow

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// AccessKind is what a request or grant is for.
type AccessKind string

// Access kinds.
const (
	AccessView     AccessKind = "view"
	AccessEdit     AccessKind = "edit"
	AccessCheckout AccessKind = "checkout"
)

// Valid reports whether k is a known access kind.
func (k AccessKind) Valid() bool {
	return k == AccessView || k == AccessEdit || k == AccessCheckout
}

// Policy rules attached to a secret or a folder. The nearest one wins: a
// secret's own policy, else its folder's, else the nearest ancestor's
// (EffectivePolicy). A policy does not widen an ACL: it adds conditions on
// top of it.
type Policy struct {
	// Approval, if set, makes the listed kinds of access need an approved,
	// time-boxed grant.
	Approval *ApprovalRule `json:"approval,omitempty"`
	// Comment is the Require Comment rule.
	Comment CommentRule `json:"comment"`
	// Notice is company policy text (Markdown) put into every notification.
	Notice string `json:"notice,omitempty"`
	// Ticket, if set, makes requests name a change or incident ticket that
	// is validated live against a ticket system.
	Ticket *TicketRule `json:"ticket,omitempty"`
	// Checkout, if set, governs exclusive checkout of the secret.
	Checkout *CheckoutRule `json:"checkout,omitempty"`
}

// ClockStart says when an approved grant's time starts running.
type ClockStart string

// Clock starts.
const (
	ClockAtApproval ClockStart = "approval" // the window starts when the last approval lands
	ClockAtStart    ClockStart = "start"    // the window is the requested one
)

// ApprovalRule is the approval part of a policy.
type ApprovalRule struct {
	// For lists the access kinds that need approval.
	For []AccessKind `json:"for"`
	// Steps run in order; each needs Quorum distinct approvers.
	Steps []ApprovalStep `json:"steps"`
	// PendingTimeout ends a request nobody decided in time as timed_out.
	PendingTimeout Duration `json:"pendingTimeout"`
	// MaxDuration caps a grant's window.
	MaxDuration Duration `json:"maxDuration"`
	// AllowFutureStart lets a request name a start in the future (a
	// maintenance window booked in advance).
	AllowFutureStart bool       `json:"allowFutureStart"`
	ClockStarts      ClockStart `json:"clockStarts"`
	// StepUp is how recent an approver's sign-in must be for a decision
	// in the web console (step-up authentication); 0 means
	// DefaultStepUp. An older session is sent to sign in again.
	StepUp Duration `json:"stepUp,omitempty"`
}

// DefaultStepUp is the step-up age of a rule that sets none.
const DefaultStepUp = 15 * time.Minute

// StepUpAge returns how recent a decider's sign-in must be under r.
func (r *ApprovalRule) StepUpAge() time.Duration {
	if r == nil || r.StepUp <= 0 {
		return DefaultStepUp
	}
	return r.StepUp.D()
}

// Requires reports whether access of kind k needs approval under r.
func (r *ApprovalRule) Requires(k AccessKind) bool {
	if r == nil {
		return false
	}
	for _, f := range r.For {
		if f == k {
			return true
		}
	}
	return false
}

// ApprovalStep is one step of an approval: any Quorum distinct people among
// Approvers ("user:x", "group:y") must approve.
type ApprovalStep struct {
	Name      string   `json:"name,omitempty"`
	Approvers []string `json:"approvers"`
	Quorum    int      `json:"quorum"`
}

// CommentMode says whether a requester must write a comment.
type CommentMode string

// Comment modes.
const (
	CommentOff      CommentMode = "off"
	CommentOptional CommentMode = "optional"
	CommentRequired CommentMode = "required"
)

// CommentRule is Require Comment: what a requester must write, for example
// a change ticket number that matches a pattern.
type CommentRule struct {
	Mode CommentMode `json:"mode"`
	// Prompt is shown to the requester ("Enter the change number").
	Prompt    string `json:"prompt,omitempty"`
	MinLength int    `json:"minLength,omitempty"`
	// Pattern is an RE2 expression the whole comment must match, and
	// PatternMessage what the requester is told when it does not.
	Pattern        string `json:"pattern,omitempty"`
	PatternMessage string `json:"patternMessage,omitempty"`
	// OnReveal applies the rule to every reveal of the secret as well as to
	// access requests; the comment goes into that reveal's audit record.
	OnReveal bool `json:"onReveal,omitempty"`
}

// MaxCommentLength bounds any comment.
const MaxCommentLength = 2000

// Check applies the rule to a comment. It returns an invalid error that
// carries the policy's own message, so the requester knows what to write.
func (c CommentRule) Check(comment string) error {
	comment = strings.TrimSpace(comment)
	if len(comment) > MaxCommentLength {
		return Errorf(CodeInvalid, "the comment is longer than %d characters", MaxCommentLength)
	}
	switch c.Mode {
	case "", CommentOff:
		return nil
	case CommentOptional:
		if comment == "" {
			return nil
		}
	}
	if comment == "" {
		msg := "a comment is required"
		if c.Prompt != "" {
			msg += ": " + c.Prompt
		}
		return Errorf(CodeInvalid, "%s", msg)
	}
	if n := utf8.RuneCountInString(comment); n < c.MinLength {
		return Errorf(CodeInvalid, "the comment must be at least %d characters (it has %d)", c.MinLength, n)
	}
	if c.Pattern != "" {
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return Wrap(CodeInternal, err, "the policy's comment pattern does not compile")
		}
		if !re.MatchString(comment) {
			msg := c.PatternMessage
			if msg == "" {
				msg = "the comment does not match the required pattern " + c.Pattern
			}
			return Errorf(CodeInvalid, "%s", msg)
		}
	}
	return nil
}

// Validate checks a policy's shape.
func (p *Policy) Validate() error {
	if p == nil {
		return nil
	}
	switch p.Comment.Mode {
	case "", CommentOff, CommentOptional, CommentRequired:
	default:
		return Errorf(CodeInvalid, "comment.mode %q must be off, optional or required", p.Comment.Mode)
	}
	if p.Comment.MinLength < 0 || p.Comment.MinLength > MaxCommentLength {
		return Errorf(CodeInvalid, "comment.minLength must be between 0 and %d", MaxCommentLength)
	}
	if p.Comment.Pattern != "" {
		if len(p.Comment.Pattern) > 512 {
			return Errorf(CodeInvalid, "comment.pattern is longer than 512 bytes")
		}
		if _, err := regexp.Compile(p.Comment.Pattern); err != nil {
			return Errorf(CodeInvalid, "comment.pattern is not a valid RE2 expression: %v", err)
		}
	}
	if len(p.Comment.Prompt) > 500 || len(p.Comment.PatternMessage) > 500 {
		return Errorf(CodeInvalid, "comment.prompt and comment.patternMessage are at most 500 bytes")
	}
	if err := p.Ticket.Validate(); err != nil {
		return err
	}
	if err := p.Checkout.Validate(); err != nil {
		return err
	}
	if p.Ticket != nil && p.Ticket.Standalone && (p.Approval == nil || len(p.Approval.Steps) > 0) {
		// A standalone ticket replaces the human steps: say so explicitly.
		return Errorf(CodeInvalid, "ticket.standalone grants without approvers: set approval (for, pendingTimeout, maxDuration) with no steps")
	}
	if len(p.Notice) > 16<<10 {
		return Errorf(CodeInvalid, "notice is longer than 16 KiB")
	}
	if a := p.Approval; a != nil {
		if len(a.For) == 0 {
			return Errorf(CodeInvalid, "approval.for must name at least one of view, edit, checkout")
		}
		for _, k := range a.For {
			if !k.Valid() {
				return Errorf(CodeInvalid, "approval.for: %q is not one of view, edit, checkout", k)
			}
		}
		standalone := p.Ticket != nil && p.Ticket.Standalone
		if (len(a.Steps) == 0 && !standalone) || len(a.Steps) > 5 {
			return Errorf(CodeInvalid, "approval.steps must have 1 to 5 steps (or none, with ticket.standalone)")
		}
		for i, s := range a.Steps {
			if len(s.Approvers) == 0 {
				return Errorf(CodeInvalid, "approval step %d has no approvers", i+1)
			}
			for _, ap := range s.Approvers {
				if err := (ACE{Principal: ap, Permission: PermView}).Validate(); err != nil {
					return Errorf(CodeInvalid, "approval step %d: approver %q must be user:<name> or group:<name>", i+1, ap)
				}
			}
			if s.Quorum < 1 || s.Quorum > 10 {
				return Errorf(CodeInvalid, "approval step %d: quorum must be 1 to 10", i+1)
			}
		}
		if a.PendingTimeout.D() <= 0 || a.PendingTimeout.D() > 30*24*time.Hour {
			return Errorf(CodeInvalid, "approval.pendingTimeout must be between 1s and 30 days")
		}
		if a.MaxDuration.D() <= 0 || a.MaxDuration.D() > 90*24*time.Hour {
			return Errorf(CodeInvalid, "approval.maxDuration must be between 1s and 90 days")
		}
		if a.StepUp != 0 && (a.StepUp.D() < time.Minute || a.StepUp.D() > 24*time.Hour) {
			return Errorf(CodeInvalid, "approval.stepUp must be between 1m and 24h (or unset for %s)", DefaultStepUp)
		}
		switch a.ClockStarts {
		case "", ClockAtApproval, ClockAtStart:
		default:
			return Errorf(CodeInvalid, "approval.clockStarts %q must be approval or start", a.ClockStarts)
		}
	}
	return nil
}

// EffectivePolicy returns the policy that governs a secret: its own, else
// the nearest folder's. folders may be in any order; ok is false when no
// policy applies.
func EffectivePolicy(secretPolicy *Policy, folder string, folders []Folder) (p *Policy, from string, ok bool) {
	if secretPolicy != nil {
		return secretPolicy, "secret", true
	}
	byPath := make(map[string]*Policy, len(folders))
	for i := range folders {
		if folders[i].Policy != nil {
			byPath[folders[i].Path] = folders[i].Policy
		}
	}
	for _, f := range Ancestors(folder) {
		if p := byPath[f]; p != nil {
			return p, "folder:" + f, true
		}
	}
	return nil, "", false
}

// Duration is a time.Duration that reads and writes as a Go duration
// string ("30m", "2h") in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "90m" or "2h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Errorf(CodeInvalid, "durations are strings such as \"30m\" or \"2h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return Errorf(CodeInvalid, "%q is not a duration such as \"30m\" or \"2h\"", s)
	}
	*d = Duration(v)
	return nil
}
