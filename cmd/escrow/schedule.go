package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) reportScheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Mail a report as CSV every hour, day, week or month (admin)",
		Long: `Define report schedules: each period (hourly; daily, weekly on Mondays or
monthly on the 1st at --at o'clock UTC) the report is run over the period
that just ended and mailed to the recipients with its CSV attached. In AWS
the reports function sends them (needs MailFrom); in -dev they land in the
outbox.`,
		Example: `  escrow report schedule add soc-denied --report denied --every daily --at 6 --to soc@example.com
  escrow report schedule add alice-weekly --report access-by-user --param user=alice --every weekly --to audit@example.com
  escrow report schedule list
  escrow report schedule remove soc-denied`,
	}
	cmd.AddCommand(a.scheduleAddCmd(), a.scheduleListCmd(), a.scheduleRemoveCmd())
	return cmd
}

func (a *app) scheduleAddCmd() *cobra.Command {
	var (
		reportName, every string
		at                int
		to, params        []string
	)
	cmd := &cobra.Command{
		Use:   "add NAME --report R --every hourly|daily|weekly|monthly [--at H] --to ADDR [--param k=v]",
		Short: "Create or replace a schedule",
		Args:  exactArgs(1, "the schedule's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := &escrow.ReportSchedule{Name: args[0], Report: reportName, Every: every, At: at, Recipients: to}
			for _, p := range params {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return usagef("--param %q: want name=value", p)
				}
				if s.Params == nil {
					s.Params = map[string]string{}
				}
				s.Params[k] = v
			}
			if err := s.Validate(); err != nil {
				return &usageError{err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.PutReportSchedule(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "schedule %s: %s %s to %s; the first mail covers the period after %s\n", out.Name, out.Every, out.Report,
				strings.Join(out.Recipients, ", "), out.LastRun.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&reportName, "report", "", "the report (escrow report list)")
	cmd.Flags().StringVar(&every, "every", "", "hourly, daily, weekly (Mondays) or monthly (the 1st)")
	cmd.Flags().IntVar(&at, "at", 6, "hour of day, UTC, for daily, weekly and monthly")
	cmd.Flags().StringSliceVar(&to, "to", nil, "recipient address (repeat or comma-separate)")
	cmd.Flags().StringArrayVar(&params, "param", nil, "report parameter name=value (user, secret, ticket)")
	return cmd
}

func (a *app) scheduleListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the schedules (admin or auditor)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ss, err := c.ReportSchedules(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]any{"schedules": ss})
			}
			if len(ss) == 0 {
				fmt.Fprintln(a.stderr, "No report schedules.")
				return nil
			}
			t := newTable(a.stdout, "NAME", "REPORT", "EVERY", "AT", "PARAMS", "TO", "LAST WINDOW")
			for _, s := range ss {
				var ps []string
				for k, v := range s.Params {
					ps = append(ps, k+"="+v)
				}
				t.row(s.Name, s.Report, s.Every, fmt.Sprintf("%02d:00Z", s.At), strings.Join(ps, ","), strings.Join(s.Recipients, ","),
					s.LastRun.UTC().Format(time.RFC3339))
			}
			return t.flush()
		},
	}
}

func (a *app) scheduleRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Delete a schedule (admin)",
		Args:  exactArgs(1, "the schedule's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteReportSchedule(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "schedule %s removed\n", args[0])
			return nil
		},
	}
}
