package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/devserver"
)

// serverLongFlags may be written Go-style with one dash (`-dev`), as the
// docs and `make run` do; pflag alone would read -dev as -d -e -v.
var serverLongFlags = []string{"dev", "addr", "data", "no-seed", "siem-file", "siem-format", "digest-period", "help"}

func (a *app) serverCmd() *cobra.Command {
	var (
		dev                  bool
		addr                 string
		data                 string
		noSeed               bool
		siemFile, siemFormat string
		digestPeriod         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "server -dev [--addr HOST:PORT] [--data DIR] [--no-seed] [--siem-file PATH|-] [--digest-period D]",
		Short: "Run the local all-in-one Escrow server (-dev only)",
		Long: `Run the Escrow API on this machine for development and demos.

-dev is required: it runs the same HTTP API as the AWS deployment, with the
embedded SQLite store, a local master key file and a development token issuer,
all kept in the --data directory (created with mode 0700). On its first run it
seeds demo users' secrets (unless --no-seed) and prints the URL, tokens for
the demo users (alice, bob, carol, admin, auditor) and curl and CLI examples.

Every audit record is also sealed into signed digests in DATA/digests (one
per --digest-period; check them with escrow audit verify) and, with
--siem-file, exported as a SIEM event per line (--siem-format json or cef;
"-" is standard output).

It runs until interrupted (Ctrl-C or SIGTERM), then shuts down gracefully.

There is no non-dev local server: in production the API is the api Lambda
behind API Gateway (see template.yaml); point the CLI at it with --server.`,
		Example: `  escrow server -dev
  escrow server -dev --addr 127.0.0.1:9090 --data /tmp/escrow-demo --no-seed
  escrow server -dev --siem-file - --siem-format cef`,
		// Parsed below, after turning -dev into --dev.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := fs.Parse(goStyleFlags(args, serverLongFlags)); err != nil {
				return &usageError{err}
			}
			if help, _ := fs.GetBool("help"); help {
				return cmd.Help()
			}
			// Check the global flags that cobra left unparsed.
			if err := cmd.Root().PersistentPreRunE(cmd, fs.Args()); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usagef("escrow server takes no arguments (got %q)", fs.Arg(0))
			}
			if !dev {
				return usagef("escrow server runs only with -dev on this machine (embedded store, local keys, dev tokens); " +
					"the AWS deployment serves the API from the api Lambda behind API Gateway, so point --server or ESCROW_SERVER at that instead")
			}
			return a.runDevServer(cmd.Context(), devserver.Config{Addr: addr, DataDir: data, Seed: !noSeed,
				SIEMFile: siemFile, SIEMFormat: siemFormat, DigestPeriod: digestPeriod})
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "run the development server (required)")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address; port 0 picks a free port")
	cmd.Flags().StringVar(&data, "data", "./.escrow", "directory for the SQLite database, master key and dev issuer key")
	cmd.Flags().BoolVar(&noSeed, "no-seed", false, "do not create demo secrets on first run")
	cmd.Flags().StringVar(&siemFile, "siem-file", "", `append every audit record as a SIEM event to this file ("-": standard output)`)
	cmd.Flags().StringVar(&siemFormat, "siem-format", "json", "SIEM event format: json (one JSON event per line) or cef")
	cmd.Flags().DurationVar(&digestPeriod, "digest-period", time.Minute, "how much of the audit log each signed digest seals")
	return cmd
}

func (a *app) runDevServer(ctx context.Context, cfg devserver.Config) error {
	// Handle signals before Start, so an early Ctrl-C is a clean shutdown.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Out = a.stdout
	srv, err := devserver.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start dev server: %w", err)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(a.stderr, "escrow: shutting down")
	case <-srv.Done():
		_ = srv.Close()
		return fmt.Errorf("dev server stopped unexpectedly")
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("stop dev server: %w", err)
	}
	return nil
}

// goStyleFlags rewrites -name and -name=value into --name forms for the
// given long flag names, up to a "--" terminator.
func goStyleFlags(args, names []string) []string {
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(arg, "-") && !strings.HasPrefix(arg, "--") {
			name, _, _ := strings.Cut(arg[1:], "=")
			if slices.Contains(names, name) {
				arg = "-" + arg
			}
		}
		out = append(out, arg)
	}
	return out
}
