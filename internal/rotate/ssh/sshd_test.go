package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/rotate/sshtest"
	xssh "golang.org/x/crypto/ssh"
)

// TestMain checks that this machine's own account files are byte for byte
// what they were before the tests, whatever the tests did to the copies
// their sshds use.
func TestMain(m *testing.M) {
	before, err := sshtest.HashHostFiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hash account files:", err)
		os.Exit(1)
	}
	code := m.Run()
	after, err := sshtest.HashHostFiles()
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "hash account files:", err)
		code = 1
	case after != before:
		fmt.Fprintf(os.Stderr, "THIS MACHINE'S ACCOUNT FILES CHANGED during the tests:\nbefore %s\nafter  %s\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// recorder is a Target on the real x/crypto/ssh that records every dial
// and command, and logs to a buffer.
type recorder struct {
	*Target
	mu    sync.Mutex
	dials int
	cmds  []string
	stdin []string
	log   bytes.Buffer
}

func newRecorder() *recorder {
	r := &recorder{Target: New()}
	r.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &r.mu, w: &r.log}, nil))
	r.dial = func(ctx context.Context, addr string, cfg *xssh.ClientConfig) (conn, error) {
		r.mu.Lock()
		r.dials++
		r.mu.Unlock()
		c, err := dialSSH(ctx, addr, cfg)
		if err != nil {
			return nil, err
		}
		return &recordingConn{conn: c, r: r}, nil
	}
	return r
}

type recordingConn struct {
	conn
	r *recorder
}

func (c *recordingConn) Run(cmd, stdin string) (string, error) {
	c.r.mu.Lock()
	c.r.cmds = append(c.r.cmds, cmd)
	c.r.stdin = append(c.r.stdin, stdin)
	c.r.mu.Unlock()
	return c.conn.Run(cmd, stdin)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// assertClean fails if a command line, the log or sshd's log holds a
// password.
func (r *recorder) assertClean(t *testing.T, srv *sshtest.Server) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	secrets := append([]string{srv.Root.Password}, allSecrets...)
	for _, p := range secrets {
		for _, c := range r.cmds {
			if strings.Contains(c, p) {
				t.Errorf("command line %q holds a password", c)
			}
		}
		if strings.Contains(r.log.String(), p) {
			t.Errorf("log holds a password:\n%s", r.log.String())
		}
		if strings.Contains(srv.Log(), p) {
			t.Errorf("sshd's log holds a password")
		}
	}
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSSHRootChangesPassword(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	srv.AddUser(t, "bob", oldPassword)
	acct := srv.Account("bob")
	r := newRecorder()
	root := escrow.Credentials{Username: "root", Password: srv.Root.Password}

	if err := r.Test(testCtx(t), acct, oldPassword); err != nil {
		t.Fatalf("Test(old) before: %v", err)
	}
	before := srv.ShadowLine(t, "bob")
	if err := r.Set(testCtx(t), acct, root, newPassword); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if after := srv.ShadowLine(t, "bob"); after == before {
		t.Fatal("the copy's shadow line did not change")
	}
	if err := r.Test(testCtx(t), acct, newPassword); err != nil {
		t.Fatalf("Test(new): %v", err)
	}
	err := r.Test(testCtx(t), acct, oldPassword)
	if !errors.Is(err, escrow.ErrLoginRefused) || escrow.ErrorCode(err) != escrow.CodeForbidden {
		t.Fatalf("Test(old) = %v, want ErrLoginRefused (forbidden)", err)
	}
	assertNoSecret(t, err)

	want := []string{cmdTest, cmdChpasswd, cmdTest}
	if fmt.Sprint(r.cmds) != fmt.Sprint(want) {
		t.Errorf("commands %q, want %q", r.cmds, want)
	}
	if r.stdin[1] != "bob:"+newPassword+"\n" {
		t.Error("chpasswd was not fed the line on stdin")
	}
	if !strings.Contains(r.log.String(), "password changed") {
		t.Errorf("no log line: %q", r.log.String())
	}
	r.assertClean(t, srv)
}

func TestSSHRootKeyLogin(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	srv.AddUser(t, "carol", oldPassword)
	r := newRecorder()
	key := escrow.Credentials{Username: "root", PrivateKey: srv.Root.PrivateKey}
	if err := r.Set(testCtx(t), srv.Account("carol"), key, newPassword); err != nil {
		t.Fatalf("Set with a private key: %v", err)
	}
	if err := r.Test(testCtx(t), srv.Account("carol"), newPassword); err != nil {
		t.Fatalf("Test(new): %v", err)
	}
	r.assertClean(t, srv)
}

func TestSSHKeyboardInteractive(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t, sshtest.KeyboardInteractiveOnly())
	srv.AddUser(t, "dave", oldPassword)
	acct := srv.Account("dave")
	r := newRecorder()
	if err := r.Set(testCtx(t), acct, escrow.Credentials{Username: "root", Password: srv.Root.Password}, newPassword); err != nil {
		t.Fatalf("Set through keyboard-interactive: %v", err)
	}
	if err := r.Test(testCtx(t), acct, newPassword); err != nil {
		t.Fatalf("Test(new): %v", err)
	}
	if err := r.Test(testCtx(t), acct, oldPassword); !errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Test(old) = %v, want ErrLoginRefused", err)
	}
	if !strings.Contains(srv.Log(), "keyboard-interactive/pam for dave") {
		t.Errorf("sshd did not log a keyboard-interactive login:\n%s", srv.Log())
	}
	r.assertClean(t, srv)
}

func TestSSHWrongPrivilegedPassword(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	srv.AddUser(t, "erin", oldPassword)
	acct := srv.Account("erin")
	r := newRecorder()
	before := srv.ShadowLine(t, "erin")
	err := r.Set(testCtx(t), acct, escrow.Credentials{Username: "root", Password: adminPassword}, newPassword)
	if !errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set = %v, want ErrLoginRefused", err)
	}
	assertNoSecret(t, err)
	if srv.ShadowLine(t, "erin") != before {
		t.Fatal("the password changed")
	}
	if err := r.Test(testCtx(t), acct, oldPassword); err != nil {
		t.Fatalf("Test(old): %v", err)
	}
	if len(r.cmds) != 1 { // only Test's true
		t.Errorf("commands ran: %q", r.cmds)
	}
	r.assertClean(t, srv)
}

func TestSSHHostKeyMismatch(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	srv.AddUser(t, "frank", oldPassword)
	acct := srv.Account("frank")
	_, other := hostKey(t)
	acct.Options = map[string]string{"hostKey": other}
	r := newRecorder()
	before := srv.ShadowLine(t, "frank")
	for name, err := range map[string]error{
		"Set":  r.Set(testCtx(t), acct, escrow.Credentials{Username: "root", Password: srv.Root.Password}, newPassword),
		"Test": r.Test(testCtx(t), acct, oldPassword),
	} {
		if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, errHostKeyMismatch) {
			t.Errorf("%s = %v, want ErrUnavailable for a host key mismatch", name, err)
		}
		assertNoSecret(t, err)
	}
	if srv.ShadowLine(t, "frank") != before {
		t.Fatal("the password changed")
	}
	if len(r.cmds) != 0 {
		t.Errorf("commands ran: %q", r.cmds)
	}
	if strings.Contains(srv.Log(), "Accepted") || strings.Contains(srv.Log(), "Failed password") {
		t.Errorf("credentials reached a server with the wrong host key:\n%s", srv.Log())
	}
}

func TestSSHMissingHostKey(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	acct := srv.Account("root")
	acct.Options = nil
	r := newRecorder()
	err := r.Set(testCtx(t), acct, escrow.Credentials{Username: "escrowadm", Password: adminPassword}, newPassword)
	if !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("Set = %v, want ErrInvalid", err)
	}
	if err := r.Test(testCtx(t), acct, oldPassword); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("Test = %v, want ErrInvalid", err)
	}
	if r.dials != 0 {
		t.Errorf("dialled %d times without a host key", r.dials)
	}
}

func TestSSHChpasswdFails(t *testing.T) {
	t.Parallel()
	srv := sshtest.Start(t)
	r := newRecorder()
	err := r.Set(testCtx(t), srv.Account("ghost"), escrow.Credentials{Username: "root", Password: srv.Root.Password}, newPassword)
	var exit *exitError
	if !errors.Is(err, escrow.ErrUnavailable) || !errors.As(err, &exit) || exit.status == 0 {
		t.Fatalf("Set for a missing user = %v, want ErrUnavailable from chpasswd's exit status", err)
	}
	if !strings.Contains(exit.stderr, "ghost") {
		t.Errorf("chpasswd's stderr %q is lost", exit.stderr)
	}
	assertNoSecret(t, err)
	r.assertClean(t, srv)
}

func TestSSHUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	acct := account(t)
	acct.Host, acct.Port = "127.0.0.1", fmt.Sprint(addr.Port)
	target := New()
	for name, err := range map[string]error{
		"Set":  target.Set(testCtx(t), acct, escrow.Credentials{Username: "root", Password: adminPassword}, newPassword),
		"Test": target.Test(testCtx(t), acct, oldPassword),
	} {
		if !errors.Is(err, escrow.ErrUnavailable) || errors.Is(err, escrow.ErrLoginRefused) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
		}
		assertNoSecret(t, err)
	}
}

// TestSSHTimeout: a server that accepts and never speaks costs Timeout,
// and a cancelled context ends the attempt at once.
func TestSSHTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	acct := account(t)
	acct.Host, acct.Port = "127.0.0.1", fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	target := New()
	target.Timeout = 200 * time.Millisecond
	began := time.Now()
	err = target.Test(context.Background(), acct, oldPassword)
	if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Test = %v, want ErrUnavailable after the deadline", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %v with a 200ms timeout", d)
	}

	target.Timeout = 0 // the default, 10s; the context ends first
	c, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	began = time.Now()
	err = target.Set(c, acct, escrow.Credentials{Username: "root", Password: adminPassword}, newPassword)
	if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Set = %v, want ErrUnavailable on cancel", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
}
