package siem

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// TestParseCEF checks that the test parser is as strict as the fuzz
// target needs: a formatter bug must not parse.
func TestParseCEF(t *testing.T) {
	good := `CEF:0|V|P|1|a\|b|n\\|3|k=v w msg=x \= y\\ z\n k2=`
	c, err := parseCEF(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.header[4] != "a|b" || c.header[5] != `n\` || c.ext["k"] != "v w" || c.ext["msg"] != "x = y\\ z\n" || c.ext["k2"] != "" {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range []string{
		"CEF:0|V|P|1|a|n|3|k=v\n",   // line break
		"CEF:0|V|P|1|a|n|3|k=a=b",   // unescaped '=' in a value
		`CEF:0|V|P|1|a|n|3|k=a\tb`,  // undefined escape
		`CEF:0|V|P|1|a\=|n|3|k=v`,   // '=' needs no escape in a header
		"CEF:0|V|P|1|a|n|k=v",       // six header fields
		"CEF:0|V|P|1|a|n|3|k=v k=w", // repeated key
		"CEF:0|V|P|1|a|n|3|x k=v",   // text before the first key
		"CEF:0|V|P|1|a|n|3|k-1=v",   // key not alphanumeric
		`CEF:0|V|P|1|a|n|3|k=v\`,    // dangling backslash
	} {
		if _, err := parseCEF(bad); err == nil {
			t.Errorf("parseCEF(%q) succeeded", bad)
		}
	}
}

func records(n int, prefix string) []*escrow.AuditRecord {
	out := make([]*escrow.AuditRecord, n)
	for i := range out {
		r := fixture()
		r.ID = fmt.Sprintf("%s-%03d", prefix, i)
		r.Comment = "multi\nline | comment = " + r.ID
		out[i] = r
	}
	return out
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	recs := records(3, "J")
	if err := JSONLines(&buf).Publish(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(recs) || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(recs), buf.String())
	}
	for i, line := range lines {
		want, _ := MarshalEvent(recs[i])
		if line != string(want) {
			t.Errorf("line %d = %s, want %s", i, line, want)
		}
	}
}

func TestCEFLines(t *testing.T) {
	var buf bytes.Buffer
	recs := records(2, "C")
	if err := CEFLines(&buf).Publish(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	want := FormatCEF(recs[0], ProductVersion()) + "\n" + FormatCEF(recs[1], ProductVersion()) + "\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestPublishEmpty(t *testing.T) {
	w := &countingWriter{}
	if err := JSONLines(w).Publish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if w.writes != 0 {
		t.Fatalf("%d writes for no records", w.writes)
	}
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// A record that cannot be exported is skipped and named; the rest are
// written, with one Write.
func TestPublishSkipsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink func(io.Writer) *Lines
	}{{"json", JSONLines}, {"cef", CEFLines}} {
		t.Run(tc.name, func(t *testing.T) {
			w := &countingWriter{}
			recs := records(3, "S")
			recs[1] = nil
			err := tc.sink(w).Publish(context.Background(), recs)
			if !errors.Is(err, escrow.ErrInvalid) || !strings.Contains(err.Error(), "#1") {
				t.Fatalf("Publish = %v, want ErrInvalid naming #1", err)
			}
			if n := strings.Count(w.String(), "\n"); n != 2 || w.writes != 1 {
				t.Fatalf("%d lines in %d writes, want 2 in 1", n, w.writes)
			}
		})
	}
	w := &countingWriter{}
	recs := records(2, "T")
	recs[0].Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	err := JSONLines(w).Publish(context.Background(), recs)
	if !errors.Is(err, escrow.ErrInvalid) || !strings.Contains(err.Error(), "T-000") {
		t.Fatalf("Publish = %v, want ErrInvalid naming T-000", err)
	}
	if !strings.Contains(w.String(), `"id":"T-001"`) {
		t.Fatalf("the valid record was not written: %s", w.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPublishErrors(t *testing.T) {
	err := JSONLines(failWriter{}).Publish(context.Background(), records(1, "F"))
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Publish to a failing writer = %v, want ErrUnavailable", err)
	}
	if escrow.ErrorMessage(err) != "SIEM export unavailable" {
		t.Fatalf("message %q", escrow.ErrorMessage(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := &countingWriter{}
	if err := JSONLines(w).Publish(ctx, records(1, "F")); !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish after cancel = %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	if w.writes != 0 {
		t.Fatal("wrote after cancel")
	}
}

// unsyncWriter is a writer with no lock of its own: the race detector
// catches concurrent writes, and a batch split across writes shows up as
// lines out of their batch.
type unsyncWriter struct{ chunks [][]byte }

func (w *unsyncWriter) Write(p []byte) (int, error) {
	w.chunks = append(w.chunks, append([]byte(nil), p...))
	return len(p), nil
}

func TestLinesConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink func(io.Writer) *Lines
	}{{"json", JSONLines}, {"cef", CEFLines}} {
		t.Run(tc.name, func(t *testing.T) {
			w := &unsyncWriter{}
			s := tc.sink(w)
			const workers, batches, per = 8, 25, 4
			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					for b := range batches {
						if err := s.Publish(context.Background(), records(per, fmt.Sprintf("G%d-B%d", g, b))); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			if len(w.chunks) != workers*batches {
				t.Fatalf("%d writes, want %d", len(w.chunks), workers*batches)
			}
			for _, c := range w.chunks {
				lines := strings.Split(strings.TrimSuffix(string(c), "\n"), "\n")
				if len(lines) != per {
					t.Fatalf("a write holds %d lines, want %d", len(lines), per)
				}
				batch := ""
				for i, line := range lines {
					id := lineID(t, tc.name, line)
					b, n, _ := strings.Cut(id, "-0")
					if i == 0 {
						batch = b
					}
					if b != batch || n != fmt.Sprintf("%02d", i) {
						t.Fatalf("line %d of a write is %s, of batch %s", i, id, batch)
					}
				}
			}
		})
	}
}

func lineID(t *testing.T, format, line string) string {
	t.Helper()
	if format == "json" {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		return ev.ID
	}
	c, err := parseCEF(line)
	if err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return c.ext["externalId"]
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"json", "cef"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	for _, s := range []string{"", "JSON", "leef", "syslog"} {
		if _, err := ParseFormat(s); !errors.Is(err, escrow.ErrInvalid) {
			t.Errorf("ParseFormat(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for round := range 2 {
		f, err := OpenFile(path, JSON)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Publish(context.Background(), records(2, fmt.Sprintf("R%d", round))); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var ids []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		ids = append(ids, lineID(t, "json", sc.Text()))
	}
	if got, want := strings.Join(ids, " "), "R0-000 R0-001 R1-000 R1-001"; got != want {
		t.Fatalf("ids %s, want %s (appended)", got, want)
	}

	cefPath := filepath.Join(t.TempDir(), "audit.cef")
	f, err := OpenFile(cefPath, CEF)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(context.Background(), records(1, "C")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(cefPath); !strings.HasPrefix(string(b), "CEF:0|Escrow|Escrow|") {
		t.Fatalf("CEF file holds %q", b)
	}
	if err := f.Publish(context.Background(), records(1, "X")); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Publish after Close = %v, want ErrUnavailable", err)
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(filepath.Join(dir, "x"), "leef"); !errors.Is(err, escrow.ErrInvalid) {
		t.Errorf("unknown format: %v, want ErrInvalid", err)
	}
	if _, err := OpenFile("", JSON); !errors.Is(err, escrow.ErrInvalid) {
		t.Errorf("empty path: %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused OpenFile created the file: %v", err)
	}
	_, err := OpenFile(filepath.Join(dir, "missing", "audit.jsonl"), JSON)
	if escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Errorf("missing directory: %v, want CodeInternal", err)
	}
}

// "-" writes to standard output and Close leaves it open.
func TestOpenFileStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	t.Cleanup(func() { os.Stdout = old })
	f, err := OpenFile("-", CEF)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(context.Background(), records(1, "O")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("still open\n")); err != nil {
		t.Fatalf("Close closed stdout: %v", err)
	}
	w.Close()
	out, _ := io.ReadAll(r)
	if !strings.HasPrefix(string(out), "CEF:0|Escrow|Escrow|") || !strings.HasSuffix(string(out), "\nstill open\n") {
		t.Fatalf("stdout got %q", out)
	}
}
