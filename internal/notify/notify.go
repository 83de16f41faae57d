// Package notify is the mail port of Escrow: the message that approval and
// outcome notifications are sent as, the Notifier interface that the
// transports (notify/ses in AWS, notify/outbox in -dev) implement, and the
// checks every transport applies before sending.
//
// It carries mail; it decides nothing. It must never import a vendor SDK,
// and never put a message body or an attachment in a log or an error:
// bodies hold approval links, whose decision ids are meant for their
// approvers' eyes only, and attachments hold compliance reports.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Message is one email. Every field but HTML, Ref and Attachments is
// required.
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
	// Attachments are files sent with the message (a scheduled report's
	// CSV), in order. Optional; see Validate for what they may be.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is one file attached to a Message.
//
// In JSON, Data is base64 (as encoding/json writes []byte), and a "size"
// (the length of Data) is written for readers such as GET /dev/outbox; it
// is ignored when read.
type Attachment struct {
	// Name is the file name the recipient sees ("access-2026-11.csv"):
	// ASCII letters, digits, '-', '_' and '.', starting with a letter or
	// digit, ending in the extension of its content type, at most
	// MaxAttachmentName bytes. No path, no quoting, no RFC 2231.
	Name string `json:"name"`
	// ContentType is text/csv, application/json or text/plain (names end
	// in .csv, .json and .txt respectively), optionally with a charset
	// (utf-8 or us-ascii) for the text types and RFC 4180's header
	// parameter (present or absent) for text/csv:
	// "text/csv; charset=utf-8; header=present".
	ContentType string `json:"contentType"`
	// Data is sent as is, byte for byte (base64 on the wire).
	Data []byte `json:"data"`
}

// MarshalJSON writes a with its size, for readers of the JSON.
func (a Attachment) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name        string `json:"name"`
		ContentType string `json:"contentType"`
		Size        int    `json:"size"`
		Data        []byte `json:"data"`
	}{a.Name, a.ContentType, len(a.Data), a.Data})
}

// attachmentTypes maps each content type an attachment may have to the
// extension its name must end in, so that what a mail client opens by name
// is what the message says it is. Nothing executable, nothing rendered.
var attachmentTypes = map[string]string{
	"text/csv":         ".csv",
	"application/json": ".json",
	"text/plain":       ".txt",
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
	MaxRecipients     = 50
	MaxSize           = 10 << 20 // bytes of a message, as Size counts them
	MaxSubject        = 998      // bytes: the longest line RFC 5322 allows
	MaxID             = 128      // bytes of ID and of Ref
	MaxKind           = 64       // bytes
	MaxAttachments    = 5
	MaxAttachmentName = 100 // bytes
	maxAddress        = 320 // bytes: 64 for the local part, @, 255 for the domain
	maxContentType    = 100 // bytes: the longest allowed one is 44

	// Allowances for what a message with attachments adds around its
	// parts once it is MIME (see Size): the sender, date, kind, ref and
	// MIME headers, the alternative part's headers, and each part's
	// headers and boundary. They are generous: Size must never be smaller
	// than what SES counts.
	mimeOverhead = 4 << 10
	partOverhead = 512
	rcptOverhead = 32
)

// Validate returns an error wrapping escrow.ErrInvalid if m cannot be sent:
// it has no recipient or one that does not parse, a Subject with a line
// break or other control character (header injection), an ID, Kind or Ref
// outside their alphabets, no Time, text that is not UTF-8, more than
// MaxAttachments attachments, an attachment whose name or content type is
// not allowed (see Attachment) or whose name another one has (ignoring
// case), or is larger than the limits (Size above MaxSize). Error messages
// name the field, never its content.
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
	for i, to := range m.To {
		if err := checkAddress(to); err != nil {
			return invalid("recipient %d: %s", i+1, err)
		}
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
	if len(m.Attachments) > MaxAttachments {
		return invalid("message has %d attachments, at most %d allowed", len(m.Attachments), MaxAttachments)
	}
	seen := make(map[string]int, len(m.Attachments))
	for i, a := range m.Attachments {
		if err := checkAttachment(a); err != nil {
			return invalid("attachment %d: %s", i+1, err)
		}
		// Case-insensitive file systems (the outbox on a Mac) and mail
		// clients would confuse two such files.
		key := strings.ToLower(a.Name)
		if j, ok := seen[key]; ok {
			return invalid("attachment %d: name is attachment %d's", i+1, j+1)
		}
		seen[key] = i
	}
	if Size(m) > MaxSize {
		return invalid("message is larger than %d bytes", MaxSize)
	}
	return nil
}

// Size returns the bytes of m that count against MaxSize. Without
// attachments, that is its recipients, subject and bodies, as they are.
//
// A message with attachments goes out as one MIME message, and SES counts
// all of it, so Size counts what that message holds: the bodies (with CRLF
// line breaks) and the attachments base64-encoded in lines of 76
// characters, the subject and recipients twice over (RFC 2047 encoding)
// plus 32 bytes a recipient, and fixed allowances for the other headers
// (4 KiB) and each attachment's headers (512 bytes). A caller building a
// report can use it to learn, before sending, whether the file fits.
func Size(m Message) int {
	head := len(m.Subject)
	for _, to := range m.To {
		head += len(to)
	}
	if len(m.Attachments) == 0 {
		return head + len(m.Text) + len(m.HTML)
	}
	size := 2*head + rcptOverhead*len(m.To) + mimeOverhead + textLen(m.Text) + textLen(m.HTML)
	for _, a := range m.Attachments {
		size += partOverhead + base64Len(len(a.Data))
	}
	return size
}

// base64Len returns the length of n bytes base64-encoded as MIME wants it
// (RFC 2045): padded, in lines of at most 76 characters, each ending in
// CRLF.
func base64Len(n int) int {
	e := (n + 2) / 3 * 4
	return e + 2*((e+75)/76)
}

// textLen is the base64 length of a body once its line breaks are CRLF
// (at most one more byte per LF).
func textLen(s string) int {
	if s == "" {
		return 0
	}
	return base64Len(len(s) + strings.Count(s, "\n"))
}

// checkAttachment checks a's content type and name (see Attachment).
func checkAttachment(a Attachment) error {
	ext, err := checkContentType(a.ContentType)
	if err != nil {
		return err
	}
	name := a.Name
	switch {
	case name == "":
		return fmt.Errorf("name is required")
	case len(name) > MaxAttachmentName:
		return fmt.Errorf("name is longer than %d bytes", MaxAttachmentName)
	case !isAlnum(name[0]):
		return fmt.Errorf("name must start with a letter or digit")
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			// Rules out path separators, control characters, quotes
			// and non-ASCII (which would need RFC 2231) at once.
			return fmt.Errorf("name may hold only ASCII letters, digits, '-', '_' and '.'")
		}
	}
	if len(name) <= len(ext) || !strings.EqualFold(name[len(name)-len(ext):], ext) {
		return fmt.Errorf("name must be something%s for its content type", ext)
	}
	return nil
}

// checkContentType returns the extension of an allowed content type.
func checkContentType(ct string) (string, error) {
	const refused = "content type must be text/csv, application/json or text/plain"
	if len(ct) > maxContentType || strings.ContainsFunc(ct, func(r rune) bool { return isControl(r) || r >= utf8.RuneSelf }) {
		return "", errors.New(refused)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", errors.New(refused)
	}
	ext, ok := attachmentTypes[mt]
	if !ok {
		return "", errors.New(refused)
	}
	for k, v := range params {
		switch {
		case k == "charset" && strings.HasPrefix(mt, "text/") && (strings.EqualFold(v, "utf-8") || strings.EqualFold(v, "us-ascii")):
		case k == "header" && mt == "text/csv" && (v == "present" || v == "absent"):
		default:
			return "", errors.New("content type may have only a charset (utf-8 or us-ascii) for text, and header (present or absent) for text/csv")
		}
	}
	return ext, nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
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
