package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
)

func (a *app) reportCmd() *cobra.Command {
	var (
		from, to, since       string
		user, secret, ticketN string
		format, out           string
	)
	cmd := &cobra.Command{
		Use:   "report NAME [flags]",
		Short: "Run a compliance report (admin or auditor)",
		Long: `Run a compliance report: who accessed what, when, why, and who approved it.
The server streams the rows as it reads them; a month of trail is fine.

Reports and the parameters they take (escrow report list shows every column):
  access-by-user    --user SUB [--from --to]   everything one user did or tried
  access-to-secret  --secret S [--from --to]   everything done to one secret (id or /path)
  ticket            --ticket N [--from --to]   everything under a change or incident number
  requests          [--from --to]              access requests created in the range: requester,
                                               secret, access, window, status, each step's approvers,
                                               decisions with comments, time to approve
  grants                                       grants in force now or starting later, time left
  checkouts         [--from --to]              checkouts, check-ins, extensions, forced check-ins,
                                               expiries and rotations; failed rotations flagged
  sod-exceptions    [--from --to]              separation-of-duty exceptions (empty when healthy):
                                               admins' forced check-ins, rotate-now and revocations,
                                               and any decision by the requester
  denied            [--from --to]              denied and failed attempts
  activity          [--from --to]              the whole trail, for archives and SIEMs

Times are RFC 3339 or YYYY-MM-DD (local midnight); --to is exclusive, and --since
(90m, 24h, 7d) counts back from now. Audit-based reports list the newest first.

--format csv (the default) writes a header row and RFC 4180 records; a cell a
spreadsheet would run as a formula (starting with = + - @) is prefixed with '.
json writes one array of objects, jsonl one object per line. --out FILE writes
to FILE (mode 0600, replaced only once the report is complete) and, for CSV,
counts rows on stderr as they arrive; without it the report goes to stdout.

Only admins and auditors may run reports, and every run is itself audited
(report.run, with its parameters).`,
		Example: `  escrow report list
  escrow report access-by-user --user alice --from 2026-11-01 --to 2026-12-01 --out alice-nov.csv
  escrow report access-to-secret --secret /prod/db/admin --since 7d
  escrow report ticket --ticket CHG0012345 --format json
  escrow report requests --from 2026-11-01 --out requests.csv
  escrow report sod-exceptions --since 30d --format jsonl | jq .`,
		Args: exactArgs(1, "the name of a report (escrow report list shows them)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := client.ReportParams{User: user, Secret: secret, Ticket: ticketN, Format: format}
			switch format {
			case "csv", "json", "jsonl":
			default:
				return usagef("--format must be csv, json or jsonl, not %q", format)
			}
			var err error
			if since != "" {
				if from != "" {
					return usagef("--since and --from together make no sense")
				}
				d, err := parseSince(since)
				if err != nil {
					return err
				}
				p.From = time.Now().Add(-d)
			}
			if from != "" {
				if p.From, err = parseTimeArg("from", from); err != nil {
					return err
				}
			}
			if to != "" {
				if p.To, err = parseTimeArg("to", to); err != nil {
					return err
				}
			}
			tok, err := a.token()
			if err != nil {
				return err
			}
			c := client.New(a.server, tok, reportHTTP)
			c.UserAgent = "escrow-cli"
			s, err := c.Report(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			defer s.Close()
			if out == "" || out == "-" {
				if _, err := io.Copy(a.stdout, s); err != nil {
					return fmt.Errorf("the report was cut short: %w", err)
				}
				return nil
			}
			return a.saveReport(s, out, format == "csv")
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "start of the range, inclusive (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "end of the range, exclusive (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&since, "since", "", "start the range this long before now: 90m, 24h, 7d")
	f.StringVar(&user, "user", "", "the user's subject (access-by-user)")
	f.StringVar(&secret, "secret", "", "the secret's id or /path (access-to-secret)")
	f.StringVar(&ticketN, "ticket", "", "the change or incident number (ticket)")
	f.StringVar(&format, "format", "csv", "csv, json (an array) or jsonl (one object per line)")
	f.StringVar(&out, "out", "", "write to FILE instead of stdout, with a row count on stderr (CSV)")
	cmd.AddCommand(a.reportListCmd(), a.reportScheduleCmd())
	return cmd
}

func (a *app) reportListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the reports, their parameters and columns",
		Long: `List the reports the server offers, with the parameters each takes
(required ones marked) and, with -o json, each column's meaning.`,
		Example: `  escrow report list
  escrow report list -o json | jq '.[] | select(.name=="requests") | .columns'`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, err := c.Reports(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, rs)
			}
			t := newTable(a.stdout, "REPORT", "PARAMETERS", "DESCRIPTION")
			for _, r := range rs {
				var ps []string
				for _, p := range r.Params {
					if p.Required {
						ps = append(ps, "--"+p.Name+" (required)")
					} else {
						ps = append(ps, "--"+p.Name)
					}
				}
				t.row(r.Name, strings.Join(ps, " "), r.Description)
			}
			return t.flush()
		},
	}
}

// reportHTTP has no overall timeout, unlike the CLI's other calls: a
// report streams for as long as it has rows. The server must still start
// answering within two minutes.
var reportHTTP = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: tr}
}()

// saveReport writes the stream to path through a temporary file in the
// same directory, renamed over path only once the stream is complete: a
// cut report never leaves a file that looks whole. CSV rows are counted
// on stderr as they arrive.
func (a *app) saveReport(s io.Reader, path string, csv bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var w io.Writer = f
	var pr *progress
	if csv {
		pr = &progress{out: a.stderr, now: time.Now}
		w = io.MultiWriter(f, pr)
	}
	if _, err := io.Copy(w, s); err != nil {
		if pr != nil {
			pr.clear()
		}
		return fmt.Errorf("the report was cut short (nothing written to %s): %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	if pr != nil {
		pr.final(path)
	}
	return nil
}

// progress counts CSV records as they pass (a line break inside quotes is
// part of a cell) and shows the count on one line, redrawn in place at
// most every 200 ms.
type progress struct {
	out     io.Writer
	now     func() time.Time
	records int64 // including the header
	quoted  bool
	shown   time.Time
	width   int
}

const progressEvery = 200 * time.Millisecond

func (p *progress) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\"\n")
		if i < 0 {
			break
		}
		if b[i] == '"' {
			p.quoted = !p.quoted // "" inside a cell toggles twice
		} else if !p.quoted {
			p.records++
		}
		b = b[i+1:]
	}
	if now := p.now(); now.Sub(p.shown) >= progressEvery {
		p.shown = now
		p.show(commas(p.rows()) + " rows…")
	}
	return n, nil
}

func (p *progress) rows() int64 { return max(p.records-1, 0) }

func (p *progress) show(s string) {
	pad := ""
	if n := p.width - len([]rune(s)); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width = len([]rune(s))
	fmt.Fprintf(p.out, "\r%s%s", s, pad)
}

func (p *progress) final(path string) {
	p.show(fmt.Sprintf("%s rows written to %s", commas(p.rows()), path))
	fmt.Fprintln(p.out)
}

func (p *progress) clear() {
	if p.width > 0 {
		p.show("")
		fmt.Fprint(p.out, "\r")
	}
}

// commas renders n with thousands separators: 12,345.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
