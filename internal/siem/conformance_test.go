package siem_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/escrow-pam/escrow/internal/siem"
	"github.com/escrow-pam/escrow/internal/siem/siemtest"
)

// decodeLines reads one JSON event per line.
func decodeLines(t *testing.T, b []byte) []siem.Event {
	t.Helper()
	var out []siem.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev siem.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lockedBuffer lets the suite read what the sink wrote.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func TestConformanceJSONLines(t *testing.T) {
	var buf lockedBuffer
	siemtest.Run(t, siem.JSONLines(&buf), func(t *testing.T) []siem.Event { return decodeLines(t, buf.Bytes()) })
}

func TestConformanceFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	f, err := siem.OpenFile(path, siem.JSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	siemtest.Run(t, f, func(t *testing.T) []siem.Event {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return decodeLines(t, b)
	})
}
