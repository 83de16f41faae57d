package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) auditCmd() *cobra.Command {
	var (
		actor, secret, action string
		request, ticketNo     string
		since, from, to       string
		limit                 int
	)
	cmd := &cobra.Command{
		Use:   "audit [flags]",
		Short: "Show the audit trail (admin or auditor)",
		Long: `Show audit records, newest first: every read and change, including denied
and failed attempts, with who did it, from where, and the request id that
error messages quote. Records never contain secret values.

Filters combine: --actor (subject, like alice), --secret (id or /path),
--action (like secret.reveal, secret.update, secret.acl, auth.failed),
--since (a duration back from now: 90m, 24h, 7d) or --from/--to (RFC 3339
times or YYYY-MM-DD dates; --to is exclusive). --request ID shows one access
request's trail: its filing, every decision, and every reveal made under its
grant (read through the secret's index and filtered here).

Only principals with the admin or auditor role may read the trail.`,
		Example: `  escrow audit --since 24h
  escrow audit --secret /prod/db/admin --action secret.reveal
  escrow audit --actor bob --from 2026-11-01 --to 2026-12-01 -o json
  escrow audit --request 01J...   # a request's whole trail: asked, decided, every reveal under its grant
  escrow audit --ticket CHG0012345`,
		Args: exactArgs(0, "no arguments (filter with flags)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := client.AuditQuery{Actor: actor, Action: action, Ticket: ticketNo}
			now := time.Now()
			if since != "" {
				if from != "" {
					return usagef("--since and --from together make no sense")
				}
				d, err := parseSince(since)
				if err != nil {
					return err
				}
				q.From = now.Add(-d)
			}
			var err error
			if from != "" {
				if q.From, err = parseTimeArg("from", from); err != nil {
					return err
				}
			}
			if to != "" {
				if q.To, err = parseTimeArg("to", to); err != nil {
					return err
				}
			}
			if limit <= 0 {
				return usagef("--limit must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if secret != "" {
				if q.SecretID, err = resolve(ctx, c, secret); err != nil {
					return err
				}
			}
			var reqID string
			if request != "" {
				r, err := c.GetRequest(ctx, request)
				if err != nil {
					return err
				}
				reqID, q.SecretID = r.ID, r.SecretID
			}
			var all client.AuditPage
			for reqID != "" && len(all.Records) < limit {
				// The trail of one request: every record of its secret that
				// names it, page by page.
				q.Limit = 1000
				page, err := c.QueryAudit(ctx, q)
				if err != nil {
					return err
				}
				for _, r := range page.Records {
					if r.Target == "request:"+reqID || r.Details["request"] == reqID {
						all.Records = append(all.Records, r)
					}
				}
				if page.Next == "" || len(page.Records) == 0 {
					break
				}
				q.Cursor = page.Next
			}
			for reqID == "" && len(all.Records) < limit {
				q.Limit = min(limit-len(all.Records), 1000)
				page, err := c.QueryAudit(ctx, q)
				if err != nil {
					return err
				}
				all.Records = append(all.Records, page.Records...)
				all.Next = page.Next
				if page.Next == "" || len(page.Records) == 0 {
					break
				}
				q.Cursor = page.Next
			}
			if all.Records == nil {
				all.Records = []*escrow.AuditRecord{}
			}
			if a.json() {
				return writeJSON(a.stdout, all)
			}
			if len(all.Records) == 0 {
				fmt.Fprintln(a.stderr, "No audit records match.")
				return nil
			}
			t := newTable(a.stdout, "TIME", "ACTOR", "ACTION", "OUTCOME", "TARGET", "REQUEST", "DETAIL")
			for _, r := range all.Records {
				target := r.Target
				if target == "" {
					target = r.SecretID
				}
				detail := r.Reason
				if r.ErrorCode != "" {
					detail = string(r.ErrorCode) + ": " + r.Reason
				}
				t.row(fmtTime(r.Time), r.Actor.Subject, r.Action, string(r.Outcome), target, r.RequestID, detail)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if all.Next != "" {
				fmt.Fprintf(a.stderr, "Showing the newest %d; raise --limit or narrow the filters for more.\n", len(all.Records))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&actor, "actor", "", "only records by this subject")
	f.StringVar(&secret, "secret", "", "only records about this secret (id or /path)")
	f.StringVar(&action, "action", "", "only this action, like secret.reveal")
	f.StringVar(&request, "request", "", "the trail of one access request (its id)")
	f.StringVar(&ticketNo, "ticket", "", "only records under this change or incident number (by index)")
	f.StringVar(&since, "since", "", "only records newer than this duration: 90m, 24h, 7d")
	f.StringVar(&from, "from", "", "only records at or after this time (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "only records before this time (RFC 3339 or YYYY-MM-DD)")
	f.IntVar(&limit, "limit", 100, "show at most this many records")
	cmd.AddCommand(a.auditVerifyCmd(), a.auditKeygenCmd())
	return cmd
}

// parseSince accepts Go durations plus a "d" (24h) suffix.
func parseSince(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, usagef("--since %q: want a positive duration like 90m, 24h or 7d", s)
}

// parseTimeArg accepts RFC 3339 or a local date.
func parseTimeArg(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q: want an RFC 3339 time (2026-11-22T15:04:05Z) or a date (2026-11-22)", flag, s)
}
