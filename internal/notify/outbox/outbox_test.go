package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
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
	// The suite's bodies hold links, its attachments are CSV files; none
	// may reach the log.
	for _, rec := range logs.lines(t) {
		line, _ := json.Marshal(rec)
		if strings.Contains(string(line), "https://") {
			t.Fatalf("log line holds a body: %s", line)
		}
		if strings.Contains(string(line), ".csv") || strings.Contains(string(line), "requester") {
			t.Fatalf("log line holds an attachment: %s", line)
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

func withAttachments(at time.Time) notify.Message {
	m := message("Weekly access report", "REQ1", at)
	m.Kind = "report.scheduled"
	m.Attachments = []notify.Attachment{
		{Name: "access-2026-W47.csv", ContentType: "text/csv; charset=utf-8; header=present",
			Data: []byte("id,requester,decision\r\n01HZX3,alice,approved\r\n")},
		{Name: "summary.json", ContentType: "application/json", Data: []byte(`{"requests":1}`)},
	}
	return m
}

// TestAttachmentFiles pins the layout a person reads: the message file
// lists the attachments, whose files sit in the folder beside it.
func TestAttachmentFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, logs := open(t, dir)
	m := withAttachments(time.Date(2026, 11, 22, 9, 30, 15, 0, time.UTC))
	if err := o.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	base := "20261122T093015.000000000Z-" + m.ID
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{base, base + ".json"}; !slices.Equal(names, want) {
		t.Fatalf("outbox holds %q, want %q", names, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, base)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("attachment folder mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	for _, a := range m.Attachments {
		path := filepath.Join(dir, base, a.Name)
		data, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(data, a.Data) {
			t.Fatalf("%s holds %q (%v), want %q", path, data, err, a.Data)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode = %v (%v), want 0600", path, fi.Mode().Perm(), err)
		}
	}
	// The message file names the attachments; their data is in the files.
	data, err := os.ReadFile(filepath.Join(dir, base+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Attachments []map[string]any `json:"attachments"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatalf("message file: %v", err)
	}
	want := []map[string]any{
		{"name": "access-2026-W47.csv", "contentType": "text/csv; charset=utf-8; header=present", "size": float64(len(m.Attachments[0].Data))},
		{"name": "summary.json", "contentType": "application/json", "size": float64(len(m.Attachments[1].Data))},
	}
	if !reflect.DeepEqual(file.Attachments, want) {
		t.Fatalf("message file lists attachments %v, want %v", file.Attachments, want)
	}
	// List reads them back, and GET /dev/outbox shows them as
	// notify.Attachment marshals: name, content type, size and data.
	msgs, err := o.List(context.Background(), "", 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("List = %d messages, %v", len(msgs), err)
	}
	got := msgs[0]
	got.Time = m.Time
	if !equal(got, m) {
		t.Fatalf("List = %+v, want %+v", got, m)
	}
	served, _ := json.Marshal(map[string]any{"messages": msgs})
	for _, s := range []string{`"name":"summary.json"`, `"contentType":"application/json"`, `"size":14`, `"data":"eyJyZXF1ZXN0cyI6MX0="`} {
		if !bytes.Contains(served, []byte(s)) {
			t.Errorf("GET /dev/outbox would serve %s, without %s", served, s)
		}
	}
	// One log line, with the count of attachments but none of them.
	lines := logs.lines(t)
	if len(lines) != 1 || lines[0]["attachments"] != float64(2) {
		t.Fatalf("log = %v, want one line with 2 attachments", lines)
	}
	raw, _ := json.Marshal(lines[0])
	if bytes.Contains(raw, []byte("access-2026")) || bytes.Contains(raw, []byte("requester")) {
		t.Fatalf("log line holds an attachment: %s", raw)
	}
}

// A crash can leave a temporary folder, or an attachment folder whose
// message file was never written: Open removes both, and keeps the rest.
func TestOpenRemovesUnsentAttachments(t *testing.T) {
	dir := t.TempDir()
	o, _ := open(t, dir)
	sent := withAttachments(time.Now())
	if err := o.Send(context.Background(), sent); err != nil {
		t.Fatalf("Send: %v", err)
	}
	unsent := "20261122T093015.000000000Z-01JDX9V7M3Q8K2ZB4W6Y5T0R1S"
	for _, d := range []string{unsent, ".tmp-123"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "half.csv"), []byte("a,"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "mine"), 0o700); err != nil { // not the outbox's
		t.Fatal(err)
	}
	o, _ = open(t, dir)
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 || slices.Contains(names, unsent) || slices.Contains(names, ".tmp-123") || !slices.Contains(names, "mine") {
		t.Fatalf("outbox holds %q after Open, want the sent message, its folder and mine", names)
	}
	if msgs, err := o.List(context.Background(), "", 0); err != nil || len(msgs) != 1 || len(msgs[0].Attachments) != 2 {
		t.Fatalf("List = %+v, %v; want the sent message with its attachments", msgs, err)
	}
}

// A message whose attachments cannot be read back as written is skipped
// with a warning, like any file that is not a message; a name in the file
// never leads out of the message's folder.
func TestListSkipsBrokenAttachments(t *testing.T) {
	dir := t.TempDir()
	o, logs := open(t, dir)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var bases []string
	for i := range 4 {
		m := withAttachments(at.Add(time.Duration(i) * time.Minute))
		m.Subject = fmt.Sprintf("m%d", i)
		if err := o.Send(context.Background(), m); err != nil {
			t.Fatalf("Send: %v", err)
		}
		bases = append(bases, m.Time.UTC().Format("20060102T150405.000000000Z")+"-"+m.ID)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.csv"), []byte("not for the outbox"), 0o600); err != nil {
		t.Fatal(err)
	}
	// m0: an attachment file removed; m1: one edited to another size;
	// m2: its file names an attachment outside the folder.
	if err := os.Remove(filepath.Join(dir, bases[0], "summary.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bases[1], "summary.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, bases[2]+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte(`"name": "summary.json"`), []byte(`"name": "../secret.csv"`), 1)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	msgs, err := o.List(context.Background(), "", 0)
	if err != nil || len(msgs) != 1 || msgs[0].Subject != "m3" {
		t.Fatalf("List = %+v, %v; want m3 only", msgs, err)
	}
	warnings := 0
	for _, l := range logs.lines(t) {
		if l["level"] == "WARN" {
			warnings++
			if raw, _ := json.Marshal(l); bytes.Contains(raw, []byte("summary")) || bytes.Contains(raw, []byte("secret")) {
				t.Errorf("warning names an attachment: %s", raw)
			}
		}
	}
	if warnings != 3 {
		t.Fatalf("%d warnings, want 3", warnings)
	}
}

// When the message file cannot be written, the attachments written before
// it are removed, and a retry sends the message whole.
func TestAttachmentsOfFailedSend(t *testing.T) {
	dir := t.TempDir()
	o, _ := open(t, dir)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	m := withAttachments(at)
	base := "20261122T100000.000000000Z-" + m.ID
	// A folder where the message file goes: the rename onto it fails.
	if err := os.Mkdir(filepath.Join(dir, base+".json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), m); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Send = %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(filepath.Join(dir, base)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("attachments of the failed Send remain: stat = %v", err)
	}
	if err := os.Remove(filepath.Join(dir, base+".json")); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), m); err != nil {
		t.Fatalf("retry: %v", err)
	}
	msgs, err := o.List(context.Background(), "", 0)
	if err != nil || len(msgs) != 1 || len(msgs[0].Attachments) != 2 {
		t.Fatalf("List after retry = %+v, %v", msgs, err)
	}
}
