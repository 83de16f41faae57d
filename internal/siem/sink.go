package siem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Sink exports audit records to a SIEM.
type Sink interface {
	// Publish exports records in order, one event each. Delivery is at
	// least once: after an error the caller may publish the same records
	// again, so consumers deduplicate on the event id (the record id).
	// Records that cannot be exported are reported in the error and the
	// others are still exported.
	//
	// Returns an error wrapping escrow.ErrInvalid if a record cannot be
	// exported at all (nil, a time outside years 0-9999, too large for the
	// destination): publishing it again will not help;
	// escrow.ErrUnavailable if the destination cannot take events now, or
	// ctx ended: retry later; and an error with escrow.CodeInternal for a
	// misconfiguration (no permission, a missing destination).
	Publish(ctx context.Context, records []*escrow.AuditRecord) error
}

// Format is an export format.
type Format string

// The formats.
const (
	JSON Format = "json" // one JSON event per line
	CEF  Format = "cef"  // one CEF line per record
)

// ParseFormat returns the Format named s ("json" or "cef"). Returns an
// error wrapping escrow.ErrInvalid for any other name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case JSON, CEF:
		return f, nil
	}
	return "", escrow.Errorf(escrow.CodeInvalid, "unknown SIEM format %q (want %q or %q)", s, JSON, CEF)
}

// Lines is a Sink that writes one line per record to a writer. It is safe
// for concurrent use: each Publish writes its lines with one Write, under
// a lock, so lines from concurrent calls never interleave.
type Lines struct {
	mu     sync.Mutex
	w      io.Writer
	format func(*escrow.AuditRecord) ([]byte, error)
}

var _ Sink = (*Lines)(nil)

// JSONLines returns a Sink that writes each record's JSON event (see
// MarshalEvent) to w as one line.
func JSONLines(w io.Writer) *Lines {
	return &Lines{w: w, format: MarshalEvent}
}

// CEFLines returns a Sink that writes each record to w as one CEF line
// (see FormatCEF), with ProductVersion as the Device Version. It writes
// bare CEF: adding a syslog header is the transport's job.
func CEFLines(w io.Writer) *Lines {
	version := ProductVersion()
	return &Lines{w: w, format: func(r *escrow.AuditRecord) ([]byte, error) {
		if r == nil {
			return nil, escrow.Errorf(escrow.CodeInvalid, "audit record is nil")
		}
		return []byte(FormatCEF(r, version)), nil
	}}
}

func newLines(w io.Writer, format Format) (*Lines, error) {
	switch format {
	case JSON:
		return JSONLines(w), nil
	case CEF:
		return CEFLines(w), nil
	}
	_, err := ParseFormat(string(format))
	return nil, err
}

// Publish writes one line per record with a single Write. It returns an
// error wrapping escrow.ErrInvalid naming the records it skipped (nil, or a
// time JSON cannot hold) after writing the rest, and one wrapping
// escrow.ErrUnavailable if ctx has ended (nothing is written) or the write
// failed (part of the lines may have been written).
func (l *Lines) Publish(ctx context.Context, records []*escrow.AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("publish audit events: %w", err), "SIEM export unavailable")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []byte
	var skipped []string
	for i, r := range records {
		line, err := l.format(r)
		if err != nil {
			skipped = append(skipped, recordName(i, r))
			continue
		}
		buf = append(append(buf, line...), '\n')
	}
	if len(buf) > 0 {
		if _, err := l.w.Write(buf); err != nil {
			return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("write audit events: %w", err), "SIEM export unavailable")
		}
	}
	if len(skipped) > 0 {
		return escrow.Wrap(escrow.CodeInvalid,
			fmt.Errorf("format audit events: skipped %s", strings.Join(skipped, ", ")),
			fmt.Sprintf("%d of %d audit records cannot be exported", len(skipped), len(records)))
	}
	return nil
}

// recordName names the i-th record of a batch in an error: by id, or by
// position when it has none.
func recordName(i int, r *escrow.AuditRecord) string {
	if r == nil || r.ID == "" {
		return fmt.Sprintf("#%d", i)
	}
	return r.ID
}

// File is a Sink that appends to a file (or writes to stdout).
type File struct {
	*Lines
	f     *os.File
	close bool
}

var _ Sink = (*File)(nil)

// OpenFile returns a Sink that appends lines in format to the file at
// path, creating it with mode 0600 (an existing file keeps its mode), or
// that writes to standard output if path is "-". Returns an error wrapping
// escrow.ErrInvalid for an unknown format or an empty path, and one with
// escrow.CodeInternal if the file cannot be opened (a missing directory, no
// permission). Close it when done.
func OpenFile(path string, format Format) (*File, error) {
	if path == "" {
		return nil, escrow.Errorf(escrow.CodeInvalid, "SIEM export path is empty (use \"-\" for standard output)")
	}
	if _, err := newLines(io.Discard, format); err != nil {
		return nil, err
	}
	f, closeIt := os.Stdout, false
	if path != "-" {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("open SIEM export file: %w", err), "SIEM export file cannot be opened")
		}
		closeIt = true
	}
	l, _ := newLines(f, format) // format checked above
	return &File{Lines: l, f: f, close: closeIt}, nil
}

// Close closes the file; it leaves standard output open.
func (f *File) Close() error {
	if !f.close {
		return nil
	}
	f.Lines.mu.Lock() // wait for a Publish in progress
	defer f.Lines.mu.Unlock()
	if err := f.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close SIEM export file: %w", err)
	}
	return nil
}
