// Package dir is the folder adapter of auditlog.DigestStore: one file per
// signed digest, for the -dev process and for offline copies that
// `escrow audit verify` reads.
//
// A digest is written to a temporary file, synced, and then linked to its
// final name, which fails if the name exists: the write is exclusive (as
// O_EXCL) and a crash never leaves a half-written digest under a final
// name. The folder is created 0700 and digest files 0600.
//
// It must never overwrite, rename or delete a digest file, and it trusts
// nothing it reads: every file goes through auditlog.ParseSignedDigest, and
// signatures are checked by auditlog.Verify, not here.
package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// nameDigits pads Seq in file names: 19 digits hold every non-negative
// int64, so names sort as their Seqs do.
const (
	nameDigits = 19
	nameSuffix = ".json"
	tempPrefix = ".tmp-"
	// maxFileSize bounds what a (possibly hostile) digest file may make
	// Latest or Range read into memory.
	maxFileSize = 1 << 30
)

// Store keeps digests in one folder, as <Seq, 19 digits>.json.
type Store struct {
	path string
}

var _ auditlog.DigestStore = (*Store)(nil)

// Open returns the store in the folder path, creating it (mode 0700) if it
// does not exist.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create digest folder: %w", err)
	}
	return &Store{path: path}, nil
}

// FileName returns the name of the digest file for seq.
func FileName(seq int64) string {
	return fmt.Sprintf("%0*d%s", nameDigits, seq, nameSuffix)
}

// parseName returns the Seq a digest file name holds, or false for any
// other name (temporary files, files a person left there).
func parseName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, nameSuffix)
	if !ok || len(digits) != nameDigits {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	return seq, err == nil
}

// Put writes sd as FileName(sd.Seq). See auditlog.DigestStore.
func (s *Store) Put(ctx context.Context, sd *auditlog.SignedDigest) error {
	if sd == nil {
		return escrow.Errorf(escrow.CodeInvalid, "nil digest")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := sd.Marshal()
	if err != nil {
		return escrow.Wrap(escrow.CodeInvalid, err, "digest cannot be encoded")
	}
	final := filepath.Join(s.path, FileName(sd.Seq))
	if _, err := os.Lstat(final); err == nil {
		return escrow.Errorf(escrow.CodeConflict, "digest %d exists", sd.Seq)
	}
	tmp, err := os.CreateTemp(s.path, tempPrefix) // O_EXCL, mode 0600
	if err != nil {
		return unavailable(err, "create digest file")
	}
	defer os.Remove(tmp.Name()) // the final name is a second link; this drops the temporary one
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return unavailable(err, "write digest file")
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return unavailable(err, "sync digest file")
	}
	if err := tmp.Close(); err != nil {
		return unavailable(err, "close digest file")
	}
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return escrow.Errorf(escrow.CodeConflict, "digest %d exists", sd.Seq)
		}
		return unavailable(err, "link digest file")
	}
	if err := syncDir(s.path); err != nil {
		return unavailable(err, "sync digest folder")
	}
	return nil
}

func unavailable(err error, verb string) error {
	return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("%s: %w", verb, err), "digest store unavailable")
}

// syncDir makes the new link durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// seqs lists the Seqs of the digest files, ascending.
func (s *Store) seqs() ([]int64, error) {
	entries, err := os.ReadDir(s.path)
	if err != nil {
		return nil, unavailable(err, "list digest folder")
	}
	var seqs []int64
	for _, e := range entries {
		if seq, ok := parseName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs) // ReadDir sorts by name already; names sort as Seqs
	return seqs, nil
}

// read parses the digest file of seq and checks it holds that Seq.
func (s *Store) read(seq int64) (*auditlog.SignedDigest, error) {
	name := FileName(seq)
	f, err := os.Open(filepath.Join(s.path, name))
	if err != nil {
		return nil, unavailable(err, "open digest file")
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, unavailable(err, "read digest file")
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("read %s: %w: file larger than %d bytes", name, auditlog.ErrMalformed, maxFileSize)
	}
	sd, err := auditlog.ParseSignedDigest(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if sd.Seq != seq {
		return nil, fmt.Errorf("read %s: %w: file holds digest %d", name, auditlog.ErrMalformed, sd.Seq)
	}
	return sd, nil
}

// Latest reads only the file with the highest Seq. See
// auditlog.DigestStore.
func (s *Store) Latest(ctx context.Context) (*auditlog.SignedDigest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seqs, err := s.seqs()
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, escrow.Errorf(escrow.CodeNotFound, "no audit digest")
	}
	return s.read(seqs[len(seqs)-1])
}

// Range finds the first digest by binary search over the files (digests of
// one chain have periods in Seq order), then reads forward until a digest
// starts at or after to. See auditlog.DigestStore.
func (s *Store) Range(ctx context.Context, from, to time.Time) ([]*auditlog.SignedDigest, error) {
	seqs, err := s.seqs()
	if err != nil {
		return nil, err
	}
	return auditlog.RangeOf(ctx, len(seqs), func(i int) (*auditlog.SignedDigest, error) { return s.read(seqs[i]) }, from, to)
}
