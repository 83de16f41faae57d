package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
	xssh "golang.org/x/crypto/ssh"
)

const (
	oldPassword   = "old-Secret-1#"
	newPassword   = "new-Secret-2#"
	adminPassword = "admin-Secret-3#"
)

var allSecrets = []string{oldPassword, newPassword, adminPassword}

// assertNoSecret fails if err, or any error it wraps, shows a password.
func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	for _, e := range chain(err) {
		for _, p := range allSecrets {
			if strings.Contains(e.Error(), p) {
				t.Errorf("error %q holds a password", e.Error())
			}
		}
	}
}

func chain(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, chain(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, chain(e)...)
		}
	}
	return out
}

func hostKey(t testing.TB) (xssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := xssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(xssh.MarshalAuthorizedKey(k)))
}

// fakeConn answers commands from a script and records what it was sent.
type fakeConn struct {
	answers map[string][]result // per command, in order
	ran     []ran
	closed  bool
}

type result struct {
	stderr string
	err    error
}

type ran struct{ cmd, stdin string }

func (f *fakeConn) Run(cmd, stdin string) (string, error) {
	f.ran = append(f.ran, ran{cmd, stdin})
	rs := f.answers[cmd]
	if len(rs) == 0 {
		return "", nil
	}
	r := rs[0]
	f.answers[cmd] = rs[1:]
	return r.stderr, r.err
}

func (f *fakeConn) Close() error { f.closed = true; return nil }

func fakeTarget(f *fakeConn, dialErr error) (*Target, *[]*xssh.ClientConfig) {
	var cfgs []*xssh.ClientConfig
	t := New()
	t.dial = func(_ context.Context, _ string, cfg *xssh.ClientConfig) (conn, error) {
		cfgs = append(cfgs, cfg)
		if dialErr != nil {
			return nil, dialErr
		}
		return f, nil
	}
	return t, &cfgs
}

func account(t testing.TB) escrow.TargetAccount {
	_, hk := hostKey(t)
	return escrow.TargetAccount{Username: "bob", Host: "db1.example", Options: map[string]string{"hostKey": hk}}
}

func exit(status int) error { return &exitError{status: status} }

func TestSetRefusesBeforeDialing(t *testing.T) {
	acct := account(t)
	root := escrow.Credentials{Username: "root", Password: adminPassword}
	with := func(f func(a *escrow.TargetAccount)) escrow.TargetAccount {
		a := acct
		a.Options = map[string]string{"hostKey": acct.Options["hostKey"]}
		f(&a)
		return a
	}
	_, otherKey := hostKey(t)
	cases := []struct {
		name  string
		acct  escrow.TargetAccount
		login escrow.Credentials
		next  string
	}{
		{"no host key", with(func(a *escrow.TargetAccount) { a.Options = nil }), root, newPassword},
		{"empty host key", with(func(a *escrow.TargetAccount) { a.Options["hostKey"] = " " }), root, newPassword},
		{"garbage host key", with(func(a *escrow.TargetAccount) { a.Options["hostKey"] = "ssh-ed25519 AAAAnope" }), root, newPassword},
		{"two host keys", with(func(a *escrow.TargetAccount) { a.Options["hostKey"] += "\n" + otherKey }), root, newPassword},
		{"no host", with(func(a *escrow.TargetAccount) { a.Host = "" }), root, newPassword},
		{"bad port", with(func(a *escrow.TargetAccount) { a.Port = "99999" }), root, newPassword},
		{"no username", with(func(a *escrow.TargetAccount) { a.Username = "" }), root, newPassword},
		{"colon in username", with(func(a *escrow.TargetAccount) { a.Username = "bob:x" }), root, newPassword},
		{"newline in username", with(func(a *escrow.TargetAccount) { a.Username = "bob\nroot" }), root, newPassword},
		{"self change", acct, escrow.Credentials{Username: "bob", Password: oldPassword}, newPassword},
		{"no login secret", acct, escrow.Credentials{Username: "root"}, newPassword},
		{"no login name", acct, escrow.Credentials{Password: adminPassword}, newPassword},
		{"bad private key", acct, escrow.Credentials{Username: "root", PrivateKey: "-----BEGIN NOTHING-----"}, newPassword},
		{"empty new password", acct, root, ""},
		{"newline in new password", acct, root, newPassword + "\nroot:owned"},
		{"newline in sudo password", acct, escrow.Credentials{Username: "admin", Password: adminPassword + "\n"}, newPassword},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeConn{}
			target, cfgs := fakeTarget(f, nil)
			err := target.Set(context.Background(), c.acct, c.login, c.next)
			if !errors.Is(err, escrow.ErrInvalid) {
				t.Fatalf("Set = %v, want ErrInvalid", err)
			}
			if len(*cfgs) != 0 {
				t.Fatal("Set dialled")
			}
			assertNoSecret(t, err)
		})
	}
	t.Run("test without host key", func(t *testing.T) {
		target, cfgs := fakeTarget(&fakeConn{}, nil)
		err := target.Test(context.Background(), with(func(a *escrow.TargetAccount) { a.Options = nil }), oldPassword)
		if !errors.Is(err, escrow.ErrInvalid) || len(*cfgs) != 0 {
			t.Fatalf("Test = %v after %d dials, want ErrInvalid and none", err, len(*cfgs))
		}
	})
}

// TestSetCommands checks what each kind of privileged login runs and
// feeds: passwords only ever on stdin, the sudo password only to a sudo
// that reads it.
func TestSetCommands(t *testing.T) {
	line := "bob:" + newPassword + "\n"
	cases := []struct {
		name    string
		login   escrow.Credentials
		answers map[string][]result
		want    []ran
		wantErr error
	}{
		{
			name:  "root",
			login: escrow.Credentials{Username: "root", Password: adminPassword},
			want:  []ran{{cmdChpasswd, line}},
		},
		{
			name:  "sudo without password",
			login: escrow.Credentials{Username: "admin", Password: adminPassword},
			want:  []ran{{cmdSudoNoPassword, ""}, {cmdSudoNoPassword, line}},
		},
		{
			name:    "sudo with password",
			login:   escrow.Credentials{Username: "admin", Password: adminPassword},
			answers: map[string][]result{cmdSudoNoPassword: {{"sudo: a password is required", exit(1)}}},
			want:    []ran{{cmdSudoNoPassword, ""}, {cmdSudoCheck, adminPassword + "\n"}, {cmdSudoChpasswd, adminPassword + "\n" + line}},
		},
		{
			name:  "sudo refuses the password",
			login: escrow.Credentials{Username: "admin", Password: adminPassword},
			answers: map[string][]result{
				cmdSudoNoPassword: {{"sudo: a password is required", exit(1)}},
				cmdSudoCheck:      {{"Sorry, try again.\nsudo: 1 incorrect password attempt", exit(1)}},
			},
			want:    []ran{{cmdSudoNoPassword, ""}, {cmdSudoCheck, adminPassword + "\n"}},
			wantErr: escrow.ErrLoginRefused,
		},
		{
			name:    "sudo needs a password the login lacks",
			login:   escrow.Credentials{Username: "admin", PrivateKey: testKey(t)},
			answers: map[string][]result{cmdSudoNoPassword: {{"sudo: a password is required", exit(1)}}},
			want:    []ran{{cmdSudoNoPassword, ""}},
			wantErr: escrow.ErrInvalid,
		},
		{
			name:    "sudo missing",
			login:   escrow.Credentials{Username: "admin", Password: adminPassword},
			answers: map[string][]result{cmdSudoNoPassword: {{"sh: 1: sudo: not found", exit(127)}}},
			want:    []ran{{cmdSudoNoPassword, ""}},
			wantErr: escrow.ErrUnavailable,
		},
		{
			name:    "chpasswd fails",
			login:   escrow.Credentials{Username: "root", Password: adminPassword},
			answers: map[string][]result{cmdChpasswd: {{"chpasswd: (user bob) pam_chauthtok() failed for " + newPassword, exit(1)}}},
			want:    []ran{{cmdChpasswd, line}},
			wantErr: escrow.ErrUnavailable,
		},
		{
			name:    "session fails",
			login:   escrow.Credentials{Username: "root", Password: adminPassword},
			answers: map[string][]result{cmdChpasswd: {{"", io.EOF}}},
			want:    []ran{{cmdChpasswd, line}},
			wantErr: escrow.ErrUnavailable,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeConn{answers: c.answers}
			if f.answers == nil {
				f.answers = map[string][]result{}
			}
			target, cfgs := fakeTarget(f, nil)
			err := target.Set(context.Background(), account(t), c.login, newPassword)
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("Set = %v, want %v", err, c.wantErr)
			}
			assertNoSecret(t, err)
			if fmt.Sprint(f.ran) != fmt.Sprint(c.want) {
				t.Errorf("ran %q\nwant %q", f.ran, c.want)
			}
			for _, r := range f.ran {
				for _, p := range allSecrets {
					if strings.Contains(r.cmd, p) {
						t.Errorf("command %q holds a password", r.cmd)
					}
				}
			}
			if !f.closed {
				t.Error("connection left open")
			}
			if len(*cfgs) != 1 || (*cfgs)[0].User != c.login.Username {
				t.Errorf("dialled %d times", len(*cfgs))
			}
		})
	}
}

func testKey(t testing.TB) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := xssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// TestConvertError is the table of STYLE 5: every kind of failure
// x/crypto/ssh, the network and the remote commands produce, and the
// escrow error it becomes.
func TestConvertError(t *testing.T) {
	w := where{addr: "db1.example:22", user: "root"}
	refused := fmt.Errorf("%w: methods tried [none password], server allows [password]", errRefused)
	cases := []struct {
		name     string
		err      error
		ctxErr   error
		code     escrow.Code
		refused  bool
		mismatch bool
	}{
		{"auth methods exhausted", fmt.Errorf("log in: ssh: handshake failed: %w", refused), nil, escrow.CodeForbidden, true, false},
		{"sudo refused", fmt.Errorf("%w: sudo: %w", errRefused, &exitError{cmd: cmdSudoCheck, status: 1}), nil, escrow.CodeForbidden, true, false},
		{"host key mismatch", fmt.Errorf("log in: ssh: handshake failed: %w: SHA256:x", errHostKeyMismatch), nil, escrow.CodeUnavailable, false, true},
		{"connection refused", fmt.Errorf("log in: dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), nil, escrow.CodeUnavailable, false, false},
		{"no such host", fmt.Errorf("log in: dial: %w", &net.DNSError{Err: "no such host", Name: "db1.example", IsNotFound: true}), nil, escrow.CodeUnavailable, false, false},
		{"server hung up", fmt.Errorf("log in: ssh: handshake failed: %w", io.EOF), nil, escrow.CodeUnavailable, false, false},
		{"timeout", fmt.Errorf("log in: %w", net.ErrClosed), context.DeadlineExceeded, escrow.CodeUnavailable, false, false},
		{"cancelled", fmt.Errorf("run chpasswd: %w", io.EOF), context.Canceled, escrow.CodeUnavailable, false, false},
		{"dial deadline", fmt.Errorf("log in: dial: %w", os.ErrDeadlineExceeded), nil, escrow.CodeUnavailable, false, false},
		{"command failed", &exitError{cmd: cmdChpasswd, status: 1, stderr: "chpasswd: line 1: user 'bob' does not exist"}, nil, escrow.CodeUnavailable, false, false},
		{"command killed", &exitError{cmd: cmdChpasswd, signal: "KILL"}, nil, escrow.CodeUnavailable, false, false},
		{"no exit status", fmt.Errorf("run chpasswd: %w", &xssh.ExitMissingError{}), nil, escrow.CodeUnavailable, false, false},
		{"session refused", fmt.Errorf("run chpasswd: open session: %w", &xssh.OpenChannelError{Reason: xssh.Prohibited, Message: "no"}), nil, escrow.CodeUnavailable, false, false},
		{"escrow error kept", escrow.Errorf(escrow.CodeInvalid, "sudo asks for a password"), nil, escrow.CodeInvalid, false, false},
		{"anything else", errors.New("ssh: unexpected message type 3"), nil, escrow.CodeUnavailable, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.ctxErr != nil {
				var cancel context.CancelFunc
				if c.ctxErr == context.DeadlineExceeded {
					ctx, cancel = context.WithTimeout(ctx, 0)
				} else {
					ctx, cancel = context.WithCancel(ctx)
				}
				cancel()
			}
			err := convertError(ctx, w, c.err)
			if got := escrow.ErrorCode(err); got != c.code {
				t.Errorf("code %s, want %s (%v)", got, c.code, err)
			}
			if errors.Is(err, escrow.ErrLoginRefused) != c.refused {
				t.Errorf("errors.Is(ErrLoginRefused) = %v, want %v", !c.refused, c.refused)
			}
			if errors.Is(err, errHostKeyMismatch) != c.mismatch {
				t.Errorf("errors.Is(errHostKeyMismatch) = %v, want %v", !c.mismatch, c.mismatch)
			}
			if c.ctxErr != nil && !errors.Is(err, c.ctxErr) {
				t.Errorf("%v does not wrap %v", err, c.ctxErr)
			}
			if escrow.ErrorMessage(err) == "internal error" {
				t.Error("no client-safe message")
			}
		})
	}
}

func TestClean(t *testing.T) {
	secrets := []string{newPassword, adminPassword}
	cases := []struct{ in, want string }{
		{"chpasswd: bad line " + newPassword + "\n\tand " + adminPassword, "chpasswd: bad line [redacted] and [redacted]"},
		{"bell\a and escape\x1b[1m", "bell and escape[1m"},
		{strings.Repeat("x", maxStderr-5) + newPassword[:5], strings.Repeat("x", 300) + "…"},
	}
	for _, c := range cases {
		if got := clean(c.in, secrets); got != c.want {
			t.Errorf("clean(%.40q) = %.80q, want %.80q", c.in, got, c.want)
		}
	}
	// A secret cut off at the end of a full buffer goes too.
	got := clean(strings.Repeat("x", maxStderr-5)+newPassword[:5], secrets)
	if strings.Contains(got, newPassword[:5]) {
		t.Error("a cut-off secret survived")
	}
}

func TestAnswerPassword(t *testing.T) {
	answer := answerPassword(oldPassword)
	if got, err := answer("", "", nil, nil); err != nil || len(got) != 0 {
		t.Errorf("no questions: %q, %v", got, err)
	}
	if _, err := answer("", "", []string{"Login: "}, []bool{true}); err == nil {
		t.Error("answered a visible prompt")
	}
	if got, err := answer("", "", []string{"Password: "}, []bool{false}); err != nil || len(got) != 1 || got[0] != oldPassword {
		t.Errorf("password prompt: %v", err)
	}
	if _, err := answer("", "", []string{"New password: "}, []bool{false}); err == nil {
		t.Error("answered a second password prompt")
	}
	if _, err := answerPassword(oldPassword)("", "", []string{"a", "b"}, []bool{false, false}); err == nil {
		t.Error("answered two questions")
	}
}

func TestHostKeyCallback(t *testing.T) {
	pinned, _ := hostKey(t)
	other, _ := hostKey(t)
	cfg := clientConfig("root", pinned, nil)
	if err := cfg.HostKeyCallback("h", nil, pinned); err != nil {
		t.Errorf("pinned key refused: %v", err)
	}
	if err := cfg.HostKeyCallback("h", nil, other); !errors.Is(err, errHostKeyMismatch) {
		t.Errorf("other key: %v, want errHostKeyMismatch", err)
	}
	if len(cfg.HostKeyAlgorithms) != 1 || cfg.HostKeyAlgorithms[0] != xssh.KeyAlgoED25519 {
		t.Errorf("host key algorithms %v", cfg.HostKeyAlgorithms)
	}
}

func TestAuthCallback(t *testing.T) {
	pinned, _ := hostKey(t)
	auth, err := authMethods(adminPassword, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig("root", pinned, auth)
	next := func(allowed, tried []string) (string, error) {
		m, err := cfg.AuthCallback(&xssh.ClientAuthContext{AllowedMethods: allowed, TriedMethods: tried})
		if err != nil {
			return "", err
		}
		for _, a := range auth {
			if fmt.Sprintf("%p", a.method) == fmt.Sprintf("%p", m) {
				return a.name, nil
			}
		}
		return "?", nil
	}
	all := []string{"publickey", "password", "keyboard-interactive"}
	for _, step := range []struct {
		allowed, tried []string
		want           string
	}{
		{all, []string{"none"}, "publickey"},
		{all, []string{"none", "publickey"}, "password"},
		{[]string{"publickey", "keyboard-interactive"}, []string{"none", "publickey"}, "keyboard-interactive"},
		{[]string{"keyboard-interactive"}, []string{"none"}, "keyboard-interactive"},
	} {
		if got, err := next(step.allowed, step.tried); err != nil || got != step.want {
			t.Errorf("allowed %v tried %v: %s, %v; want %s", step.allowed, step.tried, got, err, step.want)
		}
	}
	if _, err := next(all, append([]string{"none"}, all...)); !errors.Is(err, errRefused) {
		t.Errorf("all tried: %v, want errRefused", err)
	}
	// One wrong password is one failed attempt, not two.
	if _, err := next(all, []string{"none", "publickey", "password"}); !errors.Is(err, errRefused) {
		t.Errorf("password refused, then: %v, want errRefused rather than keyboard-interactive", err)
	}
	if _, err := next([]string{"gssapi-with-mic"}, []string{"none"}); !errors.Is(err, errRefused) {
		t.Errorf("nothing allowed: %v, want errRefused", err)
	}
}
