package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the action failed (server error, network, bad file)
	exitUsage = 2 // the command line was wrong
)

const defaultServer = "http://127.0.0.1:8080"

// app holds what every command shares: streams, environment and the global
// flags. Commands get it by closure, so tests can run many in one process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	server string // --server
	output string // -o

	started bool // set once a command's own code runs: earlier errors are usage errors

	fds map[int]*os.File // descriptors opened by --password-fd, one *os.File each
}

// usageError marks an error in the command line (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	var ue *usageError
	if errors.As(err, &ue) || !a.started {
		fmt.Fprintf(stderr, "escrow: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitUsage
	}
	a.printError(err)
	return exitError
}

// printError writes err as "escrow: <message> (code, request <id>)" with a
// hint for the errors a user can fix.
func (a *app) printError(err error) {
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(a.stderr, "escrow: cannot reach the Escrow server at %s: %v (unavailable)\n", a.server, ue.Err)
		fmt.Fprintf(a.stderr, "escrow: hint: start one with 'escrow server -dev', or point --server / ESCROW_SERVER at yours\n")
		return
	}
	fmt.Fprintf(a.stderr, "escrow: %v\n", err)
	switch {
	case client.IsCode(err, "unauthenticated"):
		fmt.Fprintf(a.stderr, "escrow: hint: your token is missing, expired or for another server; run 'escrow login' again\n")
	case errors.Is(err, errNotLoggedIn):
		fmt.Fprintf(a.stderr, "escrow: hint: 'escrow login --dev alice' against a dev server, or set ESCROW_TOKEN\n")
	}
}

func (a *app) rootCmd() *cobra.Command {
	server := a.getenv("ESCROW_SERVER")
	if server == "" {
		server = defaultServer
	}
	root := &cobra.Command{
		Use:   "escrow",
		Short: "Store and reveal privileged credentials in the Escrow vault",
		Long: `escrow is the command line client of the Escrow vault.

It stores secrets (passwords, SSH keys, API keys, generic fields) in folders,
reveals them to people and scripts the access lists allow, and shows the audit
trail that records every read and change. With 'escrow server -dev' it also
runs a complete local server.

A secret argument is either its id or its full path, starting with "/"
(for example /prod/db/admin).

Environment:
  ESCROW_SERVER      server URL (default ` + defaultServer + `); --server wins
  ESCROW_TOKEN       bearer token; wins over the one stored by 'escrow login'
  ESCROW_CONFIG_DIR  where 'escrow login' stores the token (default: the
                     user config directory + /escrow)`,
		Example: `  escrow server -dev &                      # local server with demo users
  escrow login --dev alice
  escrow secret create /prod/db/admin --type password --field username=admin
  PGPASSWORD=$(escrow secret reveal /prod/db/admin --field password)`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "text" && a.output != "json" {
				return usagef("-o must be text or json, not %q", a.output)
			}
			a.started = true
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.server, "server", server, "Escrow server URL (env ESCROW_SERVER)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		a.serverCmd(),
		a.loginCmd(),
		a.logoutCmd(),
		a.whoamiCmd(),
		a.secretCmd(),
		a.folderCmd(),
		a.policyCmd(),
		a.requestCmd(),
		a.requestsCmd(),
		a.decideCmd(true),
		a.decideCmd(false),
		a.cancelCmd(),
		a.grantsCmd(),
		a.revokeCmd(),
		a.ticketSystemCmd(),
		a.checkoutCmd(),
		a.checkinCmd(),
		a.extendCmd(),
		a.forceCheckinCmd(),
		a.checkoutStatusCmd(),
		a.rotationCmd(),
		a.auditCmd(),
		a.reportCmd(),
		a.qlockCmd(),
	)
	return root
}

// groupCmd makes a command that only holds subcommands: alone it prints its
// help, with an unknown subcommand it is a usage error (cobra would
// otherwise print help and exit 0).
func groupCmd(use, short, long, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d arguments)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// minArgs requires at least n arguments.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s takes %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

var errNotLoggedIn = errors.New("not logged in")

// httpClient is shared by every command; the timeout keeps a hung server
// from hanging a script forever.
var httpClient = &http.Client{Timeout: 60 * time.Second}

// anonClient returns a client without a token (for login).
func (a *app) anonClient() *client.Client {
	c := client.New(a.server, "", httpClient)
	c.UserAgent = "escrow-cli"
	return c
}

// client returns a client with the caller's token: ESCROW_TOKEN if set,
// otherwise the token stored by 'escrow login'.
func (a *app) client() (*client.Client, error) {
	tok, err := a.token()
	if err != nil {
		return nil, err
	}
	c := client.New(a.server, tok, httpClient)
	c.UserAgent = "escrow-cli"
	return c, nil
}

func (a *app) token() (string, error) {
	if t := strings.TrimSpace(a.getenv("ESCROW_TOKEN")); t != "" {
		return t, nil
	}
	path, err := a.tokenPath()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", errNotLoggedIn
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", errNotLoggedIn
	}
	return t, nil
}

// tokenPath is $ESCROW_CONFIG_DIR/token, or <user config dir>/escrow/token.
func (a *app) tokenPath() (string, error) {
	dir := a.getenv("ESCROW_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("find config directory (set ESCROW_CONFIG_DIR): %w", err)
		}
		dir = filepath.Join(base, "escrow")
	}
	return filepath.Join(dir, "token"), nil
}

func (a *app) json() bool { return a.output == "json" }
