package ses

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/notify"
)

// rawMessage returns m, which has attachments, as the MIME message sent as
// SES Raw content:
//
//	From, To, Subject, Date, MIME-Version, X-Escrow-Kind, X-Escrow-Ref
//	multipart/mixed
//	├── text/plain; charset=utf-8                 (no HTML), or
//	│   multipart/alternative
//	│   ├── text/plain; charset=utf-8
//	│   └── text/html; charset=utf-8
//	└── per attachment, in order: its content type, with
//	    Content-Disposition: attachment; filename=<name>
//
// Every part is base64 in lines of 76 characters, so that each line is
// short and ASCII whatever a body holds, and notify.Size bounds the whole.
// The bodies' line breaks become CRLF (RFC 2045's canonical text); the
// attachments' bytes are sent as they are. Headers that may hold non-ASCII
// or be long (the subject, display names) are RFC 2047 encoded words, one
// per folded line. addrs are m.To, parsed.
func (s *SES) rawMessage(m notify.Message, addrs []*mail.Address) ([]byte, error) {
	var b bytes.Buffer
	to := make([]string, len(addrs))
	for i, a := range addrs {
		to[i] = headerAddress(a)
	}
	mixed, err := s.newWriter(&b)
	if err != nil {
		return nil, err
	}
	header := []struct{ name, value string }{
		{"From", headerAddress(s.sender)},
		{"To", strings.Join(to, ",\r\n ")},
		{"Subject", encodeWords(m.Subject, isVchar)},
		{"Date", m.Time.Format(time.RFC1123Z)},
		{"MIME-Version", "1.0"},
		{HeaderKind, m.Kind},
		{HeaderRef, m.Ref},
		{"Content-Type", fold("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mixed.Boundary()}))},
	}
	for _, h := range header {
		if h.value != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
		}
	}
	b.WriteString("\r\n")

	if m.HTML == "" {
		if err := writePart(mixed, "text/plain; charset=utf-8", "", []byte(crlf(m.Text))); err != nil {
			return nil, err
		}
	} else {
		var alt bytes.Buffer
		w, err := s.newWriter(&alt)
		if err != nil {
			return nil, err
		}
		if err := writePart(w, "text/plain; charset=utf-8", "", []byte(crlf(m.Text))); err != nil {
			return nil, err
		}
		if err := writePart(w, "text/html; charset=utf-8", "", []byte(crlf(m.HTML))); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("write alternative part: %w", err)
		}
		p, err := mixed.CreatePart(textproto.MIMEHeader{
			"Content-Type": {fold("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": w.Boundary()}))},
		})
		if err != nil {
			return nil, fmt.Errorf("write alternative part: %w", err)
		}
		if _, err := p.Write(alt.Bytes()); err != nil {
			return nil, fmt.Errorf("write alternative part: %w", err)
		}
	}
	for i, a := range m.Attachments {
		// Validate allowed the type; written again from its parse, so
		// that what goes out is what was checked.
		mt, params, err := mime.ParseMediaType(a.ContentType)
		if err != nil {
			return nil, fmt.Errorf("attachment %d: parse content type: %w", i+1, err)
		}
		if err := writePart(mixed, mime.FormatMediaType(mt, params), a.Name, a.Data); err != nil {
			return nil, fmt.Errorf("attachment %d: %w", i+1, err)
		}
	}
	if err := mixed.Close(); err != nil {
		return nil, fmt.Errorf("write message: %w", err)
	}
	return b.Bytes(), nil
}

// newWriter returns a multipart writer on w, with s.boundary's boundary if
// set.
func (s *SES) newWriter(w io.Writer) (*multipart.Writer, error) {
	mw := multipart.NewWriter(w)
	if s.boundary != nil {
		if err := mw.SetBoundary(s.boundary()); err != nil {
			return nil, fmt.Errorf("set boundary: %w", err)
		}
	}
	return mw, nil
}

// writePart writes one base64 part of type contentType, as an attachment
// named filename if that is set.
func writePart(w *multipart.Writer, contentType, filename string, data []byte) error {
	if contentType == "" {
		return fmt.Errorf("format content type: not a media type")
	}
	h := textproto.MIMEHeader{
		"Content-Type":              {fold("Content-Type", contentType)},
		"Content-Transfer-Encoding": {"base64"},
	}
	if filename != "" {
		h.Set("Content-Disposition", fold("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename})))
	}
	p, err := w.CreatePart(h)
	if err != nil {
		return fmt.Errorf("write part: %w", err)
	}
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	base64.StdEncoding.Encode(enc, data)
	for i := 0; i < len(enc); i += 76 {
		if i > 0 {
			if _, err := io.WriteString(p, "\r\n"); err != nil {
				return fmt.Errorf("write part: %w", err)
			}
		}
		if _, err := p.Write(enc[i:min(i+76, len(enc))]); err != nil {
			return fmt.Errorf("write part: %w", err)
		}
	}
	return nil
}

// fold returns the value of the header name with a line break before each
// parameter if the header would be longer than RFC 5322's 78 characters
// (a 60-character random boundary makes it so). Parameters that are long
// alone (a filename of 100 bytes) stay long, well within the hard limit of
// 998.
func fold(name, value string) string {
	if len(name)+2+len(value) <= 78 {
		return value
	}
	return strings.ReplaceAll(value, "; ", ";\r\n ")
}

// crlf returns s with every line break CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// headerAddress formats a for an address header: the display name, if
// any, as a phrase (see encodeWords), then the addr-spec, which Validate
// (or New, for the sender) has checked is ASCII.
func headerAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return encodeWords(a.Name, isAtext) + " <" + a.Address + ">"
}

// encodeWords returns s as it is if it is short, has no leading, trailing
// or double spaces, cannot be taken for an encoded word, and plain is true
// of every other byte. Else it returns s as RFC 2047 "B" encoded words of
// at most 42 bytes of s (whole runes) each, one per folded line: valid in a
// subject and as a display name, and never a long line.
func encodeWords(s string, plain func(c byte) bool) string {
	if len(s) <= 64 && s == strings.TrimSpace(s) && !strings.Contains(s, "  ") && !strings.Contains(s, "=?") &&
		!strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && (r >= utf8.RuneSelf || !plain(byte(r))) }) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		n := min(len(s), 42) // a 68-character word: "Subject: " and it fit in 78
		for n < len(s) && n > 1 && !utf8.RuneStart(s[n]) {
			n--
		}
		if b.Len() > 0 {
			b.WriteString("\r\n ")
		}
		b.WriteString("=?utf-8?b?")
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(s[:n])))
		b.WriteString("?=")
		s = s[n:]
	}
	return b.String()
}

// isVchar reports RFC 5234's VCHAR: printable ASCII but space.
func isVchar(c byte) bool { return c > ' ' && c < 0x7f }

// isAtext reports RFC 5322's atext: what a display name may hold unquoted.
func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
