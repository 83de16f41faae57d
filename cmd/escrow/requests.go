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

func (a *app) requestCmd() *cobra.Command {
	var (
		access, start, end, comment string
		ticketNo                    string
		dur                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "request SECRET --for DURATION [--start TIME] [--comment TEXT]",
		Short: "Ask for time-boxed access to a secret that needs approval",
		Long: `Ask for access to a secret whose policy requires approval. Approvers decide
with 'escrow approve' or 'escrow deny'; once approved, reveal the secret as
usual until the window ends. The policy may require a comment (for example a
change number matching a pattern: 'escrow policy get SECRET' shows it), and
caps the window's length; a start in the future books a maintenance window,
if the policy allows it.`,
		Example: `  escrow request /prod/db/admin --for 2h --comment CHG0012345
  escrow request /prod/db/admin --for 1h --start 2026-12-01T22:00:00Z --comment CHG0012345
  escrow request /prod/db/admin --access edit --until 2026-12-01T23:00:00Z --comment INC0000042`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &client.NewRequest{Access: escrow.AccessKind(access), Comment: comment, Ticket: ticketNo}
			if !req.Access.Valid() {
				return usagef("--access must be view, edit or checkout")
			}
			if (dur == 0) == (end == "") {
				return usagef("give the window's length with --for DURATION, or its end with --until TIME")
			}
			if dur < 0 {
				return usagef("--for must be positive")
			}
			if dur > 0 {
				req.Duration = dur.String()
			}
			for _, f := range []struct {
				name, val string
				dst       **time.Time
			}{{"--start", start, &req.Start}, {"--until", end, &req.End}} {
				if f.val == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, f.val)
				if err != nil {
					return usagef("%s must be an RFC 3339 time such as 2026-12-01T22:00:00Z", f.name)
				}
				*f.dst = &t
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			r, err := c.RequestAccess(cmd.Context(), id, req)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, r)
			}
			if r.Status == escrow.StatusPending {
				fmt.Fprintf(a.stdout, "Request %s: %s access to %s from %s to %s, pending approval (decide by %s).\n",
					r.ID, r.Access, r.SecretPath, fmtTime(r.Start), fmtTime(r.End), fmtTime(r.ExpiresAt))
			} else {
				fmt.Fprintf(a.stdout, "Request %s: %s access to %s is %s from %s to %s (validated ticket %s).\n",
					r.ID, r.Access, r.SecretPath, r.Status, fmtTime(r.GrantStart), fmtTime(r.GrantEnd), r.Ticket)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&access, "access", "view", "view, edit or checkout")
	cmd.Flags().DurationVar(&dur, "for", 0, "length of the window, e.g. 30m or 2h")
	cmd.Flags().StringVar(&start, "start", "", "start of the window (RFC 3339; default now)")
	cmd.Flags().StringVar(&end, "until", "", "end of the window (RFC 3339), instead of --for")
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "why you need it (the policy may require a pattern)")
	cmd.Flags().StringVar(&ticketNo, "ticket", "", "change or incident number the policy validates (default: the comment)")
	return cmd
}

func (a *app) requestsCmd() *cobra.Command {
	var (
		pending, all bool
		secret       string
	)
	cmd := &cobra.Command{
		Use:   "requests [ID] [--pending] [--all] [--secret SECRET]",
		Short: "List access requests (yours, waiting for you, or all), or show one",
		Example: `  escrow requests                 # mine
  escrow requests --pending       # waiting for my decision
  escrow requests 01J...          # one request with its decisions`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				r, err := c.GetRequest(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, r)
				}
				return printRequest(a, r)
			}
			o := client.RequestsOptions{PendingForMe: pending, All: all}
			if secret != "" {
				if o.SecretID, err = resolve(cmd.Context(), c, secret); err != nil {
					return err
				}
			}
			page, err := c.ListRequests(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, page)
			}
			if len(page.Requests) == 0 {
				fmt.Fprintln(a.stdout, "No requests.")
				return nil
			}
			t := newTable(a.stdout, "ID", "STATUS", "REQUESTER", "SECRET", "ACCESS", "START", "END", "COMMENT")
			for _, r := range page.Requests {
				t.row(r.ID, string(r.Status), r.Requester.Subject, r.SecretPath, string(r.Access), fmtTime(r.Start), fmtTime(r.End), r.Comment)
			}
			return t.flush()
		},
	}
	cmd.Flags().BoolVar(&pending, "pending", false, "requests waiting for my decision")
	cmd.Flags().BoolVar(&all, "all", false, "every request (admin, auditor)")
	cmd.Flags().StringVar(&secret, "secret", "", "only requests for this secret")
	return cmd
}

func printRequest(a *app, r *escrow.Request) error {
	t := newTable(a.stdout)
	t.row("Request:", r.ID)
	t.row("Status:", string(r.Status))
	t.row("Requester:", r.Requester.Subject+" "+r.Requester.Email)
	t.row("Secret:", r.SecretPath+" ("+r.SecretID+")")
	t.row("Access:", string(r.Access))
	t.row("Window:", fmtTime(r.Start)+" to "+fmtTime(r.End))
	t.row("Comment:", r.Comment)
	if tk := r.TicketInfo; tk != nil {
		t.row("Ticket:", fmt.Sprintf("%s (%s, %s in %s) %s", tk.Number, tk.Kind, tk.State, tk.System, tk.Summary))
	}
	t.row("Policy:", r.PolicyFrom)
	if r.Status == escrow.StatusPending {
		t.row("Decide by:", fmtTime(r.ExpiresAt))
	}
	if r.GrantID != "" {
		t.row("Grant:", r.GrantID+" "+fmtTime(r.GrantStart)+" to "+fmtTime(r.GrantEnd))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(r.Decisions) > 0 {
		fmt.Fprintln(a.stdout, "\nDecisions:")
		t = newTable(a.stdout, "  TIME", "STEP", "APPROVER", "DECISION", "COMMENT")
		for _, d := range r.Decisions {
			dec := "deny"
			if d.Approve {
				dec = "approve"
			}
			t.row("  "+fmtTime(d.Time), strconv.Itoa(d.Step+1), d.Approver.Subject, dec, d.Comment)
		}
		return t.flush()
	}
	return nil
}

func (a *app) decideCmd(approve bool) *cobra.Command {
	verb, past := "deny", "Denied"
	if approve {
		verb, past = "approve", "Approved"
	}
	var comment string
	cmd := &cobra.Command{
		Use:   verb + " REQUEST [--comment TEXT]",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " an access request (an approver of its current step)",
		Long: `Record your decision on a request waiting for you ('escrow requests --pending'
lists them). You cannot decide on your own request, nor twice on one; a
request past its decision deadline can no longer be decided.`,
		Args: exactArgs(1, "one REQUEST id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.Decide(cmd.Context(), args[0], approve, comment)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, d)
			}
			fmt.Fprintf(a.stdout, "%s request %s: it is now %s.\n", past, d.Request.ID, d.Request.Status)
			if d.Grant != nil {
				fmt.Fprintf(a.stdout, "Grant %s: %s may %s %s from %s to %s.\n", d.Grant.ID, d.Grant.Subject,
					d.Grant.Access, d.Grant.SecretPath, fmtTime(d.Grant.Start), fmtTime(d.Grant.End))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "your reason")
	return cmd
}

func (a *app) cancelCmd() *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "cancel REQUEST [--comment TEXT]",
		Short: "Cancel your pending request (or an approved one before its window)",
		Args:  exactArgs(1, "one REQUEST id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.CancelRequest(cmd.Context(), args[0], comment)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, r)
			}
			fmt.Fprintf(a.stdout, "Request %s is %s.\n", r.ID, r.Status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "your reason")
	return cmd
}

func (a *app) grantsCmd() *cobra.Command {
	var secret string
	cmd := &cobra.Command{
		Use:   "grants [--secret SECRET]",
		Short: "List your grants (or, for admins and auditors, a secret's) with the time left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id := ""
			if secret != "" {
				if id, err = resolve(cmd.Context(), c, secret); err != nil {
					return err
				}
			}
			page, err := c.ListGrants(cmd.Context(), id)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, page)
			}
			if len(page.Grants) == 0 {
				fmt.Fprintln(a.stdout, "No grants.")
				return nil
			}
			now := time.Now()
			t := newTable(a.stdout, "ID", "STATUS", "HOLDER", "SECRET", "ACCESS", "START", "END", "LEFT")
			for _, g := range page.Grants {
				left := ""
				if g.Status == escrow.StatusActive {
					left = g.End.Sub(now).Round(time.Second).String()
				}
				t.row(g.ID, string(g.Status), g.Subject, g.SecretPath, string(g.Access), fmtTime(g.Start), fmtTime(g.End), left)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&secret, "secret", "", "grants on this secret (admin, auditor)")
	return cmd
}

func (a *app) revokeCmd() *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "revoke GRANT [--comment TEXT]",
		Short: "End a grant now (its holder or an admin)",
		Args:  exactArgs(1, "one GRANT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.RevokeGrant(cmd.Context(), args[0], comment)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, g)
			}
			fmt.Fprintf(a.stdout, "Grant %s is %s.\n", g.ID, g.Status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "your reason")
	return cmd
}
