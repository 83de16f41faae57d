package notify_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

func valid() notify.Message {
	return notify.Message{
		ID:      "01JDX9V7M3Q8K2ZB4W6Y5T0R1S",
		To:      []string{"bob@example.com"},
		Subject: "Approval requested",
		Text:    "Decide: https://escrow.example.com/decide/01JDX9V7M3",
		Kind:    "approval.request",
		Ref:     "01JDX9V7M3Q8K2ZB4W6Y5T0R1T",
		Time:    time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
}

// The limits are inclusive: what sits exactly on one is accepted.
func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *notify.Message)
	}{
		{"plain", func(m *notify.Message) {}},
		{"display name", func(m *notify.Message) { m.To = []string{"Bob Example <bob@example.com>"} }},
		{"non-ASCII display name", func(m *notify.Message) { m.To = []string{"Jörg Müller <joerg@example.com>"} }},
		{"quoted display name", func(m *notify.Message) { m.To = []string{`"Example, Bob" <bob@example.com>`} }},
		{"punycode domain", func(m *notify.Message) { m.To = []string{"bob@xn--mnchen-3ya.example"} }},
		{"tab and non-ASCII in subject", func(m *notify.Message) { m.Subject = "Zugriff\tfür alice ✓" }},
		{"no ref", func(m *notify.Message) { m.Ref = "" }},
		{"html", func(m *notify.Message) { m.HTML = "<p>hi</p>" }},
		{"max recipients", func(m *notify.Message) {
			m.To = nil
			for i := range notify.MaxRecipients {
				m.To = append(m.To, fmt.Sprintf("u%d@example.com", i))
			}
		}},
		{"max subject", func(m *notify.Message) { m.Subject = strings.Repeat("s", notify.MaxSubject) }},
		{"max id", func(m *notify.Message) { m.ID = strings.Repeat("A", notify.MaxID) }},
		{"max kind", func(m *notify.Message) { m.Kind = strings.Repeat("k", notify.MaxKind) }},
		{"max size", func(m *notify.Message) {
			m.Text = strings.Repeat("a", notify.MaxSize-len(m.Subject)-len(m.To[0]))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.change(&m)
			if err := notify.Validate(m); err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
		})
	}
}

func TestValidateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *notify.Message)
		msg    string // part of the error message
	}{
		{"no recipient", func(m *notify.Message) { m.To = []string{} }, "no recipient"},
		{"second recipient bad", func(m *notify.Message) { m.To = []string{"bob@example.com", "carol"} }, "recipient 2: not an email address"},
		{"LF in recipient", func(m *notify.Message) { m.To = []string{"bob@example.com\nBcc: x@example.com"} }, "control character"},
		{"group syntax", func(m *notify.Message) { m.To = []string{"team: a@example.com, b@example.com;"} }, "not an email address"},
		{"too many recipients", func(m *notify.Message) { m.To = make([]string, notify.MaxRecipients+1) }, "51 recipients"},
		{"long address", func(m *notify.Message) { m.To = []string{strings.Repeat("a", 320) + "@example.com"} }, "too long"},
		{"CRLF in subject", func(m *notify.Message) { m.Subject = "hi\r\nBcc: x@example.com" }, "subject contains a line break"},
		{"DEL in subject", func(m *notify.Message) { m.Subject = "hi\x7f" }, "subject contains"},
		{"C1 control in subject", func(m *notify.Message) { m.Subject = "hi\u0085there" }, "subject contains"},
		{"subject not UTF-8", func(m *notify.Message) { m.Subject = "caf\xe9" }, "subject is not UTF-8"},
		{"long subject", func(m *notify.Message) { m.Subject = strings.Repeat("s", notify.MaxSubject+1) }, "subject is longer"},
		{"no text", func(m *notify.Message) { m.Text = "" }, "text is required"},
		{"over size", func(m *notify.Message) {
			m.Text = strings.Repeat("a", notify.MaxSize-len(m.Subject)-len(m.To[0])+1)
		}, "larger than"},
		{"no id", func(m *notify.Message) { m.ID = "" }, "id is required"},
		{"dot in id", func(m *notify.Message) { m.ID = "a.b" }, "id may hold only"},
		{"long id", func(m *notify.Message) { m.ID = strings.Repeat("A", notify.MaxID+1) }, "id is longer"},
		{"long kind", func(m *notify.Message) { m.Kind = strings.Repeat("k", notify.MaxKind+1) }, "kind is longer"},
		{"colon in kind", func(m *notify.Message) { m.Kind = "approval:request" }, "kind may hold only"},
		{"dot in ref", func(m *notify.Message) { m.Ref = "a.b" }, "ref may hold only"},
		{"zero time", func(m *notify.Message) { m.Time = time.Time{} }, "time is required"},
		{"year 1", func(m *notify.Message) { m.Time = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC) }, "time is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.change(&m)
			err := notify.Validate(m)
			if !errors.Is(err, escrow.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			msg := escrow.ErrorMessage(err)
			if !strings.Contains(msg, tc.msg) {
				t.Fatalf("message %q does not say %q", msg, tc.msg)
			}
			// The message is shown to clients: it names the field, never
			// echoes the content.
			for _, part := range append([]string{m.Subject, m.Text}, m.To...) {
				if len(part) > 3 && strings.Contains(msg, part) {
					t.Fatalf("message %q echoes content %q", msg, part)
				}
			}
		})
	}
}
