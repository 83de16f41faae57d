package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
)

func (a *app) loginCmd() *cobra.Command {
	var devUser string
	cmd := &cobra.Command{
		Use:   "login [--dev USER]",
		Short: "Store a token for the following commands",
		Long: `Store a bearer token so that later commands are authenticated.

With --dev USER it asks a development server ('escrow server -dev') to mint a
token for one of its demo users: alice, bob, carol, admin (role admin) or
auditor (role auditor).

Without --dev it takes a token issued by your identity provider from
ESCROW_TOKEN, or else reads it from standard input (typed without echo when
standard input is a terminal).

The token is checked against the server (GET /v1/me) and then written to
$ESCROW_CONFIG_DIR/token (default: your config directory + /escrow/token)
with mode 0600. ESCROW_TOKEN, when set, always wins over the stored token.`,
		Example: `  escrow login --dev alice
  ESCROW_TOKEN=eyJhbGciOi... escrow login
  my-idp-cli print-token | escrow login --server https://vault.example.com`,
		Args: exactArgs(0, "no arguments (did you mean 'escrow login --dev USER'?)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var tok string
			if devUser != "" {
				t, err := a.anonClient().DevToken(ctx, devUser)
				if err != nil {
					return err
				}
				tok = t.Token
			} else {
				var err error
				if tok, err = a.readToken(); err != nil {
					return err
				}
			}
			c := client.New(a.server, tok, httpClient)
			c.UserAgent = "escrow-cli"
			me, err := c.Me(ctx)
			if err != nil {
				return fmt.Errorf("check token: %w", err)
			}
			path, err := a.tokenPath()
			if err != nil {
				return err
			}
			if err := writeToken(path, tok); err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, me)
			}
			who := me.Subject
			if me.Email != "" {
				who += " <" + me.Email + ">"
			}
			fmt.Fprintf(a.stdout, "Logged in to %s as %s.\n", a.server, who)
			if a.getenv("ESCROW_TOKEN") != "" && devUser != "" {
				fmt.Fprintln(a.stderr, "escrow: note: ESCROW_TOKEN is set and wins over the stored token; unset it to use this login")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&devUser, "dev", "", "demo user to get a token for from a dev server")
	return cmd
}

// readToken takes the token from ESCROW_TOKEN or standard input.
func (a *app) readToken() (string, error) {
	if t := strings.TrimSpace(a.getenv("ESCROW_TOKEN")); t != "" {
		return t, nil
	}
	if f, ok := a.terminal(); ok {
		b, err := readPassword(a.stderr, f, "Token: ")
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(b), nil
	}
	b, err := io.ReadAll(io.LimitReader(a.stdin, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read token from stdin: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usagef("no token: use --dev USER with a dev server, set ESCROW_TOKEN, or pipe a token to standard input")
	}
	return t, nil
}

// writeToken stores tok with mode 0600 in a 0700 directory. It writes a
// temporary file and renames it, so a crash never leaves half a token.
func writeToken(path, tok string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Remove the stored token",
		Long: `Remove the token that 'escrow login' stored. The token itself stays valid
until it expires; logout only forgets it on this machine.`,
		Example: `  escrow logout`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := a.tokenPath()
			if err != nil {
				return err
			}
			err = os.Remove(path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				fmt.Fprintln(a.stdout, "Not logged in.")
			case err != nil:
				return fmt.Errorf("remove token: %w", err)
			default:
				fmt.Fprintln(a.stdout, "Logged out.")
			}
			if a.getenv("ESCROW_TOKEN") != "" {
				fmt.Fprintln(a.stderr, "escrow: note: ESCROW_TOKEN is still set in your environment")
			}
			return nil
		},
	}
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the server thinks you are",
		Long: `Show the principal of your token as the server sees it: subject, email,
name, groups and roles. Groups and roles decide what the access lists let
you do.`,
		Example: `  escrow whoami
  escrow whoami -o json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			me, err := c.Me(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, me)
			}
			t := newTable(a.stdout)
			t.row("Subject:", me.Subject)
			t.row("Email:", me.Email)
			t.row("Name:", me.Name)
			t.row("Groups:", strings.Join(me.Groups, ", "))
			t.row("Roles:", strings.Join(me.Roles, ", "))
			t.row("Server:", a.server)
			return t.flush()
		},
	}
}
