package ses

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/escrow-pam/escrow/internal/notify"
)

var update = flag.Bool("update", false, "rewrite testdata/*.eml from the messages in raw_test.go")

// fixedBoundaries makes s's MIME boundaries known: b1, b2, ...
func fixedBoundaries(s *SES) {
	n := 0
	s.boundary = func() string {
		n++
		return fmt.Sprintf("escrow-boundary-%d", n)
	}
}

func withAttachments() notify.Message {
	m := message()
	m.To = []string{"bob@example.com", "Jörg Müller <joerg@example.com>"}
	m.Subject = "Wöchentlicher Zugriffsbericht"
	m.Kind = "report.scheduled"
	m.Text = "The weekly access report is attached.\nDecide: https://escrow.example.com/decide/SECRET-LINK-ID\n"
	m.Attachments = []notify.Attachment{
		{Name: "access-2026-W47.csv", ContentType: "text/csv; charset=utf-8; header=present",
			Data: []byte("id,requester,decision\r\n01HZX3,alice,approved\r\n01HZX4,jörg,denied\r\n")},
		{Name: "summary.json", ContentType: "application/json", Data: []byte(`{"requests":2}`)},
	}
	return m
}

// TestRawGolden pins the MIME layout (see rawMessage) with known-answer
// messages: text only, and text with HTML.
func TestRawGolden(t *testing.T) {
	html := withAttachments()
	html.HTML = "<p>The weekly access report is <b>attached</b>.</p>"
	for name, m := range map[string]notify.Message{
		"raw_text.eml": withAttachments(),
		"raw_html.eml": html,
	} {
		t.Run(name, func(t *testing.T) {
			s := New(nil, "Escrow Reports <escrow@example.com>", "")
			fixedBoundaries(s)
			in, err := s.input(m)
			if err != nil {
				t.Fatalf("input: %v", err)
			}
			got := in.Content.Raw.Data
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("raw message differs from %s (run with -update to rewrite it):\n%s", path, got)
			}
		})
	}
}

// TestRawInput: a message with attachments goes out as Raw content, with
// the sender, recipients, tags and configuration set of Simple content.
func TestRawInput(t *testing.T) {
	s := New(nil, "Escrow <escrow@example.com>", "escrow-mail")
	m := withAttachments()
	raw, err := s.input(m)
	if err != nil {
		t.Fatalf("input: %v", err)
	}
	m.Attachments = nil
	simple, err := s.input(m)
	if err != nil {
		t.Fatalf("input: %v", err)
	}
	if c := raw.Content; c.Raw == nil || len(c.Raw.Data) == 0 || c.Simple != nil || c.Template != nil {
		t.Fatalf("content with attachments is not Raw: %+v", c)
	}
	if simple.Content.Simple == nil || simple.Content.Raw != nil {
		t.Fatalf("content without attachments is not Simple: %+v", simple.Content)
	}
	raw.Content, simple.Content = nil, nil
	if !reflect.DeepEqual(raw, simple) {
		t.Fatalf("Raw input %+v differs from Simple input %+v beyond the content", raw, simple)
	}
}
