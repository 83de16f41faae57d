// Package auditfeed is what happens to audit records after they are
// written: each is exported to the SIEM sink, and every period of the log
// that has ended is sealed into a signed digest (internal/auditlog) and
// stored write-once. The audit-stream Lambda feeds it from the audit
// table's DynamoDB stream; `escrow server -dev` feeds it from the embedded
// log. The same code runs in both.
//
// Sealing reads a period's records back from the log by its index, once
// the period has ended and a grace time has passed, rather than trusting
// the order in which a stream delivers them: a stream may redeliver,
// reorder across shards or arrive late, and a digest must hold every
// record of its period exactly once. A redelivered batch changes nothing:
// digests are write-once (a period sealed twice is refused and skipped).
//
// It must never put a secret value anywhere: audit records hold none.
package auditfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
)

// Genesis is where the first digest's period starts by default: it covers
// every record written before the first sealing.
var Genesis = time.Unix(0, 0).UTC()

// Digester seals ended periods of the audit log.
type Digester struct {
	Log    escrow.AuditLog
	Store  auditlog.DigestStore
	Signer *auditlog.Signer
	// Period is each digest's length (aligned to the Unix epoch); Grace is
	// how long after a period ends it is sealed (records stamped by a
	// clock a little behind, or still in flight).
	Period, Grace time.Duration
	// Genesis, if set, is where the first digest starts instead of the
	// package's Genesis: a log whose index walks days (DynamoDB) should not
	// be asked for the decades before it existed.
	Genesis time.Time
	Clock   escrow.Clock
	Logger  *slog.Logger
}

// SealDue seals, in order, every period that ended before now − Grace and
// has no digest yet, and returns how many it sealed. It stops at the first
// failure; the next call resumes there.
func (d *Digester) SealDue(ctx context.Context) (int, error) {
	prev, err := d.Store.Latest(ctx)
	if errors.Is(err, escrow.ErrNotFound) {
		prev, err = nil, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the latest digest: %w", err)
	}
	horizon := d.Clock.Now().Add(-d.Grace)
	n := 0
	for {
		from := Genesis
		if !d.Genesis.IsZero() {
			from = d.Genesis
		}
		if prev != nil {
			from = prev.To
		}
		to := from.Truncate(d.Period).Add(d.Period)
		if prev == nil {
			// The first digest ends at the last period boundary before
			// the horizon: it covers everything written until then.
			to = horizon.Truncate(d.Period)
		}
		if !to.After(from) || to.After(horizon) {
			return n, nil
		}
		recs, err := d.records(ctx, from, to)
		if err != nil {
			return n, err
		}
		sd, err := auditlog.Seal(recs, from, to, prev, d.Signer)
		if err != nil {
			return n, fmt.Errorf("seal %s to %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
		}
		switch err := d.Store.Put(ctx, sd); {
		case errors.Is(err, escrow.ErrConflict):
			// Another consumer sealed it first: continue from theirs.
			if prev, err = d.Store.Latest(ctx); err != nil {
				return n, fmt.Errorf("read the latest digest: %w", err)
			}
			continue
		case err != nil:
			return n, fmt.Errorf("store digest %d: %w", sd.Seq, err)
		}
		d.Logger.InfoContext(ctx, "audit digest sealed", "seq", sd.Seq, "from", from, "to", to, "records", sd.Count)
		prev = sd
		n++
	}
}

// records reads every record of [from, to) by the log's index, oldest
// first.
func (d *Digester) records(ctx context.Context, from, to time.Time) ([]*escrow.AuditRecord, error) {
	var out []*escrow.AuditRecord
	q := escrow.AuditQuery{From: from, To: to, Limit: 1000}
	for {
		page, err := d.Log.QueryAudit(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("read audit records: %w", err)
		}
		for _, r := range page.Records {
			// The log's bounds are inclusive of From, exclusive of To, by
			// ID; check by time too, as the digest does.
			if !r.Time.Before(from) && r.Time.Before(to) {
				out = append(out, r)
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	slices.Reverse(out) // newest first → ID order
	slices.SortFunc(out, func(a, b *escrow.AuditRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(a, b *escrow.AuditRecord) bool { return a.ID == b.ID }), nil
}

// Consumer takes newly written audit records: it exports them to the SIEM
// sink (if any) and seals what is due.
type Consumer struct {
	Sink     siem.Sink // nil: no export
	Digester *Digester // nil: no sealing
}

// Records handles one batch. The export is at least once (a redelivered
// batch is exported again; SIEM events carry the record ID to dedupe);
// sealing is exactly once per period.
func (c *Consumer) Records(ctx context.Context, recs []*escrow.AuditRecord) error {
	var errs []error
	if c.Sink != nil && len(recs) > 0 {
		if err := c.Sink.Publish(ctx, recs); err != nil {
			errs = append(errs, fmt.Errorf("export to the SIEM: %w", err))
		}
	}
	if c.Digester != nil {
		if _, err := c.Digester.SealDue(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Follow is the -dev stand-in for the audit table's stream: every `every`
// it reads the records written since the last look (by the log's time
// index) and hands them to c, until ctx ends. It starts with the records
// written from start on.
func Follow(ctx context.Context, log escrow.AuditLog, c *Consumer, start time.Time, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen := map[string]bool{}
	since := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		recs, err := newRecords(ctx, log, since, seen)
		if err != nil {
			if ctx.Err() == nil {
				logger.WarnContext(ctx, "read new audit records", "err", err)
			}
			continue
		}
		if err := c.Records(ctx, recs); err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "audit feed", "err", err)
		}
		// Keep a little overlap (records stamped a moment late), and
		// forget what is older than it.
		if n := len(recs); n > 0 {
			since = recs[n-1].Time.Add(-2 * time.Second)
		}
		for id := range seen {
			if at, ok := idTime(id); ok && at.Before(since) {
				delete(seen, id)
			}
		}
	}
}

func newRecords(ctx context.Context, log escrow.AuditLog, since time.Time, seen map[string]bool) ([]*escrow.AuditRecord, error) {
	var out []*escrow.AuditRecord
	q := escrow.AuditQuery{From: since, Limit: 1000}
	for {
		page, err := log.QueryAudit(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r)
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	slices.SortFunc(out, func(a, b *escrow.AuditRecord) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// idTime reads the millisecond time of a record ID (a ULID).
func idTime(id string) (time.Time, bool) {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	if len(id) < 10 {
		return time.Time{}, false
	}
	var ms uint64
	for _, c := range id[:10] {
		i := -1
		for j := range len(crockford) {
			if rune(crockford[j]) == c {
				i = j
				break
			}
		}
		if i < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(i)
	}
	return time.UnixMilli(int64(ms)).UTC(), true
}
