package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// terminal returns standard input as a file if it is a terminal, so that
// secrets can be typed without echo instead of passing through shell
// history.
func (a *app) terminal() (*os.File, bool) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// readPassword prompts on w and reads one line from the terminal f without
// echo.
func readPassword(w io.Writer, f *os.File, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("read from terminal: %w", err)
	}
	return string(b), nil
}

// promptNew asks for a new value twice, so a typo is not stored unnoticed.
func (a *app) promptNew(f *os.File, what string) (string, error) {
	v, err := readPassword(a.stderr, f, strings.ToUpper(what[:1])+what[1:]+": ")
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", errors.New("empty value: nothing stored")
	}
	again, err := readPassword(a.stderr, f, "Repeat "+what+": ")
	if err != nil {
		return "", err
	}
	if again != v {
		return "", errors.New("the two entries differ: nothing stored")
	}
	return v, nil
}

// parseFields turns --field arguments into a secret value:
//
//	name=value   the value as given
//	name=@file   the file's content, verbatim
//	name=-       standard input, without one trailing newline
//	name         typed at a terminal prompt, without echo
//
// Errors in the arguments are usage errors; what names the secret in
// prompts.
func (a *app) parseFields(args []string, what string) (escrow.SecretValue, error) {
	v := escrow.SecretValue{}
	usedStdin := false
	for _, arg := range args {
		name, val, hasVal := strings.Cut(arg, "=")
		if name == "" {
			return nil, usagef("--field %q: want name=value, name=@file, name=- or name", arg)
		}
		if _, dup := v[name]; dup {
			return nil, usagef("--field %s given twice", name)
		}
		switch {
		case !hasVal:
			f, ok := a.terminal()
			if !ok {
				return nil, usagef("--field %s has no value and standard input is not a terminal to prompt on; use %s=-, %s=@file or %s=value", name, name, name, name)
			}
			s, err := a.promptNew(f, fmt.Sprintf("%s for %s", name, what))
			if err != nil {
				return nil, err
			}
			val = s
		case val == "-":
			if usedStdin {
				return nil, usagef("only one --field can read standard input (%s=-)", name)
			}
			usedStdin = true
			b, err := io.ReadAll(io.LimitReader(a.stdin, escrow.MaxValueBytes+1))
			if err != nil {
				return nil, fmt.Errorf("read --field %s from stdin: %w", name, err)
			}
			val = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		case strings.HasPrefix(val, "@"):
			b, err := readLimited(val[1:])
			if err != nil {
				return nil, fmt.Errorf("read --field %s: %w", name, err)
			}
			val = string(b)
		}
		v[name] = val
	}
	return v, nil
}

// readLimited reads a file, refusing anything larger than a secret can be.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(bufio.NewReader(io.LimitReader(f, escrow.MaxValueBytes+1)))
	if err != nil {
		return nil, err
	}
	if len(b) > escrow.MaxValueBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, escrow.MaxValueBytes)
	}
	return b, nil
}

// parseKV parses repeated key=value flags (tags).
func parseKV(flag string, args []string) (map[string]string, error) {
	m := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, usagef("--%s %q: want key=value", flag, arg)
		}
		m[k] = v
	}
	return m, nil
}

// parseACE parses "user:bob=view" and checks it as the server would.
func parseACE(s string) (escrow.ACE, error) {
	p, perm, ok := strings.Cut(s, "=")
	if !ok {
		return escrow.ACE{}, usagef("acl entry %q: want principal=permission, like user:bob=view or group:dba=edit", s)
	}
	e := escrow.ACE{Principal: p, Permission: escrow.Permission(perm)}
	if err := e.Validate(); err != nil {
		return escrow.ACE{}, usagef("acl entry %q: %s", s, escrow.ErrorMessage(err))
	}
	return e, nil
}

func parseACL(entries []string) ([]escrow.ACE, error) {
	acl := make([]escrow.ACE, 0, len(entries))
	for _, s := range entries {
		e, err := parseACE(s)
		if err != nil {
			return nil, err
		}
		acl = append(acl, e)
	}
	if err := escrow.ValidateACL(acl); err != nil {
		return nil, usagef("%s", escrow.ErrorMessage(err))
	}
	return acl, nil
}

// stdoutTerminal reports whether standard output is a terminal.
func (a *app) stdoutTerminal() (*os.File, bool) {
	f, ok := a.stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}
