// Package notifytest is the conformance suite of the notify.Notifier port.
// Every transport (notify/outbox, notify/ses) runs it, so that mail that
// goes out in -dev goes out the same way in AWS, and mail refused by one is
// refused by the other.
//
// It must never be imported by non-test code.
package notifytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

// Run checks n against the notify.Notifier contract.
//
// sent returns every message the transport has accepted so far, in any
// order, as the transport recorded it: To, Subject, the bodies it keeps and
// the attachments, in order, with their data; the other fields may be zero.
// A transport that keeps only one body (moto keeps the HTML part of Simple
// content when there is one, else the text) reports it as Text. Bodies are
// reported with the line breaks they were given: a transport that sends
// them as CRLF, as MIME wants, converts them back. Attachments must arrive
// byte for byte.
// Run marks each subject with a token unique to the run, so it finds its own
// messages among others and can run more than once against one transport.
func Run(t *testing.T, n notify.Notifier, sent func(t *testing.T) []notify.Message) {
	run := escrow.NewID(time.Now())
	seq := 0
	// newMessage returns a valid message whose subject carries a fresh
	// token, and the token.
	newMessage := func(subject string) (notify.Message, string) {
		seq++
		token := fmt.Sprintf("[%s-%d]", run, seq)
		now := time.Now()
		return notify.Message{
			ID:      escrow.NewID(now),
			To:      []string{"approver@example.com"},
			Subject: subject + " " + token,
			Text:    "Alice asks to view prod/db/password.\n",
			Kind:    "approval.request",
			Ref:     "REQ-" + run,
			Time:    now,
		}, token
	}
	// mine returns the sent messages whose subject holds token.
	mine := func(t *testing.T, token string) []notify.Message {
		t.Helper()
		var out []notify.Message
		for _, m := range sent(t) {
			if strings.Contains(m.Subject, token) {
				out = append(out, m)
			}
		}
		return out
	}
	// arrived checks that m was sent exactly once, intact.
	arrived := func(t *testing.T, m notify.Message, token string) {
		t.Helper()
		got := mine(t, token)
		if len(got) != 1 {
			t.Fatalf("%d messages with subject %q were sent, want 1", len(got), m.Subject)
		}
		g := got[0]
		if g.Subject != m.Subject {
			t.Errorf("subject = %q, want %q", g.Subject, m.Subject)
		}
		if w, h := addresses(t, m.To), addresses(t, g.To); !slices.Equal(w, h) {
			t.Errorf("recipients = %q, want %q", h, w)
		}
		switch {
		case g.HTML != "" || m.HTML == "":
			if g.Text != m.Text {
				t.Errorf("text body = %q, want %q", g.Text, m.Text)
			}
			if g.HTML != m.HTML {
				t.Errorf("html body = %q, want %q", g.HTML, m.HTML)
			}
		case g.Text != m.Text && g.Text != m.HTML: // one body kept, reported as Text
			t.Errorf("body = %q, want the text %q or the html %q", g.Text, m.Text, m.HTML)
		}
		if len(g.Attachments) != len(m.Attachments) {
			t.Fatalf("%d attachments arrived, want %d", len(g.Attachments), len(m.Attachments))
		}
		for i, w := range m.Attachments {
			h := g.Attachments[i]
			if h.Name != w.Name {
				t.Errorf("attachment %d: name = %q, want %q", i+1, h.Name, w.Name)
			}
			if !sameType(h.ContentType, w.ContentType) {
				t.Errorf("attachment %d: content type = %q, want %q", i+1, h.ContentType, w.ContentType)
			}
			if !bytes.Equal(h.Data, w.Data) {
				t.Errorf("attachment %d: %d bytes arrived, not the %d sent (first difference at byte %d)",
					i+1, len(h.Data), len(w.Data), firstDiff(h.Data, w.Data))
			}
		}
	}
	send := func(t *testing.T, m notify.Message) {
		t.Helper()
		if err := n.Send(context.Background(), m); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}

	t.Run("Text", func(t *testing.T) {
		m, token := newMessage("Genehmigung erbeten: Zugriff für alice — prod/db ✓")
		// What mail transports like to mangle: non-ASCII, a lone dot
		// (SMTP's end of data), "From " (mbox), long lines, and a link
		// with a query string.
		m.Text = "Hello Bob,\n\nalice asks to view prod/db/password from 22:00 to 23:00 UTC.\n" +
			"Comment: CHG0001234 — Datenbank-Wartung, ünïcödé ✓\n.\nFrom the policy: " +
			strings.Repeat("long line ", 120) + "\n\n" +
			"Decide: https://escrow.example.com/decide/01HZX3?id=01HZX4&via=mail\n"
		send(t, m)
		arrived(t, m, token)
	})

	t.Run("HTML", func(t *testing.T) {
		m, token := newMessage("Request approved")
		m.Kind = "request.outcome"
		m.Text = "Your request was approved.\nhttps://escrow.example.com/requests/01HZX3\n"
		m.HTML = `<p>Your request was <b>approved</b>.</p><p><a href="https://escrow.example.com/requests/01HZX3?a=1&amp;b=2">Open</a></p>`
		send(t, m)
		arrived(t, m, token)
	})

	t.Run("Recipients", func(t *testing.T) {
		m, token := newMessage("Three approvers")
		m.To = []string{"Carol Example <carol@example.com>", "bob@example.org", "dave+escrow@sub.example.net"}
		send(t, m)
		arrived(t, m, token)
	})

	// A scheduled report: a CSV as RFC 4180 writes it (CRLF), with what
	// transports like to mangle in a file: a byte order mark, non-ASCII,
	// a quoted field holding a bare LF, a lone dot and "From " at the
	// start of lines, a line longer than SMTP's 998, and no final line
	// break.
	csv := []byte("\ufeffid,requester,secret,decision,comment\r\n" +
		"01HZX3,alice,prod/db/password,approved,\"Datenbank-Wartung, ünïcödé ✓\"\r\n" +
		"01HZX4,bob,prod/api/key,denied,\"two\nlines\"\r\n" +
		".\r\nFrom the policy,,,,\r\n" +
		"01HZX5,carol,prod/db/password,expired," + strings.Repeat("long ", 300) + "\r\n" +
		"01HZX6,dave,prod/ssh/root,approved,\"=?utf-8?q?not=20a=20header?=\"")

	t.Run("Attachment", func(t *testing.T) {
		m, token := newMessage("Weekly access report")
		m.Kind = "report.scheduled"
		m.Text = "The weekly access report is attached.\n"
		m.Attachments = []notify.Attachment{{Name: "access-2026-W47.csv", ContentType: "text/csv; charset=utf-8; header=present", Data: csv}}
		send(t, m)
		arrived(t, m, token)
	})

	t.Run("Attachments", func(t *testing.T) {
		m, token := newMessage("Monthly compliance pack")
		m.Kind = "report.scheduled"
		m.Text = "Five files are attached.\n"
		m.HTML = "<p>Five files are <b>attached</b>.</p>"
		every := make([]byte, 256*3) // every byte value: the data is opaque
		for i := range every {
			every[i] = byte(i)
		}
		m.Attachments = []notify.Attachment{
			{Name: "access.csv", ContentType: "text/csv", Data: csv},
			{Name: "summary.json", ContentType: "application/json", Data: []byte(`{"requests":3,"approved":2}` + "\n")},
			{Name: "bytes.txt", ContentType: "text/plain", Data: every},
			{Name: "EMPTY.TXT", ContentType: "text/plain; charset=us-ascii", Data: []byte{}},
			{Name: "access_2026-11.v2.csv", ContentType: "Text/CSV; Charset=UTF-8", Data: []byte("a,b\r\n1,2\r\n")},
		}
		send(t, m)
		arrived(t, m, token)
	})

	t.Run("Concurrent", func(t *testing.T) {
		const count = 8
		msgs := make([]notify.Message, count)
		tokens := make([]string, count)
		for i := range msgs {
			msgs[i], tokens[i] = newMessage(fmt.Sprintf("Concurrent %d", i))
		}
		var wg sync.WaitGroup
		errs := make([]error, count)
		for i := range msgs {
			wg.Go(func() { errs[i] = n.Send(context.Background(), msgs[i]) })
		}
		wg.Wait()
		for i := range msgs {
			if errs[i] != nil {
				t.Fatalf("Send %d: %v", i, errs[i])
			}
			arrived(t, msgs[i], tokens[i])
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(m *notify.Message)
		}{
			{"no recipient", func(m *notify.Message) { m.To = nil }},
			{"empty recipient", func(m *notify.Message) { m.To = []string{""} }},
			{"not an address", func(m *notify.Message) { m.To = []string{"bob"} }},
			{"no domain", func(m *notify.Message) { m.To = []string{"bob@"} }},
			{"two addresses in one", func(m *notify.Message) { m.To = []string{"a@example.com, b@example.com"} }},
			{"header injection in recipient", func(m *notify.Message) { m.To = []string{"a@example.com\r\nBcc: evil@example.com"} }},
			{"folded display name", func(m *notify.Message) { m.To = []string{"\"Bob\r\n Bcc: evil@example.com\" <bob@example.com>"} }},
			{"non-ASCII address", func(m *notify.Message) { m.To = []string{"jörg@example.com"} }},
			{"too many recipients", func(m *notify.Message) {
				m.To = nil
				for i := range notify.MaxRecipients + 1 {
					m.To = append(m.To, fmt.Sprintf("user%d@example.com", i))
				}
			}},
			{"CRLF in subject", func(m *notify.Message) { m.Subject += "\r\nBcc: evil@example.com" }},
			{"LF in subject", func(m *notify.Message) { m.Subject += "\nBcc: evil@example.com" }},
			{"CR in subject", func(m *notify.Message) { m.Subject += "\rBcc: evil@example.com" }},
			{"NUL in subject", func(m *notify.Message) { m.Subject += "\x00" }},
			{"empty subject", func(m *notify.Message) { m.Subject = "" }},
			{"long subject", func(m *notify.Message) { m.Subject += strings.Repeat("x", notify.MaxSubject) }},
			{"empty text", func(m *notify.Message) { m.Text = "" }},
			{"text not UTF-8", func(m *notify.Message) { m.Text = "caf\xe9" }},
			{"html not UTF-8", func(m *notify.Message) { m.HTML = "<p>caf\xe9</p>" }},
			{"over 10 MB", func(m *notify.Message) { m.Text = strings.Repeat("a", notify.MaxSize+1) }},
			{"just over 10 MB in total", func(m *notify.Message) {
				m.Text = strings.Repeat("a", notify.MaxSize/2)
				m.HTML = strings.Repeat("b", notify.MaxSize/2)
			}},
			{"no id", func(m *notify.Message) { m.ID = "" }},
			{"path in id", func(m *notify.Message) { m.ID = "../../etc/passwd" }},
			{"no kind", func(m *notify.Message) { m.Kind = "" }},
			{"space in kind", func(m *notify.Message) { m.Kind = "approval request" }},
			{"slash in ref", func(m *notify.Message) { m.Ref = "a/b" }},
			{"no time", func(m *notify.Message) { m.Time = time.Time{} }},
			{"year 10000", func(m *notify.Message) { m.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},

			{"too many attachments", func(m *notify.Message) {
				for i := range notify.MaxAttachments + 1 {
					m.Attachments = append(m.Attachments, csvAttachment(fmt.Sprintf("report-%d.csv", i)))
				}
			}},
			{"attachment name with parent", attach("../report.csv", "text/csv")},
			{"attachment name with slash", attach("reports/report.csv", "text/csv")},
			{"attachment name with backslash", attach(`reports\report.csv`, "text/csv")},
			{"attachment name absolute", attach("/etc/report.csv", "text/csv")},
			{"attachment name with CRLF", attach("report\r\nBcc: evil@example.com.csv", "text/csv")},
			{"attachment name with NUL", attach("report\x00.csv", "text/csv")},
			{"attachment name with quote", attach(`report".csv`, "text/csv")},
			{"attachment name not ASCII", attach("bericht-für-jörg.csv", "text/csv")},
			{"attachment name encoded word", attach("=?utf-8?q?evil?=.csv", "text/csv")},
			{"attachment name hidden", attach(".report.csv", "text/csv")},
			{"attachment name only extension", attach(".csv", "text/csv")},
			{"attachment name empty", attach("", "text/csv")},
			{"attachment name too long", attach(strings.Repeat("r", notify.MaxAttachmentName-3)+".csv", "text/csv")},
			{"attachment name wrong extension", attach("report.exe", "text/csv")},
			{"attachment name extension of another type", attach("report.json", "text/csv")},
			{"attachment names the same but case", func(m *notify.Message) {
				m.Attachments = []notify.Attachment{csvAttachment("report.csv"), csvAttachment("Report.CSV")}
			}},
			{"attachment type html", attach("report.csv", "text/html")},
			{"attachment type binary", attach("report.csv", "application/octet-stream")},
			{"attachment type empty", attach("report.csv", "")},
			{"attachment type with CRLF", attach("report.csv", "text/csv\r\nBcc: evil@example.com")},
			{"attachment type unparsable", attach("report.csv", "text/csv; charset")},
			{"attachment type other charset", attach("report.csv", "text/csv; charset=iso-8859-1")},
			{"attachment type other parameter", attach("report.csv", "text/csv; name=evil.exe")},
			{"attachment over 10 MB once base64", func(m *notify.Message) {
				// Under the limit as bytes, over it as base64.
				a := csvAttachment("big.csv")
				a.Data = bytes.Repeat([]byte("a,b\r\n"), notify.MaxSize/5*3/4+1024)
				m.Attachments = []notify.Attachment{a}
			}},
			{"attachments over 10 MB together", func(m *notify.Message) {
				for i := range notify.MaxAttachments {
					a := csvAttachment(fmt.Sprintf("part-%d.csv", i))
					a.Data = bytes.Repeat([]byte{'x'}, notify.MaxSize/notify.MaxAttachments*3/4)
					m.Attachments = append(m.Attachments, a)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m, token := newMessage("Invalid")
				tc.change(&m)
				err := n.Send(context.Background(), m)
				if !errors.Is(err, escrow.ErrInvalid) {
					t.Fatalf("Send = %v, want an error wrapping escrow.ErrInvalid", err)
				}
				if got := mine(t, token); len(got) != 0 {
					t.Fatalf("a refused message was sent %d times", len(got))
				}
			})
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		m, token := newMessage("Cancelled")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := n.Send(ctx, m); err == nil {
			t.Fatal("Send with a cancelled context succeeded, want an error")
		}
		if got := mine(t, token); len(got) != 0 {
			t.Fatalf("a message sent with a cancelled context was sent %d times", len(got))
		}
	})
}

// csvAttachment returns a small valid CSV attachment named name.
func csvAttachment(name string) notify.Attachment {
	return notify.Attachment{Name: name, ContentType: "text/csv", Data: []byte("a,b\r\n1,2\r\n")}
}

// attach returns a change that attaches a CSV named name of type
// contentType, after a valid attachment.
func attach(name, contentType string) func(m *notify.Message) {
	return func(m *notify.Message) {
		a := csvAttachment(name)
		a.ContentType = contentType
		m.Attachments = []notify.Attachment{csvAttachment("ok.csv"), a}
	}
}

// sameType reports whether two content types are the same media type with
// the same parameters, as a transport may write them differently ("text/csv;
// charset=utf-8" and "Text/CSV; Charset=utf-8").
func sameType(a, b string) bool {
	at, ap, err := mime.ParseMediaType(a)
	if err != nil {
		return false
	}
	bt, bp, err := mime.ParseMediaType(b)
	return err == nil && at == bt && maps.EqualFunc(ap, bp, strings.EqualFold)
}

// firstDiff returns the index of the first byte where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// addresses returns the addr-specs of list, sorted, so that recipients
// compare by who receives the mail, whatever the transport does to display
// names (quoting, encoding) and order.
func addresses(t *testing.T, list []string) []string {
	t.Helper()
	out := make([]string, 0, len(list))
	for _, s := range list {
		a, err := mail.ParseAddress(s)
		if err != nil {
			t.Fatalf("recipient %q does not parse: %v", s, err)
		}
		out = append(out, a.Address)
	}
	slices.Sort(out)
	return out
}
