package dir

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/auditlog/digeststoretest"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "digests"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	digeststoretest.Run(t, func(t *testing.T) auditlog.DigestStore { return open(t) })
}

// seal returns a chain of n empty hourly digests.
func seal(t *testing.T, n int) []*auditlog.SignedDigest {
	t.Helper()
	s, err := auditlog.NewSealer(auditlog.NewSigner([32]byte{1}), time.Hour, nil, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Advance(time.Date(2026, 1, 1, n, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestModesAndNames(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes on Windows")
	}
	s := open(t)
	for _, sd := range seal(t, 2) {
		if err := s.Put(t.Context(), sd); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(s.path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	want := []string{"0000000000000000000.json", "0000000000000000001.json"}
	if !slices.Equal(names, want) {
		t.Errorf("files %q, want exactly %q (no temporary file left)", names, want)
	}
}

func TestFileNamesSortBySeq(t *testing.T) {
	t.Parallel()
	seqs := []int64{0, 1, 9, 10, 99, 100, 1 << 40, 1<<63 - 1}
	for i := 1; i < len(seqs); i++ {
		a, b := FileName(seqs[i-1]), FileName(seqs[i])
		if a >= b {
			t.Errorf("FileName(%d) = %s does not sort before FileName(%d) = %s", seqs[i-1], a, seqs[i], b)
		}
		if got, ok := parseName(b); !ok || got != seqs[i] {
			t.Errorf("parseName(%s) = %d, %v", b, got, ok)
		}
	}
	for _, name := range []string{"1.json", "000000000000000000a.json", "0000000000000000001.json.tmp", ".tmp-123", "9999999999999999999.json"} {
		if seq, ok := parseName(name); ok {
			t.Errorf("parseName(%q) = %d, want not a digest file", name, seq)
		}
	}
}

// TestLatestReadsOnlyTheNewestFile: an unreadable older file does not
// matter to Latest.
func TestLatestReadsOnlyTheNewestFile(t *testing.T) {
	t.Parallel()
	s := open(t)
	chain := seal(t, 3)
	for _, sd := range chain {
		if err := s.Put(t.Context(), sd); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.path, FileName(1)), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.Latest(t.Context())
	if err != nil || got.Seq != 2 {
		t.Fatalf("Latest = %v, %v; want digest 2", got, err)
	}
}

// TestHostileFiles: files that are not digests, or not the digest their
// name says, are errors (or ignored, for names that are not digest names),
// never panics or wrong answers.
func TestHostileFiles(t *testing.T) {
	t.Parallel()
	chain := seal(t, 2)
	good, err := chain[1].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		content []byte
		wantErr bool
	}{
		{"garbage", FileName(1), []byte("\x00\xffnot json"), true},
		{"empty", FileName(1), nil, true},
		{"digest under another seq's name", FileName(7), good, true},
		{"not canonical", FileName(1), append([]byte(" "), good...), true},
		{"stray file", "notes.txt", []byte("hello"), false},
		{"temporary file", ".tmp-42", []byte("half a dig"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if err := s.Put(t.Context(), chain[0]); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.path, tt.file), tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := s.Latest(t.Context())
			if tt.wantErr {
				if !errors.Is(err, auditlog.ErrMalformed) {
					t.Fatalf("Latest = %v, %v; want ErrMalformed", got, err)
				}
			} else if err != nil || got.Seq != 0 {
				t.Fatalf("Latest = %v, %v; want digest 0", got, err)
			}
			_, err = s.Range(t.Context(), time.Time{}, time.Time{})
			if tt.wantErr != (err != nil) {
				t.Fatalf("Range error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestPutIntoMissingFolder(t *testing.T) {
	t.Parallel()
	s := open(t)
	if err := os.RemoveAll(s.path); err != nil {
		t.Fatal(err)
	}
	err := s.Put(t.Context(), seal(t, 1)[0])
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Put into a removed folder = %v, want ErrUnavailable", err)
	}
}
