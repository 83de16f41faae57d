package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/auditlog/dir"
	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) auditVerifyCmd() *cobra.Command {
	var from, to, since, keysFile, saveKeys, digestDir string
	cmd := &cobra.Command{
		Use:   "verify [--from T] [--to T | --since D] [--keys FILE]",
		Short: "Prove the audit log was not altered: check every record against the signed digests",
		Long: `Check a stretch of the audit log, offline, against its signed digests.

Every period of the log is sealed into a digest: a Merkle root over its
records' hashes, chained to the previous digest and signed with Ed25519 and
ML-DSA-65. verify fetches the digests and the records, then checks here,
not on the server: both signatures, the chain, and every record against its
leaf. It names any record that was altered, removed, inserted or reordered,
and any digest that was changed, removed or forged.

Pin the signing keys: save them once (--save-keys FILE), compare their key
id out of band, and verify with --keys FILE, so a compromised server cannot
hand you its own. On AWS the digests live in the stack's Object Lock bucket:
copy them (aws s3 cp --recursive s3://BUCKET/digests/ DIR) and pass
--digests DIR, with --keys from escrow audit keygen. Records newer than the last digest are counted as not yet
sealed. Exits 1 if anything is wrong. Admin or auditor only.`,
		Example: `  escrow audit verify --since 24h
  escrow audit verify --from 2026-11-01 --to 2026-12-01 --keys escrow-audit-keys.json
  escrow audit verify --save-keys escrow-audit-keys.json
  escrow audit verify --digests ./digests --keys escrow-audit-keys.json --since 7d`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fromT, toT time.Time
			var err error
			if since != "" {
				if from != "" {
					return usagef("--since and --from together make no sense")
				}
				d, err := parseSince(since)
				if err != nil {
					return err
				}
				fromT = time.Now().Add(-d)
			}
			if from != "" {
				if fromT, err = parseTimeArg("from", from); err != nil {
					return err
				}
			}
			if to != "" {
				if toT, err = parseTimeArg("to", to); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if digestDir != "" && keysFile == "" {
				return usagef("--digests needs --keys: pin the keys the digests must verify with")
			}
			return a.verifyAudit(cmd.Context(), c, fromT, toT, keysFile, saveKeys, digestDir)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start: RFC 3339 time or YYYY-MM-DD (default: the first digest)")
	cmd.Flags().StringVar(&to, "to", "", "end, exclusive (default: now)")
	cmd.Flags().StringVar(&since, "since", "", "start this long ago: 90m, 24h, 7d")
	cmd.Flags().StringVar(&keysFile, "keys", "", "verify with these pinned public keys (JSON, as --save-keys writes)")
	cmd.Flags().StringVar(&saveKeys, "save-keys", "", "write the server's public keys to FILE, to pin them")
	cmd.Flags().StringVar(&digestDir, "digests", "", "read the digests from this folder (a copy of the digest bucket) instead of the server")
	return cmd
}

func (a *app) verifyAudit(ctx context.Context, c *client.Client, from, to time.Time, keysFile, saveKeys, digestDir string) error {
	start := time.Now()
	var keys auditlog.PublicKeys
	var err error
	if keysFile != "" {
		b, rerr := os.ReadFile(keysFile)
		if rerr != nil {
			return fmt.Errorf("read --keys: %w", rerr)
		}
		if keys, err = auditlog.ParsePublicKeys(b); err != nil {
			return fmt.Errorf("--keys %s: %w", keysFile, err)
		}
	} else {
		if keys, err = c.AuditKeys(ctx); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "verifying with the server's keys %s (pin them: --save-keys FILE, then --keys FILE)\n", keys.KeyID())
	}
	if saveKeys != "" {
		b, err := keys.Marshal()
		if err != nil {
			return err
		}
		if err := os.WriteFile(saveKeys, b, 0o644); err != nil {
			return fmt.Errorf("write --save-keys: %w", err)
		}
		fmt.Fprintf(a.stderr, "wrote keys %s to %s\n", keys.KeyID(), saveKeys)
	}
	var ds []*auditlog.SignedDigest
	if digestDir != "" {
		st, err := dir.Open(digestDir)
		if err == nil {
			ds, err = st.Range(ctx, from, to)
		}
		if err != nil {
			return fmt.Errorf("--digests %s: %w", digestDir, err)
		}
	} else if ds, err = c.AuditDigests(ctx, from, to); err != nil {
		return err
	}
	if len(ds) == 0 {
		return fmt.Errorf("no digest covers that range: nothing is sealed yet, or the digests were removed")
	}
	// Fetch the records of the digests' whole span (a digest is checked
	// whole), and those after it up to --to (counted as not yet sealed).
	recFrom, recTo := ds[0].From, to
	recs, err := a.fetchAudit(ctx, c, recFrom, recTo)
	if err != nil {
		return err
	}
	seq := iter.Seq2[*escrow.AuditRecord, error](func(yield func(*escrow.AuditRecord, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	})
	rep, err := auditlog.Verify(ctx, seq, ds, keys)
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(a.stdout, "%d records in %d digests (seq %d to %d), %s to %s\n", rep.Records, rep.Digests,
		ds[0].Seq, ds[len(ds)-1].Seq, rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339))
	if rep.Unsealed > 0 {
		fmt.Fprintf(a.stdout, "%d newer records not yet sealed (the oldest from %s)\n", rep.Unsealed, rep.FirstUnsealed.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(a.stderr, "checked in %s (%.0f records/s)\n", took.Round(time.Millisecond), float64(rep.Records+rep.Unsealed)/took.Seconds())
	if rep.Clean() {
		fmt.Fprintln(a.stdout, "clean: every record matches its signed digest")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(a.stdout, p.String())
	}
	return fmt.Errorf("the audit log does not match its digests: %d problems", len(rep.Problems))
}

// fetchAudit reads every record of [from, to) through the API, in ID
// order, with a progress line for long ranges.
func (a *app) fetchAudit(ctx context.Context, c *client.Client, from, to time.Time) ([]*escrow.AuditRecord, error) {
	var out []*escrow.AuditRecord
	q := client.AuditQuery{From: from, To: to, Limit: 1000}
	last := time.Now()
	for {
		page, err := c.QueryAudit(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		if time.Since(last) > 200*time.Millisecond {
			fmt.Fprintf(a.stderr, "\rfetched %d records…", len(out))
			last = time.Now()
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	slices.SortFunc(out, func(x, y *escrow.AuditRecord) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

func (a *app) auditKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make a new audit digest signing key (for the AWS stack)",
		Long: `Make a new signing key for the audit digests: a 32-byte seed, written to
--out (mode 0600) as 64 hex digits for the stack's AuditSigningKey
parameter, and the public keys (Ed25519 and ML-DSA-65) printed as JSON, to
keep and to verify with (escrow audit verify --keys). Runs locally; nothing
is sent anywhere. escrow server -dev makes its own key.`,
		Example: `  escrow audit keygen --out audit-signing.key > escrow-audit-keys.json`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out is required: where to write the secret seed")
			}
			var seed [32]byte
			if _, err := rand.Read(seed[:]); err != nil {
				return err
			}
			defer clear(seed[:])
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			_, werr := fmt.Fprintln(f, hex.EncodeToString(seed[:]))
			if err := errors.Join(werr, f.Close()); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			b, err := auditlog.NewSigner(seed).PublicKeys().Marshal()
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			fmt.Fprintf(a.stderr, "wrote the signing seed to %s (keep it secret: it is the stack's AuditSigningKey)\n", out)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the secret seed to (created, mode 0600)")
	return cmd
}
