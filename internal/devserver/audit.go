package devserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/escrow-pam/escrow/internal/auditfeed"
	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/auditlog/dir"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
)

// auditSigner opens the digest signing key (a 32-byte seed in a 0600
// file), creating it on first use: the -dev stand-in for the AWS stack's
// signing key parameter.
func auditSigner(path string) (*auditlog.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var seed [32]byte
		if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create audit signing key: %w", err)
		}
		_, werr := f.Write(seed[:])
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return nil, fmt.Errorf("write audit signing key: %w", err)
		}
		return auditlog.NewSigner(seed), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit signing key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("audit signing key %s is %d bytes, want 32", path, len(b))
	}
	return auditlog.NewSigner([32]byte(b)), nil
}

// auditFeed builds what -dev does with new audit records: the SIEM file
// (if configured) and the digests in DataDir/digests, sealed every
// DigestPeriod. The returned closer closes the SIEM file.
func auditFeed(cfg Config, log escrow.AuditLog) (*auditfeed.Consumer, *auditfeed.Reader, io.Closer, error) {
	signer, err := auditSigner(filepath.Join(cfg.DataDir, "audit-signing.key"))
	if err != nil {
		return nil, nil, nil, err
	}
	digests, err := dir.Open(filepath.Join(cfg.DataDir, "digests"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open digest folder: %w", err)
	}
	period := cfg.DigestPeriod
	if period <= 0 {
		period = time.Minute
	}
	c := &auditfeed.Consumer{Digester: &auditfeed.Digester{Log: log, Store: digests, Signer: signer,
		Period: period, Grace: min(5*time.Second, period/2), Clock: escrow.SystemClock{}, Logger: cfg.Logger}}
	var closer io.Closer = io.NopCloser(nil)
	if cfg.SIEMFile != "" {
		name := cfg.SIEMFormat
		if name == "" {
			name = string(siem.JSON)
		}
		format, err := siem.ParseFormat(name)
		if err != nil {
			return nil, nil, nil, err
		}
		f, err := siem.OpenFile(cfg.SIEMFile, format)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open SIEM file: %w", err)
		}
		c.Sink, closer = f, f
	}
	return c, auditfeed.NewReader(digests, signer.PublicKeys(), log, nil, cfg.Logger), closer, nil
}

// runAuditFeed follows the log until ctx ends.
func runAuditFeed(ctx context.Context, log escrow.AuditLog, c *auditfeed.Consumer, every time.Duration, logger *slog.Logger) {
	auditfeed.Follow(ctx, log, c, time.Now().Add(-time.Second), every, logger)
}
