package ses_test

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/escrow-pam/escrow/internal/notify"
	"github.com/escrow-pam/escrow/internal/notify/ses"
)

// recorder fakes SendEmail, keeping its input.
type recorder struct {
	ses.API
	in *sesv2.SendEmailInput
}

func (r *recorder) SendEmail(_ context.Context, in *sesv2.SendEmailInput, _ ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	r.in = in
	return &sesv2.SendEmailOutput{MessageId: aws.String("ses-1")}, nil
}

// TestRawWorstCases sends messages at the edges of what Validate allows
// and checks the MIME message: every line short, ASCII and ending in CRLF
// (SMTP's rules, which SES enforces), no larger than notify.Size says, and
// read back to what was sent.
func TestRawWorstCases(t *testing.T) {
	csv := notify.Attachment{Name: "report.csv", ContentType: "text/csv", Data: []byte("a,b\r\n1,2\r\n")}
	for _, tc := range []struct {
		name   string
		change func(m *notify.Message)
	}{
		{"plain", func(m *notify.Message) {}},
		{"long non-ASCII subject", func(m *notify.Message) { m.Subject = strings.Repeat("ü", notify.MaxSubject/2) }},
		{"long ASCII subject", func(m *notify.Message) { m.Subject = strings.Repeat("x", notify.MaxSubject) }},
		{"odd subjects", func(m *notify.Message) { m.Subject = " lead\ttab  double =?utf-8?q?x?= trail " }},
		{"four-byte runes across words", func(m *notify.Message) { m.Subject = "a" + strings.Repeat("😀", 200) }},
		{"many long display names", func(m *notify.Message) {
			m.To = nil
			for i := range notify.MaxRecipients {
				m.To = append(m.To, fmt.Sprintf("%s %d <user%d@example.com>", strings.Repeat("Jörg ", 150), i, i))
			}
		}},
		{"long ASCII display name", func(m *notify.Message) {
			m.To = []string{`"` + strings.Repeat("x", 990) + `" <bob@example.com>`}
		}},
		{"many short encoded names", func(m *notify.Message) {
			m.To = nil
			for i := range notify.MaxRecipients {
				m.To = append(m.To, fmt.Sprintf("é <u%d@e.x>", i))
			}
		}},
		{"quoted specials in name", func(m *notify.Message) { m.To = []string{`"Example, Bob <x>" <bob@example.com>`} }},
		{"bodies of line breaks", func(m *notify.Message) {
			m.Text = strings.Repeat("\n", 100_000)
			m.HTML = strings.Repeat("<br>\n", 10_000)
		}},
		{"lone CR kept", func(m *notify.Message) { m.Text = "a\rb\r\nc\n" }},
		{"five long names, empty data", func(m *notify.Message) {
			m.Attachments = nil
			for i := range notify.MaxAttachments {
				m.Attachments = append(m.Attachments, notify.Attachment{
					Name:        fmt.Sprintf("%d%s.csv", i, strings.Repeat("r", notify.MaxAttachmentName-5)),
					ContentType: "text/csv; charset=us-ascii; header=absent",
				})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := message("Report")
			m.Attachments = []notify.Attachment{csv}
			tc.change(&m)
			if err := notify.Validate(m); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			r := &recorder{}
			if err := ses.New(r, "Escrow Reports <"+sender+">", "").Send(context.Background(), m); err != nil {
				t.Fatalf("Send: %v", err)
			}
			raw := r.in.Content.Raw.Data
			if len(raw) > notify.Size(m) {
				t.Errorf("raw message has %d bytes, notify.Size says %d", len(raw), notify.Size(m))
			}
			for i, line := range bytes.Split(raw, []byte("\r\n")) {
				// 78 is RFC 5322's advice; 998 its limit, which only a
				// long attachment name may get near.
				if len(line) > 78 && !(bytes.HasPrefix(line, []byte(" filename=")) && len(line) <= 998) {
					t.Fatalf("line %d has %d characters: %.100q", i+1, len(line), line)
				}
				if j := bytes.IndexFunc(line, func(r rune) bool { return r > '~' || r < ' ' && r != '\t' }); j >= 0 {
					t.Fatalf("line %d holds %q: %.100q", i+1, line[j], line)
				}
			}
			got := parseRaw(t, string(raw))
			if got.Subject != m.Subject {
				t.Errorf("subject = %q, want %q", got.Subject, m.Subject)
			}
			if len(got.To) != len(m.To) {
				t.Fatalf("To = %q, want %q", got.To, m.To)
			}
			for i := range m.To {
				want, _ := mail.ParseAddress(m.To[i])
				have, _ := mail.ParseAddress(got.To[i])
				if *want != *have {
					t.Errorf("recipient %d = %+v, want %+v", i+1, have, want)
				}
			}
			if got.Text != strings.ReplaceAll(m.Text, "\r\n", "\n") || got.HTML != m.HTML {
				t.Errorf("bodies differ: %.60q, %.60q", got.Text, got.HTML)
			}
			if len(got.Attachments) != len(m.Attachments) {
				t.Fatalf("%d attachments, want %d", len(got.Attachments), len(m.Attachments))
			}
			for i, a := range m.Attachments {
				if g := got.Attachments[i]; g.Name != a.Name || !bytes.Equal(g.Data, a.Data) {
					t.Errorf("attachment %d = %q (%d bytes), want %q (%d bytes)", i+1, g.Name, len(g.Data), a.Name, len(a.Data))
				}
			}
		})
	}
}
