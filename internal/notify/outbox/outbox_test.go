package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
	"github.com/escrow-pam/escrow/internal/notify/notifytest"
	"github.com/escrow-pam/escrow/internal/notify/outbox"
)

// syncBuffer is a log sink safe for the suite's concurrent sends.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log records written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, rec)
	}
	return out
}

func open(t *testing.T, dir string) (*outbox.Outbox, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	o, err := outbox.Open(dir, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return o, logs
}

func message(subject, ref string, at time.Time) notify.Message {
	return notify.Message{
		ID:      escrow.NewID(at),
		To:      []string{"bob@example.com"},
		Subject: subject,
		Text:    "Decide: https://escrow.example.com/decide/SECRET-LINK-ID\n",
		Kind:    "approval.request",
		Ref:     ref,
		Time:    at,
	}
}

func TestConformance(t *testing.T) {
	o, logs := open(t, filepath.Join(t.TempDir(), "outbox"))
	notifytest.Run(t, o, func(t *testing.T) []notify.Message {
		t.Helper()
		msgs, err := o.List(context.Background(), "", outbox.MaxLimit)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		return msgs
	})
	// The suite's bodies hold links; none may reach the log.
	for _, rec := range logs.lines(t) {
		line, _ := json.Marshal(rec)
		if strings.Contains(string(line), "https://") {
			t.Fatalf("log line holds a body: %s", line)
		}
	}
}

func TestFilesAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, _ := open(t, dir)
	at := time.Date(2026, 11, 22, 9, 30, 15, 123456789, time.FixedZone("CET", 3600))
	m := message("Approve", "REQ1", at)
	m.HTML = "<p>Approve</p>"
	if err := o.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ReadDir = %v, %v; want one file", entries, err)
	}
	want := "20261122T083015.123456789Z-" + m.ID + ".json" // UTC, fixed width
	if entries[0].Name() != want {
		t.Fatalf("file name = %q, want %q", entries[0].Name(), want)
	}
	fi, err := entries[0].Info()
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	data, err := os.ReadFile(filepath.Join(dir, want))
	if err != nil {
		t.Fatal(err)
	}
	var got notify.Message
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("file is not a JSON message: %v", err)
	}
	if !got.Time.Equal(m.Time) {
		t.Fatalf("time = %v, want %v", got.Time, m.Time)
	}
	got.Time = m.Time
	if !equal(got, m) {
		t.Fatalf("file holds %+v, want %+v", got, m)
	}
}

func equal(a, b notify.Message) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestOpenTightensAndCleans(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".tmp-12345")
	if err := os.WriteFile(tmp, []byte(`{"half":`), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file: stat = %v", err)
	}
}

func TestSameIDTwice(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	o, logs := open(t, dir)
	m := message("First", "REQ1", time.Now())
	if err := o.Send(ctx, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	again := m
	again.Subject = "Second"
	again.Time = m.Time.Add(time.Second) // another file name, same ID
	if err := o.Send(ctx, again); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	// A restarted server remembers what it sent.
	o2, _ := open(t, dir)
	if err := o2.Send(ctx, again); err != nil {
		t.Fatalf("Send after reopen: %v", err)
	}
	msgs, err := o2.List(ctx, "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(msgs) != 1 || msgs[0].Subject != "First" {
		t.Fatalf("List = %+v, want only the first message", msgs)
	}
	if n := len(logs.lines(t)); n != 1 { // the duplicate logs at Debug only
		t.Fatalf("%d log lines at Info, want 1", n)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	o, _ := open(t, t.TempDir())
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	// Sent out of time order; List orders by the messages' times.
	for _, s := range []struct {
		subject, ref string
		offset       time.Duration
	}{
		{"b", "REQ1", 2 * time.Minute},
		{"a", "REQ1", 1 * time.Minute},
		{"c", "REQ2", 3 * time.Minute},
		{"d", "REQ1", 4 * time.Minute},
	} {
		if err := o.Send(ctx, message(s.subject, s.ref, base.Add(s.offset))); err != nil {
			t.Fatalf("Send %s: %v", s.subject, err)
		}
	}
	// Not messages: skipped.
	for name, data := range map[string]string{
		"notes.txt":                              "hello",
		"20261122T110000.000000000Z-BROKEN.json": "{",
	} {
		if err := os.WriteFile(filepath.Join(o.Dir(), name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	subjects := func(ref string, limit int) string {
		t.Helper()
		msgs, err := o.List(ctx, ref, limit)
		if err != nil {
			t.Fatalf("List(%q, %d): %v", ref, limit, err)
		}
		var s []string
		for _, m := range msgs {
			s = append(s, m.Subject)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		ref   string
		limit int
		want  string
	}{
		{"", 0, "d,c,b,a"},
		{"", 2, "d,c"},
		{"REQ1", 0, "d,b,a"},
		{"REQ1", 2, "d,b"},
		{"REQ2", 10, "c"},
		{"REQ9", 10, ""},
	} {
		if got := subjects(tc.ref, tc.limit); got != tc.want {
			t.Errorf("List(%q, %d) = %q, want %q", tc.ref, tc.limit, got, tc.want)
		}
	}
}

func TestLogLine(t *testing.T) {
	o, logs := open(t, t.TempDir())
	m := message("Approve alice", "REQ7", time.Now())
	m.To = []string{"bob@example.com", "carol@example.com"}
	m.HTML = `<a href="https://escrow.example.com/decide/SECRET-LINK-ID">Decide</a>`
	if err := o.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	lines := logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1", len(lines))
	}
	l := lines[0]
	to, _ := l["to"].([]any)
	if l["kind"] != m.Kind || l["subject"] != m.Subject || l["ref"] != m.Ref || l["id"] != m.ID ||
		len(to) != 2 || to[0] != "bob@example.com" || to[1] != "carol@example.com" {
		t.Fatalf("log line = %v, want kind, to, subject, ref and id", l)
	}
	raw, _ := json.Marshal(l)
	if strings.Contains(string(raw), "SECRET-LINK-ID") {
		t.Fatalf("log line holds the body: %s", raw)
	}
	if !regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-` + m.ID + `\.json$`).MatchString(l["file"].(string)) {
		t.Fatalf("log names file %v", l["file"])
	}
}

func TestUnavailable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, _ := open(t, dir)
	// The folder vanishes and a file takes its place: nothing can be
	// written (permissions would not stop root, who runs CI).
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := message("Lost", "REQ1", time.Now())
	if err := o.Send(context.Background(), m); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Send = %v, want ErrUnavailable", err)
	}
	if _, err := o.List(context.Background(), "", 0); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("List = %v, want ErrUnavailable", err)
	}
	// A failed Send does not count as sent: once the folder is back, the
	// retry goes out.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), m); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if msgs, err := o.List(context.Background(), "", 0); err != nil || len(msgs) != 1 {
		t.Fatalf("List after retry = %d messages, %v; want 1", len(msgs), err)
	}
}

func TestOpenRefusesAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Open(path, nil); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}
