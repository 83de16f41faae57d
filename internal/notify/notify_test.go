package notify_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
		{"csv attachment", attach("access-2026-11.csv", "text/csv")},
		{"json attachment", attach("summary.json", "application/json")},
		{"text attachment", attach("notes.txt", "text/plain")},
		{"report.ContentType of csv", attach("access.csv", "text/csv; charset=utf-8; header=present")},
		{"parameters in any case", attach("access.csv", `Text/CSV; Charset="UTF-8"; header=absent`)},
		{"us-ascii text", attach("notes.txt", "text/plain; charset=us-ascii")},
		{"upper-case extension", attach("ACCESS.CSV", "text/csv")},
		{"dots, dashes and underscores", attach("2026-11_access.v2.csv", "text/csv")},
		{"max name", attach(strings.Repeat("r", notify.MaxAttachmentName-4)+".csv", "text/csv")},
		{"empty data", func(m *notify.Message) { m.Attachments = []notify.Attachment{{Name: "a.csv", ContentType: "text/csv"}} }},
		{"max attachments", func(m *notify.Message) {
			for i := range notify.MaxAttachments {
				m.Attachments = append(m.Attachments, csv(fmt.Sprintf("r%d.csv", i)))
			}
		}},
		{"max size with attachment", func(m *notify.Message) { m.Attachments = []notify.Attachment{largest(*m)} }},
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
		{"too many attachments", func(m *notify.Message) {
			m.Attachments = make([]notify.Attachment, notify.MaxAttachments+1)
		}, "6 attachments, at most 5"},
		{"no name", attach("", "text/csv"), "attachment 2: name is required"},
		{"long name", attach(strings.Repeat("r", notify.MaxAttachmentName-3)+".csv", "text/csv"), "name is longer than 100 bytes"},
		{"parent", attach("../../etc/cron.d/x.csv", "text/csv"), "name must start with a letter or digit"},
		{"hidden", attach(".report.csv", "text/csv"), "name must start with a letter or digit"},
		{"slash", attach("reports/2026.csv", "text/csv"), "name may hold only"},
		{"backslash", attach(`reports\2026.csv`, "text/csv"), "name may hold only"},
		{"CRLF in name", attach("a\r\nContent-Type: text/html.csv", "text/csv"), "name may hold only"},
		{"tab in name", attach("a\tb.csv", "text/csv"), "name may hold only"},
		{"space in name", attach("access report.csv", "text/csv"), "name may hold only"},
		{"quote in name", attach(`a".csv`, "text/csv"), "name may hold only"},
		{"semicolon in name", attach("a;filename=x.exe.csv", "text/csv"), "name may hold only"},
		{"non-ASCII name", attach("zugriffe-für-jörg.csv", "text/csv"), "name may hold only"},
		{"invalid UTF-8 name", attach("caf\xe9.csv", "text/csv"), "name may hold only"},
		{"no extension", attach("access", "text/csv"), "name must be something.csv"},
		{"wrong extension", attach("access.exe", "text/csv"), "name must be something.csv"},
		{"double extension", attach("access.csv.exe", "text/csv"), "name must be something.csv"},
		{"json named txt", attach("summary.txt", "application/json"), "name must be something.json"},
		{"same name", func(m *notify.Message) { m.Attachments = []notify.Attachment{csv("a.csv"), csv("b.csv"), csv("a.csv")} }, "attachment 3: name is attachment 1's"},
		{"same name but case", func(m *notify.Message) { m.Attachments = []notify.Attachment{csv("access.csv"), csv("Access.CSV")} }, "attachment 2: name is attachment 1's"},
		{"html", attach("a.csv", "text/html"), "content type must be"},
		{"binary", attach("a.csv", "application/octet-stream"), "content type must be"},
		{"no type", attach("a.csv", ""), "content type must be"},
		{"CRLF in type", attach("a.csv", "text/csv\r\nBcc: evil@example.com"), "content type must be"},
		{"non-ASCII type", attach("a.csv", "text/csv; charset=ü"), "content type must be"},
		{"long type", attach("a.csv", "text/csv; charset=utf-8"+strings.Repeat(" ", 100)), "content type must be"},
		{"bad parameter", attach("a.csv", "text/csv; charset"), "content type must be"},
		{"duplicate parameter", attach("a.csv", "text/csv; charset=utf-8; charset=us-ascii"), "content type must be"},
		{"other charset", attach("a.csv", "text/csv; charset=iso-8859-1"), "may have only a charset"},
		{"charset on json", attach("a.json", "application/json; charset=utf-8"), "may have only a charset"},
		{"header on text", attach("a.txt", "text/plain; header=present"), "may have only a charset"},
		{"bad header value", attach("a.csv", "text/csv; header=yes"), "may have only a charset"},
		{"name parameter", attach("a.csv", `text/csv; name="evil.exe"`), "may have only a charset"},
		{"over size with attachment", func(m *notify.Message) {
			a := largest(*m)
			a.Data = append(a.Data, 'x')
			m.Attachments = []notify.Attachment{a}
		}, "larger than"},
		{"over size once base64", func(m *notify.Message) {
			a := csv("big.csv")
			a.Data = make([]byte, notify.MaxSize*3/4+1024) // under MaxSize as bytes
			m.Attachments = []notify.Attachment{a}
		}, "larger than"},
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
			parts := append([]string{m.Subject, m.Text}, m.To...)
			for _, a := range m.Attachments {
				parts = append(parts, a.Name, string(a.Data)) // types are named: they are an allow-list
			}
			for _, part := range parts {
				if len(part) > 3 && strings.Contains(msg, part) {
					t.Fatalf("message %q echoes content %q", msg, part)
				}
			}
		})
	}
}

func csv(name string) notify.Attachment {
	return notify.Attachment{Name: name, ContentType: "text/csv", Data: []byte("id,decision\r\n01HZX3,approved\r\n")}
}

// attach returns a change that attaches, after a valid CSV, one named name
// of type contentType.
func attach(name, contentType string) func(m *notify.Message) {
	return func(m *notify.Message) {
		a := csv(name)
		a.ContentType = contentType
		m.Attachments = []notify.Attachment{csv("first.csv"), a}
	}
}

// largest returns the largest CSV attachment m can carry: Size(m with it)
// is at most MaxSize, and one more byte puts it over.
func largest(m notify.Message) notify.Attachment {
	a := csv("largest.csv")
	fits := func(n int) bool {
		a.Data = make([]byte, n)
		m.Attachments = []notify.Attachment{a}
		return notify.Size(m) <= notify.MaxSize
	}
	lo, hi := 0, notify.MaxSize // fits(lo), !fits(hi)
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	a.Data = bytes.Repeat([]byte{'a'}, lo)
	return a
}

func TestSize(t *testing.T) {
	m := valid()
	m.HTML = "<p>hi</p>"
	if got, want := notify.Size(m), len(m.To[0])+len(m.Subject)+len(m.Text)+len(m.HTML); got != want {
		t.Fatalf("Size without attachments = %d, want %d: recipients, subject and bodies", got, want)
	}
	// With attachments: the MIME message, base64 and all.
	m.Text = "a\nb\n" // 6 bytes with CRLF: 8 in base64, and a CRLF
	m.HTML = ""
	m.Attachments = []notify.Attachment{{Name: "a.csv", ContentType: "text/csv", Data: make([]byte, 57)}} // one full line of 76
	head := 2*(len(m.To[0])+len(m.Subject)) + 32 + 4096
	if got, want := notify.Size(m), head+(8+2)+(512+76+2); got != want {
		t.Fatalf("Size with an attachment = %d, want %d", got, want)
	}
	m.Attachments[0].Data = make([]byte, 58) // a second line
	if got, want := notify.Size(m), head+(8+2)+(512+80+4); got != want {
		t.Fatalf("Size with an attachment of two lines = %d, want %d", got, want)
	}
}

func TestAttachmentJSON(t *testing.T) {
	m := valid()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("attachments")) {
		t.Fatalf("a message without attachments has an attachments key: %s", data)
	}
	m.Attachments = []notify.Attachment{{Name: "a.csv", ContentType: "text/csv", Data: []byte("a,b\r\n")}}
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	want := `"attachments":[{"name":"a.csv","contentType":"text/csv","size":5,"data":"YSxiDQo="}]`
	if !bytes.Contains(data, []byte(want)) {
		t.Fatalf("JSON = %s, want it to hold %s", data, want)
	}
	var back notify.Message
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(back.Attachments, m.Attachments) {
		t.Fatalf("round trip = %+v, want %+v", back.Attachments, m.Attachments)
	}
}
