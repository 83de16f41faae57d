package siem

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// CEF header constants.
const (
	CEFVendor  = "Escrow"
	CEFProduct = "Escrow"
)

// FormatCEF returns r as one CEF line, without a trailing newline, with
// productVersion as the Device Version. The format, the escaping and the
// field mapping are in the package doc. r must not be nil.
func FormatCEF(r *escrow.AuditRecord, productVersion string) string {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, h := range [...]string{CEFVendor, CEFProduct, productVersion, r.Action, Name(r.Action)} {
		writeHeader(&b, h)
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(Severity(r)))
	b.WriteByte('|')

	x := extWriter{b: &b}
	if !r.Time.IsZero() {
		x.raw("rt", strconv.FormatInt(r.Time.UnixMilli(), 10))
	}
	x.add("externalId", r.ID)
	x.add("act", r.Action)
	x.add("outcome", string(r.Outcome))
	x.add("reason", string(r.ErrorCode))
	x.add("msg", r.Reason)
	x.add("suser", r.Actor.Subject)
	x.add("spriv", strings.Join(r.Actor.Roles, ","))
	if _, err := netip.ParseAddr(r.SourceIP); err == nil {
		x.add("src", r.SourceIP)
	} else {
		x.add("shost", r.SourceIP)
	}
	x.add("requestClientApplication", r.UserAgent)
	x.labeled("cs1", "secretId", r.SecretID)
	x.labeled("cs2", "ticket", r.Ticket)
	x.labeled("cs3", "requestId", r.RequestID)
	x.labeled("cs4", "comment", r.Comment)
	x.labeled("cs5", "actorEmail", r.Actor.Email)
	if len(r.Details) > 0 {
		// encoding/json sorts map keys, so equal details give equal text.
		d, _ := json.Marshal(r.Details) // a map[string]string always marshals
		x.labeled("cs6", "details", string(d))
	}
	x.labeled("flexString1", "actorGroups", strings.Join(r.Actor.Groups, ","))
	x.labeled("flexString2", "target", r.Target)
	return b.String()
}

// extWriter appends space-separated key=value pairs, skipping empty values.
type extWriter struct {
	b    *strings.Builder
	some bool
}

func (x *extWriter) raw(key, value string) {
	if x.some {
		x.b.WriteByte(' ')
	}
	x.some = true
	x.b.WriteString(key)
	x.b.WriteByte('=')
	x.b.WriteString(value)
}

func (x *extWriter) add(key, value string) {
	if value == "" {
		return
	}
	x.raw(key, "")
	writeExt(x.b, value)
}

// labeled writes a custom key and its label, only when value is set.
func (x *extWriter) labeled(key, label, value string) {
	if value == "" {
		return
	}
	x.add(key, value)
	x.raw(key+"Label", label)
}

// writeHeader writes s escaped for a CEF header field: \ and | get a
// backslash; CR and LF, which a header may not hold at all, become spaces.
func writeHeader(b *strings.Builder, s string) {
	for _, r := range s {
		switch r {
		case '\\', '|':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\r', '\n':
			b.WriteByte(' ')
		default:
			b.WriteRune(clean(r))
		}
	}
}

// writeExt writes s escaped for a CEF extension value: \ and = get a
// backslash, CR and LF become \r and \n.
func writeExt(b *strings.Builder, s string) {
	for _, r := range s {
		switch r {
		case '\\', '=':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteRune(clean(r))
		}
	}
}

// clean replaces what CEF cannot carry with U+FFFD: a byte that is not
// UTF-8 (ranging over a string yields RuneError for each), and a control
// character other than tab. CEF has no escape for controls, and a raw NUL
// or ESC from a client-chosen value (a user agent) could cut a syslog line
// or drive the terminal of whoever reads it.
func clean(r rune) rune {
	if r == '\t' {
		return r
	}
	if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == utf8.RuneError {
		return utf8.RuneError
	}
	return r
}
