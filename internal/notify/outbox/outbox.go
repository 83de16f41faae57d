// Package outbox implements notify.Notifier for `escrow server -dev`: each
// message becomes one JSON file in a folder, one log line says it was sent,
// and List serves GET /dev/outbox. Nothing leaves the machine.
//
// It must never log a message body (bodies hold approval links), never
// leave a half-written file under a message's name, and never make the
// folder or its files readable by other users.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

const (
	// timeLayout is fixed-width UTC, so that file names sort by time.
	timeLayout = "20060102T150405.000000000Z"
	ext        = ".json"
	tmpPrefix  = ".tmp-"

	// DefaultLimit and MaxLimit bound List, as the other list APIs are.
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Outbox writes mail to a folder. It is safe for concurrent use; one
// process at a time may use a folder.
type Outbox struct {
	dir    string
	logger *slog.Logger

	mu   sync.Mutex
	sent map[string]bool // IDs with a file, for idempotency
}

var _ notify.Notifier = (*Outbox)(nil)

// Open returns an Outbox writing to dir, creating it (mode 0700) if needed
// and restricting an existing one to its owner. It removes temporary files
// a crash left behind and learns the IDs already sent, so that a restarted
// server still sends each ID once.
func Open(dir string, logger *slog.Logger) (*Outbox, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	o := &Outbox{dir: dir, logger: logger, sent: make(map[string]bool)}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("open outbox: remove temporary file: %w", err)
			}
			continue
		}
		if id, ok := idOf(name); ok {
			o.sent[id] = true
		}
	}
	return o, nil
}

// Dir returns the outbox folder.
func (o *Outbox) Dir() string { return o.dir }

// fileName is <time>-<id>.json.
func fileName(m notify.Message) string {
	return m.Time.UTC().Format(timeLayout) + "-" + m.ID + ext
}

// idOf returns the ID in a message file's name.
func idOf(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) < len(timeLayout)+2 || base[len(timeLayout)] != '-' {
		return "", false
	}
	return base[len(timeLayout)+1:], true
}

// Send writes m to the outbox and logs it. A second Send of the same ID is a
// no-op that returns nil. Returns an error wrapping escrow.ErrInvalid for a
// message notify.Validate refuses and escrow.ErrUnavailable if the file
// cannot be written.
func (o *Outbox) Send(ctx context.Context, m notify.Message) error {
	if err := notify.Validate(m); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return escrow.Wrap(escrow.CodeUnavailable, err, "mail outbox unavailable")
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil { // Validate rules out what JSON cannot encode
		return escrow.Wrap(escrow.CodeInternal, err, "encode message")
	}
	data = append(data, '\n')

	// One lock around check, write and record: two Sends of one ID must
	// not both write.
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent[m.ID] {
		o.logger.DebugContext(ctx, "mail already in outbox", "id", m.ID, "kind", m.Kind, "ref", m.Ref)
		return nil
	}
	name := fileName(m)
	if err := o.write(name, data); err != nil {
		return escrow.Wrap(escrow.CodeUnavailable, err, "mail outbox unavailable")
	}
	o.sent[m.ID] = true
	// Never the body: it holds the approval link.
	o.logger.InfoContext(ctx, "mail sent to outbox",
		"id", m.ID, "kind", m.Kind, "to", m.To, "subject", m.Subject, "ref", m.Ref, "file", name)
	return nil
}

// write writes data to name through a temporary file and a rename, so that
// a reader (or a crash) never sees half a message.
func (o *Outbox) write(name string, data []byte) (err error) {
	f, err := os.CreateTemp(o.dir, tmpPrefix+"*") // mode 0600
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync message: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close message: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(o.dir, name)); err != nil {
		return fmt.Errorf("rename message: %w", err)
	}
	return nil
}

// List returns up to limit messages about ref (every message if ref is
// empty), newest first. limit <= 0 means DefaultLimit; it is capped at
// MaxLimit. Files that are not messages are skipped with a warning (the
// folder is the user's to look into). Returns escrow.ErrUnavailable if the
// folder cannot be read.
func (o *Outbox) List(ctx context.Context, ref string, limit int) ([]notify.Message, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	entries, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("list outbox: %w", err), "mail outbox unavailable")
	}
	// ReadDir sorts by name, which is by time then ID: newest last.
	slices.Reverse(entries)
	out := []notify.Message{}
	for _, e := range entries {
		if len(out) == limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, escrow.Wrap(escrow.CodeUnavailable, err, "mail outbox unavailable")
		}
		if _, ok := idOf(e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		m, err := o.read(e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			o.logger.WarnContext(ctx, "outbox: skipping a file that is not a message", "file", e.Name(), "err", err)
			continue
		}
		if ref == "" || m.Ref == ref {
			out = append(out, m)
		}
	}
	return out, nil
}

func (o *Outbox) read(name string) (notify.Message, error) {
	var m notify.Message
	data, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode message: %w", err)
	}
	return m, nil
}
