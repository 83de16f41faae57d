// Package notify is the mail port of Escrow: the message that approval and
// outcome notifications are sent as, the Notifier interface that the
// transports (notify/ses in AWS, notify/outbox in -dev) implement, and the
// checks every transport applies before sending.
//
// It carries mail; it decides nothing. It must never import a vendor SDK,
// and never put a message body in a log or an error: bodies hold approval
// links, whose decision ids are meant for their approvers' eyes only.
package notify

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Message is one email. Every field but HTML and Ref is required.
type Message struct {
	// ID is unique and set by the caller (escrow.NewID): the idempotency
	// key, and part of the outbox's file names, hence its restricted
	// alphabet (letters, digits, '-' and '_').
	ID string `json:"id"`
	// To holds the recipients' addresses, each as net/mail parses one
	// ("bob@example.com" or "Bob <bob@example.com>").
	To      []string `json:"to"`
	Subject string   `json:"subject"`
	Text    string   `json:"text"`           // plain text body
	HTML    string   `json:"html,omitempty"` // optional HTML body
	// Kind says what the message is for ("approval.request",
	// "request.outcome"); transports pass it on as a header or tag.
	Kind string `json:"kind"`
	// Ref names what the message is about (a request id), for filtering
	// the outbox.
	Ref  string    `json:"ref,omitempty"`
	Time time.Time `json:"time"`
}

// Notifier sends mail.
//
// Implementations: notify/ses (AWS SESv2) and notify/outbox (a folder, for
// -dev). Both pass notify/notifytest.
type Notifier interface {
	// Send sends m. Returns an error wrapping escrow.ErrInvalid for a
	// message Validate refuses (nothing is sent), escrow.ErrUnavailable if
	// the transport cannot take mail now (down, throttled, paused: retry
	// later), and an escrow.CodeInternal error for a misconfigured
	// transport.
	//
	// m.ID is the idempotency key, but only as far as the transport can
	// honour it: the outbox sends an ID once, while SES has no such key, so
	// a retried Send may deliver twice. Mail must be harmless to receive
	// twice.
	Send(ctx context.Context, m Message) error
}

// Limits enforced by Validate. MaxRecipients and MaxSize are SES's (its
// per-message recipient limit, and its classic message size limit), applied
// to every transport so that mail the -dev outbox accepts also goes out in
// AWS.
const (
	MaxRecipients = 50
	MaxSize       = 10 << 20 // bytes of recipients, subject and bodies together
	MaxSubject    = 998      // bytes: the longest line RFC 5322 allows
	MaxID         = 128      // bytes of ID and of Ref
	MaxKind       = 64       // bytes
	maxAddress    = 320      // bytes: 64 for the local part, @, 255 for the domain
)

// Validate returns an error wrapping escrow.ErrInvalid if m cannot be sent:
// it has no recipient or one that does not parse, a Subject with a line
// break or other control character (header injection), an ID, Kind or Ref
// outside their alphabets, no Time, text that is not UTF-8, or is larger
// than the limits. Error messages name the field, never its content.
func Validate(m Message) error {
	if m.ID == "" {
		return invalid("message id is required")
	}
	if err := checkToken("id", m.ID, MaxID, false); err != nil {
		return err
	}
	if m.Kind == "" {
		return invalid("message kind is required")
	}
	if err := checkToken("kind", m.Kind, MaxKind, true); err != nil {
		return err
	}
	if err := checkToken("ref", m.Ref, MaxID, false); err != nil {
		return err
	}
	// JSON (the outbox, the API) cannot encode years past 9999, and a zero
	// time would sort every such message first.
	if m.Time.IsZero() || m.Time.Year() < 1970 || m.Time.Year() > 9999 {
		return invalid("message time is required (years 1970 to 9999)")
	}
	if len(m.To) == 0 {
		return invalid("message has no recipient")
	}
	if len(m.To) > MaxRecipients {
		return invalid("message has %d recipients, at most %d allowed", len(m.To), MaxRecipients)
	}
	size := 0
	for i, to := range m.To {
		if err := checkAddress(to); err != nil {
			return invalid("recipient %d: %s", i+1, err)
		}
		size += len(to)
	}
	switch {
	case m.Subject == "":
		return invalid("message subject is required")
	case len(m.Subject) > MaxSubject:
		return invalid("message subject is longer than %d bytes", MaxSubject)
	case !utf8.ValidString(m.Subject):
		return invalid("message subject is not UTF-8")
	case strings.ContainsFunc(m.Subject, isControl):
		return invalid("message subject contains a line break or control character")
	case m.Text == "":
		return invalid("message text is required")
	case !utf8.ValidString(m.Text):
		return invalid("message text is not UTF-8")
	case !utf8.ValidString(m.HTML):
		return invalid("message html is not UTF-8")
	}
	size += len(m.Subject) + len(m.Text) + len(m.HTML)
	if size > MaxSize {
		return invalid("message is larger than %d bytes", MaxSize)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return escrow.Errorf(escrow.CodeInvalid, "notify: "+format, args...)
}

// checkToken checks an identifier-like field: ASCII letters, digits, '-'
// and '_' (and '.' where dot is true), so that it is safe in a file name, a
// mail header and an SES tag.
func checkToken(field, s string, maxLen int, dot bool) error {
	if len(s) > maxLen {
		return invalid("message %s is longer than %d bytes", field, maxLen)
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.' && dot:
		case dot:
			return invalid("message %s may hold only letters, digits, '-', '_' and '.'", field)
		default:
			return invalid("message %s may hold only letters, digits, '-' and '_'", field)
		}
	}
	return nil
}

// checkAddress accepts one address that net/mail parses, with an ASCII
// addr-spec (SES does not speak SMTPUTF8) and no control characters at all:
// net/mail tolerates folding whitespace, which is a header injection vector.
func checkAddress(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty address")
	case len(s) > maxAddress+MaxSubject:
		return fmt.Errorf("address too long")
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		return fmt.Errorf("address contains a control character")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("not an email address")
	}
	if len(a.Address) > maxAddress {
		return fmt.Errorf("address too long")
	}
	for _, c := range []byte(a.Address) {
		if c >= utf8.RuneSelf {
			return fmt.Errorf("address is not ASCII (use punycode for the domain)")
		}
	}
	return nil
}

// isControl reports C0 controls (CR and LF among them), DEL and the C1
// controls. A tab is allowed: it is ordinary header whitespace.
func isControl(r rune) bool {
	return r != '\t' && (r < 0x20 || (r >= 0x7f && r < 0xa0))
}
