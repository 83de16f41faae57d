package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) ticketSystemCmd() *cobra.Command {
	return groupCmd("ticket-system", "Configure the ticket systems that validate change and incident numbers (admin)",
		`Escrow validates the tickets that access requests name, live, against
ServiceNow, BMC Helix, Jira or any system behind a generic HTTP validator.
Several systems can be configured; one is the default, and a policy may
name another. A system's credentials live in an Escrow secret (fields
username and password, or token), never in its configuration.`,
		`  escrow secret create /escrow/servicenow --type generic --field username=escrow --field password
  escrow ticket-system add snow --type servicenow --url https://acme.service-now.com --credentials /escrow/servicenow
  escrow ticket-system set-default snow
  escrow ticket-system test snow CHG0012345
  escrow ticket-system list`,
		a.ticketAddCmd(), a.ticketListCmd(), a.ticketDefaultCmd(), a.ticketTestCmd())
}

func (a *app) ticketAddCmd() *cobra.Command {
	var (
		typ, baseURL, creds string
		timeout             time.Duration
		options             []string
	)
	cmd := &cobra.Command{
		Use:   "add NAME --type servicenow|bmc|jira|webhook --url URL --credentials SECRET",
		Short: "Add or replace a ticket system",
		Args:  exactArgs(1, "one NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id := creds
			if strings.HasPrefix(creds, "/") {
				if id, err = resolve(cmd.Context(), c, creds); err != nil {
					return err
				}
			}
			cfg := &escrow.TicketSystemConfig{Name: args[0], Type: typ, BaseURL: baseURL, CredentialSecret: id,
				Timeout: escrow.Duration(timeout), Options: map[string]string{}}
			for _, o := range options {
				k, v, ok := strings.Cut(o, "=")
				if !ok || k == "" {
					return usagef("--option must be key=value, not %q", o)
				}
				cfg.Options[k] = v
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%s", escrow.ErrorMessage(err))
			}
			out, err := c.PutTicketSystem(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "Ticket system %s (%s, %s) saved (revision %d).\n", out.Name, out.Type, out.BaseURL, out.Revision)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "servicenow, bmc, jira or webhook")
	f.StringVar(&baseURL, "url", "", "base URL, e.g. https://acme.service-now.com")
	f.StringVar(&creds, "credentials", "", "the Escrow secret (id or /path) holding username+password or token")
	f.DurationVar(&timeout, "timeout", 0, "bound on one call, retries included (default 5s)")
	f.StringArrayVar(&options, "option", nil, "adapter option key=value (Jira: startField=customfield_10021)")
	return cmd
}

func (a *app) ticketListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List ticket systems",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, def, err := c.TicketSystems(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, map[string]any{"ticketSystems": list, "default": def})
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "No ticket systems.")
				return nil
			}
			t := newTable(a.stdout, "NAME", "TYPE", "URL", "DEFAULT", "CREDENTIALS", "UPDATED BY")
			for _, s := range list {
				d := ""
				if s.Name == def {
					d = "yes"
				}
				t.row(s.Name, s.Type, s.BaseURL, d, s.CredentialSecret, s.UpdatedBy)
			}
			return t.flush()
		},
	}
}

func (a *app) ticketDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-default NAME",
		Short: "Make a ticket system the default",
		Args:  exactArgs(1, "one NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetDefaultTicketSystem(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Default ticket system: %s.\n", args[0])
			return nil
		},
	}
}

func (a *app) ticketTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test NAME NUMBER",
		Short: "Look a ticket up for real and show what the system said",
		Args:  exactArgs(2, "a NAME and a ticket NUMBER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			tk, err := c.TestTicketSystem(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, tk)
			}
			t := newTable(a.stdout)
			t.row("Ticket:", tk.Number)
			t.row("Kind:", string(tk.Kind))
			t.row("State:", tk.State)
			t.row("Summary:", tk.Summary)
			t.row("Assignee:", strings.TrimSpace(tk.Assignee+" "+tk.AssigneeEmail))
			t.row("Group:", tk.AssignmentGroup)
			if !tk.PlannedStart.IsZero() {
				t.row("Planned:", fmtTime(tk.PlannedStart)+" to "+fmtTime(tk.PlannedEnd))
			}
			t.row("CI:", tk.ConfigurationItem)
			t.row("Link:", tk.URL)
			return t.flush()
		},
	}
}
