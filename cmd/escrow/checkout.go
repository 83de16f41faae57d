package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// slotCall is a client method on a secret's checkout slot, such as
// (*client.Client).Extend.
type slotCall func(c *client.Client, ctx context.Context, id string) (*escrow.Checkout, error)

// onSlot runs call on the checkout slot of the SECRET argument arg, then
// prints the answer: as JSON with -o json, else with text.
func (a *app) onSlot(ctx context.Context, arg string, call slotCall, text func(*escrow.Checkout) error) error {
	c, id, err := a.secretClient(ctx, arg)
	if err != nil {
		return err
	}
	co, err := call(c, ctx, id)
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, co)
	}
	return text(co)
}

// secretClient returns the caller's client and the id of the SECRET
// argument (an id, or a path looked up first).
func (a *app) secretClient(ctx context.Context, arg string) (*client.Client, string, error) {
	c, err := a.client()
	if err != nil {
		return nil, "", err
	}
	id, err := resolve(ctx, c, arg)
	if err != nil {
		return nil, "", err
	}
	return c, id, nil
}

func (a *app) checkoutCmd() *cobra.Command {
	var (
		comment, ticketNo, field string
		pw                       passwordSource
	)
	cmd := &cobra.Command{
		Use:   "checkout SECRET [--comment TEXT] [--ticket NUMBER] [--field NAME]",
		Short: "Check a secret out: you alone may use it until you check it in",
		Long: `Check out a secret whose policy puts it under checkout, and print its value
like 'escrow secret reveal' does (with --field NAME just that field, raw,
for scripts). Until the checkout ends nobody else can check it out or reveal
it; they are told who holds it and until when.

The checkout lasts the policy's interval; 'escrow extend' adds one more, as
often as the policy allows. It ends with 'escrow checkin', when its time is
up, or when an owner forces it back. If the secret has a rotation
('escrow rotation set'), its password is then changed on the real system,
so the value you saw stops working.

The policy may require a comment (the reason, stored in the audit trail)
and a change or incident ticket. Without --comment, in a terminal, you are
asked for a required comment with the policy's own prompt.

The expiry and the command to check in go to standard error.

A QuantumLocked secret ('escrow qlock') is opened here once checked out:
your QuantumLock password is asked at the terminal without echo (or read
from --password-file / --password-fd).`,
		Example: `  escrow checkout /prod/breakglass/db-breakglass --comment "INC0042: orders db is down"
  PGPASSWORD=$(escrow checkout /prod/breakglass/db-breakglass --field password -m "$REASON") psql -h db1 -U breakglass
  escrow checkout /prod/breakglass/db-breakglass -m "planned upgrade" --ticket CHG0012345 -o json`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, id, err := a.secretClient(ctx, args[0])
			if err != nil {
				return err
			}
			if strings.TrimSpace(comment) == "" {
				if comment, err = a.askComment(ctx, c, id); err != nil {
					return err
				}
			}
			res, err := c.Checkout(ctx, id, comment, ticketNo)
			if err != nil {
				return err
			}
			// The checkout holds even if printing fails (a wrong --field),
			// so how to give it back is said first.
			if !a.json() {
				co := res.Checkout
				fmt.Fprintf(a.stderr, "checked out until %s (%s); check in with: escrow checkin %s\n",
					fmtTime(co.Expires), fmtDuration(co.Expires.Sub(co.Start)), res.Path)
			}
			if res.Value, err = a.unlockValue(ctx, c, &pw, id, res.Version, args[0], res.Value); err != nil {
				return err
			}
			return a.printRevealed(args[0], res.Value, field, res)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&comment, "comment", "m", "", "why you need it, stored in the audit record (the policy may require one)")
	f.StringVar(&ticketNo, "ticket", "", "change or incident number, if the policy requires a ticket")
	f.StringVarP(&field, "field", "f", "", "print only this field, raw")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password, for a QuantumLocked secret")
	return cmd
}

// askComment asks at the terminal for the comment that a secret's policy
// requires. It returns "" without asking when standard input is no
// terminal or the policy requires none: the server then says what it
// wants. The comment is no secret, so it is echoed as typed.
func (a *app) askComment(ctx context.Context, c *client.Client, id string) (string, error) {
	f, ok := a.terminal()
	if !ok {
		return "", nil
	}
	v, err := c.GetPolicy(ctx, id)
	if err != nil {
		return "", err
	}
	if v.Policy == nil || v.Policy.Comment.Mode != escrow.CommentRequired {
		return "", nil
	}
	prompt := strings.TrimSpace(v.Policy.Comment.Prompt)
	if prompt == "" {
		prompt = "Comment (required)"
	}
	if !strings.HasSuffix(prompt, "?") && !strings.HasSuffix(prompt, ":") {
		prompt += ":"
	}
	fmt.Fprint(a.stderr, prompt+" ")
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read comment from terminal: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func (a *app) checkinCmd() *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "checkin SECRET [--comment TEXT]",
		Short: "Give back a secret you checked out",
		Long: `End your checkout of a secret. If the secret has a rotation, its password
is now changed on the real system (the value you saw stops working) and the
secret is free again once that is done; otherwise it is free at once.`,
		Example: `  escrow checkin /prod/breakglass/db-breakglass
  escrow checkin /prod/breakglass/db-breakglass --comment "orders db back up"`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			checkin := func(c *client.Client, ctx context.Context, id string) (*escrow.Checkout, error) {
				return c.Checkin(ctx, id, comment)
			}
			return a.onSlot(cmd.Context(), args[0], checkin, func(co *escrow.Checkout) error {
				return a.printEnded(co, "Checked in "+args[0], args[0])
			})
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "a note for the audit record")
	return cmd
}

func (a *app) forceCheckinCmd() *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "force-checkin SECRET --comment TEXT",
		Short: "End someone else's checkout of a secret (its owner or an admin)",
		Long: `End the current checkout of a secret whoever holds it, for example when
the holder is away and the account is needed. The secret's owner or an
admin may do it, with a comment saying why. The password is rotated just as
on a check-in, so the holder's copy stops working.`,
		Example: `  escrow force-checkin /prod/breakglass/db-breakglass --comment "alice is off sick; INC0043 needs it"`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(comment) == "" {
				return usagef("force-checkin needs --comment saying why")
			}
			force := func(c *client.Client, ctx context.Context, id string) (*escrow.Checkout, error) {
				return c.ForceCheckin(ctx, id, comment)
			}
			return a.onSlot(cmd.Context(), args[0], force, func(co *escrow.Checkout) error {
				return a.printEnded(co, "Ended "+co.Holder.Subject+"'s checkout of "+args[0], args[0])
			})
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "why (required; stored in the audit record)")
	return cmd
}

// printEnded reports a checkout that was just ended: done, then whether
// the password is now rotated.
func (a *app) printEnded(co *escrow.Checkout, done, what string) error {
	if co.Status == escrow.CheckoutRotating {
		fmt.Fprintf(a.stdout, "%s. Its password is now being rotated; the secret is free again once that is done (escrow checkout-status %s).\n", done, what)
		return nil
	}
	fmt.Fprintf(a.stdout, "%s. It is free again; its password is not rotated (no rotation on this secret).\n", done)
	return nil
}

func (a *app) extendCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "extend SECRET",
		Short: "Extend your checkout of a secret by one interval",
		Long: `Add the policy's interval once more to your checkout of a secret, before it
expires. The policy caps how often a checkout can be extended.`,
		Example: `  escrow extend /prod/breakglass/db-breakglass`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onSlot(cmd.Context(), args[0], (*client.Client).Extend, func(co *escrow.Checkout) error {
				fmt.Fprintf(a.stdout, "Extended the checkout of %s until %s (%s left); %d of %d extensions used.\n",
					args[0], fmtTime(co.Expires), fmtDuration(time.Until(co.Expires)), co.Extensions, co.MaxExtensions)
				return nil
			})
		},
	}
}

func (a *app) checkoutStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkout-status SECRET",
		Short: "Show whether a secret is checked out, by whom and until when",
		Long: `Show a secret's checkout: its status (active: checked out; rotating: its
password is being changed after a checkout; rotation_failed: that failed and
the secret stays locked until an administrator repairs it; released: free),
the holder, the expiry and the time left, the extensions used, and, after a
failed rotation, the attempts and the last error.

Anyone who may list the secret sees its status; only those who may view it
see who holds it.`,
		Example: `  escrow checkout-status /prod/breakglass/db-breakglass
  escrow checkout-status /prod/breakglass/db-breakglass -o json`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onSlot(cmd.Context(), args[0], (*client.Client).CheckoutStatus, func(co *escrow.Checkout) error {
				return a.printCheckout(args[0], co)
			})
		},
	}
}

// statusNote says in words what a checkout status means.
var statusNote = map[escrow.CheckoutStatus]string{
	escrow.CheckoutActive:         "checked out",
	escrow.CheckoutRotating:       "its password is being rotated; the secret is locked until that is done",
	escrow.CheckoutRotationFailed: "rotating its password failed; the secret stays locked until an administrator repairs it",
	escrow.CheckoutReleased:       "free to check out",
}

func (a *app) printCheckout(what string, co *escrow.Checkout) error {
	t := newTable(a.stdout)
	t.row("Secret:", what)
	t.row("Status:", fmt.Sprintf("%s (%s)", co.Status, statusNote[co.Status]))
	if co.ID == "" {
		return t.flush() // never checked out
	}
	holder := co.Holder.Subject
	switch {
	case holder == "":
		holder = "hidden (you need view permission on the secret to see who)"
	case co.Holder.Email != "":
		holder += " <" + co.Holder.Email + ">"
	}
	label := "Holder:"
	if co.Status != escrow.CheckoutActive {
		label = "Last holder:"
	}
	t.row(label, holder)
	t.row("Since:", fmtTime(co.Start))
	if co.Status == escrow.CheckoutActive {
		left := "expired; its password is about to be rotated"
		if d := time.Until(co.Expires); d > 0 {
			left = fmtDuration(d) + " left"
		}
		t.row("Expires:", fmtTime(co.Expires)+" ("+left+")")
		t.row("Extensions:", fmt.Sprintf("%d of %d used", co.Extensions, co.MaxExtensions))
		t.row("On check-in:", map[bool]string{true: "the password is rotated", false: "no rotation"}[co.Rotate])
	}
	t.row("Comment:", co.Comment)
	if co.Ticket != "" {
		t.row("Ticket:", co.Ticket)
	}
	if co.EndedAt != nil {
		t.row("Ended:", fmt.Sprintf("%s by %s (%s)", fmtTime(*co.EndedAt), co.EndedBy, co.EndReason))
	}
	if co.RotationAttempts > 0 || co.RotationError != "" {
		t.row("Rotation:", fmt.Sprintf("%d failed attempts; last error: %s", co.RotationAttempts, co.RotationError))
	}
	return t.flush()
}

// fmtDuration rounds d to the second and drops zero trailing units:
// "15m", "1h30m", "42s".
func fmtDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (a *app) rotationCmd() *cobra.Command {
	return groupCmd("rotation", "Set how a secret's password is rotated, or rotate it now",
		`A rotation changes a secret's password on the real system it opens (a
PostgreSQL role, an LDAP or Active Directory user, a Linux account over SSH,
or anything behind a signed webhook) and stores the new one as a version.
Under a checkout policy it runs whenever a checkout ends, so each holder
sees a one-time password; 'escrow rotation now' runs it at once.

The account's address comes from the secret's own fields (username, host,
port, database, url). Setting, clearing and running a rotation needs owner
permission on the secret.`,
		`  escrow rotation set /prod/breakglass/db-breakglass --target postgres --privileged /prod/db/postgres-admin
  escrow rotation now /prod/breakglass/db-breakglass
  escrow rotation clear /prod/breakglass/db-breakglass`,
		a.rotationSetCmd(), a.rotationClearCmd(), a.rotationNowCmd())
}

func (a *app) rotationSetCmd() *cobra.Command {
	var (
		cfg        escrow.RotationConfig
		privileged string
		options    []string
	)
	cmd := &cobra.Command{
		Use:   "set SECRET --target TARGET [--privileged SECRET] [--length N] [--classes LIST] [--exclude CHARS] [--option KEY=VALUE]...",
		Short: "Set how a secret's password is rotated (replaces any earlier setting)",
		Long: `Set how a secret's password is changed on its target. TARGET is postgres,
ldap, ad, ssh or webhook. The whole setting is replaced: flags not given
take their defaults.

--privileged names another secret (id or /path) whose username and password
(or private_key) log in to change this account's password; you need view
permission on it. Without it the account changes its own password, logging
in with the current one.

New passwords are --length characters (8 to 128, default 24) holding at
least one of each of --classes (lower, upper, digit, symbol; default all
four), never any character of --exclude.

--option sets a target's settings (repeatable): tls (none, starttls, ldaps,
require), ca (a PEM CA certificate), hostKey (an SSH host key in
authorized_keys form), url (a webhook's address).`,
		Example: `  escrow rotation set /prod/breakglass/db-breakglass --target postgres --privileged /prod/db/postgres-admin --option tls=require
  escrow rotation set /prod/ldap/svc-backup --target ldap --length 32 --classes lower,upper,digit --exclude 0O1lI --option tls=ldaps
  escrow rotation set /prod/app/api --target webhook --option url=https://rotate.example.com/hook`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if cfg.Options, err = parseKV("option", options); err != nil {
				return err
			}
			if len(cfg.Options) == 0 {
				cfg.Options = nil
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%s", escrow.ErrorMessage(err))
			}
			if privileged != "" {
				if err := checkSecretArg(privileged); err != nil {
					return usagef("--privileged: %v", err)
				}
			}
			ctx := cmd.Context()
			c, id, err := a.secretClient(ctx, args[0])
			if err != nil {
				return err
			}
			if privileged != "" {
				if cfg.Privileged, err = resolve(ctx, c, privileged); err != nil {
					return fmt.Errorf("--privileged: %w", err)
				}
			}
			s, err := c.SetRotation(ctx, id, &cfg)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			login := "the account itself, with its current password"
			if privileged != "" {
				login = privileged
			}
			length, classes := cfg.Password.Length, cfg.Password.Classes
			if length == 0 {
				length = 24
			}
			if len(classes) == 0 {
				classes = []string{escrow.ClassLower, escrow.ClassUpper, escrow.ClassDigit, escrow.ClassSymbol}
			}
			fmt.Fprintf(a.stdout, "Rotation of %s set: target %s, logging in as %s; new passwords of %d characters (%s).\n",
				s.SecretPath(), cfg.Target, login, length, strings.Join(classes, ", "))
			fmt.Fprintf(a.stdout, "It runs when a checkout ends; run it now with: escrow rotation now %s\n", s.SecretPath())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "", "postgres, ldap, ad, ssh or webhook (required)")
	f.StringVar(&privileged, "privileged", "", "secret (id or /path) whose account changes this password")
	f.IntVar(&cfg.Password.Length, "length", 0, "length of new passwords, 8 to 128 (default 24)")
	f.StringSliceVar(&cfg.Password.Classes, "classes", nil, "character classes each new password holds: lower,upper,digit,symbol (default all)")
	f.StringVar(&cfg.Password.Exclude, "exclude", "", "characters never to use, like 0O1lI")
	f.StringArrayVar(&options, "option", nil, "target setting key=value: tls, ca, hostKey, url (repeatable)")
	return cmd
}

func (a *app) rotationClearCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "clear SECRET",
		Short: "Stop rotating a secret's password",
		Long: `Remove a secret's rotation: its password is no longer changed when a
checkout ends, and 'escrow rotation now' refuses it.`,
		Example: `  escrow rotation clear /prod/breakglass/db-breakglass`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.secretClient(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			s, err := c.SetRotation(cmd.Context(), id, nil)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "Rotation of %s cleared: its password is no longer changed.\n", s.SecretPath())
			return nil
		},
	}
}

func (a *app) rotationNowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "now SECRET",
		Short: "Rotate a secret's password now",
		Long: `Change a secret's password on its target now, for example after a leak.
The secret must have a rotation ('escrow rotation set') and must not be
checked out; it is locked while the rotation runs. Needs owner permission.`,
		Example: `  escrow rotation now /prod/breakglass/db-breakglass
  escrow checkout-status /prod/breakglass/db-breakglass   # rotating, then released`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onSlot(cmd.Context(), args[0], (*client.Client).RotateNow, func(*escrow.Checkout) error {
				fmt.Fprintf(a.stdout, "Rotating the password of %s; the secret is locked until that is done (escrow checkout-status %s).\n", args[0], args[0])
				return nil
			})
		},
	}
}
