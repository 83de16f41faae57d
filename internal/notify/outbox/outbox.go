// Package outbox implements notify.Notifier for `escrow server -dev`: each
// message becomes one JSON file in a folder, one log line says it was sent,
// and List serves GET /dev/outbox. Nothing leaves the machine.
//
// A message is <time>-<id>.json (time in UTC, fixed width, so that names
// sort by time). A message with attachments also has a folder beside it,
// <time>-<id>/, holding each attachment as a file under its name, as the
// recipient would save it (open the CSV from there); the JSON file lists
// their names, content types and sizes. List reads the files back into
// the messages' Attachments.
//
// It must never log a message body or attachment (bodies hold approval
// links, attachments compliance reports), never leave a half-written file
// or folder under a message's name, and never make the folder or its files
// readable by other users.
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
	files := make(map[string]bool)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("open outbox: remove temporary file: %w", err)
			}
			continue
		}
		if id, ok := idOf(name); ok {
			o.sent[id] = true
			files[name] = true
		}
	}
	// An attachment folder without its message file is what a crash
	// between the two renames of Send leaves: that message was not sent.
	for _, e := range entries {
		if _, ok := idOf(e.Name() + ext); ok && e.IsDir() && !files[e.Name()+ext] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("open outbox: remove unsent attachments: %w", err)
			}
		}
	}
	return o, nil
}

// Dir returns the outbox folder.
func (o *Outbox) Dir() string { return o.dir }

// baseName is <time>-<id>: the name of m's attachment folder, and of its
// file without the extension.
func baseName(m notify.Message) string {
	return m.Time.UTC().Format(timeLayout) + "-" + m.ID
}

// fileName is <time>-<id>.json.
func fileName(m notify.Message) string {
	return baseName(m) + ext
}

// record is what a message file holds: the message, its attachments
// without their data (in the folder beside it).
type record struct {
	notify.Message
	Attachments []attachmentFile `json:"attachments,omitempty"` // hides Message.Attachments
}

type attachmentFile struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	Size        int    `json:"size"`
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
	rec := record{Message: m}
	for _, a := range m.Attachments {
		rec.Attachments = append(rec.Attachments, attachmentFile{Name: a.Name, ContentType: a.ContentType, Size: len(a.Data)})
	}
	data, err := json.MarshalIndent(rec, "", "  ")
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
	// The attachments first, the message file last: the message is sent
	// when its file appears, whole.
	if len(m.Attachments) > 0 {
		if err := o.writeAttachments(baseName(m), m.Attachments); err != nil {
			return escrow.Wrap(escrow.CodeUnavailable, err, "mail outbox unavailable")
		}
	}
	if err := o.write(name, data); err != nil {
		if len(m.Attachments) > 0 {
			os.RemoveAll(filepath.Join(o.dir, baseName(m))) // else Open removes it
		}
		return escrow.Wrap(escrow.CodeUnavailable, err, "mail outbox unavailable")
	}
	o.sent[m.ID] = true
	// Never the body (it holds the approval link) nor the attachments.
	o.logger.InfoContext(ctx, "mail sent to outbox",
		"id", m.ID, "kind", m.Kind, "to", m.To, "subject", m.Subject, "ref", m.Ref, "file", name,
		"attachments", len(m.Attachments))
	return nil
}

// writeAttachments writes as, as files named after them, into the folder
// base, through a temporary folder and a rename, so that the folder is
// whole or absent.
func (o *Outbox) writeAttachments(base string, as []notify.Attachment) (err error) {
	tmp, err := os.MkdirTemp(o.dir, tmpPrefix+"*") // mode 0700
	if err != nil {
		return fmt.Errorf("create temporary folder: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, a := range as {
		// Validate allows only a plain file name ("report.csv").
		if err := writeFile(filepath.Join(tmp, a.Name), a.Data); err != nil {
			return err
		}
	}
	dst := filepath.Join(o.dir, base)
	// Whatever is there is a failed Send's: no message file names it, and
	// its ID is not sent.
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("remove unsent attachments: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("rename attachments: %w", err)
	}
	return nil
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create attachment: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write attachment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync attachment: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close attachment: %w", err)
	}
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

// read reads the message file name and its attachments.
func (o *Outbox) read(name string) (notify.Message, error) {
	var rec record
	data, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil {
		return rec.Message, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec.Message, fmt.Errorf("decode message: %w", err)
	}
	m := rec.Message
	base := strings.TrimSuffix(name, ext)
	for i, a := range rec.Attachments {
		// The file is the user's to edit: a name must not lead out of
		// the message's folder.
		if !filepath.IsLocal(a.Name) || filepath.Base(a.Name) != a.Name {
			return m, fmt.Errorf("attachment %d: name is not a file name", i+1)
		}
		data, err := os.ReadFile(filepath.Join(o.dir, base, a.Name))
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path holds the attachment's name
			}
			// %v: a missing attachment makes a broken message, not one
			// removed while List ran (fs.ErrNotExist).
			return m, fmt.Errorf("read attachment %d: %v", i+1, err)
		}
		if len(data) != a.Size {
			return m, fmt.Errorf("attachment %d has %d bytes, its message says %d", i+1, len(data), a.Size)
		}
		m.Attachments = append(m.Attachments, notify.Attachment{Name: a.Name, ContentType: a.ContentType, Data: data})
	}
	return m, nil
}
