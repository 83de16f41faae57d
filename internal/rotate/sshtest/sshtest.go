// Package sshtest runs a real OpenSSH server (/usr/sbin/sshd) for tests of
// SSH adapters, on 127.0.0.1 and a free port.
//
// The server runs in its own mount and PID namespaces. There /etc is an
// overlay: this machine's /etc below, read only, and a per-server upper
// directory that takes every write, so logins, useradd, chpasswd and PAM
// change a copy of the account database, never this machine's own. /run,
// /var/log and /var/mail are empty tmpfs there (sshd's privilege separation
// directory, btmp, wtmp, lastlog, faillog). Every account of the copy is
// locked except root (a random password, and a test key) and the users a
// test adds. The start script refuses to exec sshd unless /etc is the
// overlay; when the namespace's first process dies the kernel kills the
// rest and the mounts vanish.
//
// Tests call Start. Without root, unshare, nsenter, useradd or sshd, or
// where the namespaces cannot be made, Start skips with a loud message,
// except under CI=true, where it fails the test (DESIGN 7).
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	xssh "golang.org/x/crypto/ssh"
)

// Server is a running sshd whose account database is a copy.
type Server struct {
	Host    string // 127.0.0.1
	Port    string
	HostKey string // the server's public key, authorized_keys form
	// Root logs in as root (PermitRootLogin yes) with Password or with
	// PrivateKey (PEM).
	Root escrow.Credentials

	dir    string // upper/ (the overlay's writes), work/, host key, config, log
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed when unshare has been reaped
	nsPID  int           // the namespace's first process, for nsenter
	mu     sync.Mutex    // one useradd at a time
	stop   sync.Once
}

// Option changes how Start configures sshd.
type Option func(*config)

type config struct {
	passwordAuth bool
}

// KeyboardInteractiveOnly turns sshd's "password" method off, so passwords
// go through keyboard-interactive (PAM), as on servers configured that way.
func KeyboardInteractiveOnly() Option { return func(c *config) { c.passwordAuth = false } }

// hostFiles are this machine's account files. Start hashes them and the
// test fails if they differ when the server stops.
var hostFiles = []string{"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"}

// Start runs sshd for the test and stops it, with every process of its
// namespaces, when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if reason := unavailable(); reason != "" {
		Skip(t, reason)
	}
	c := config{passwordAuth: true}
	for _, o := range opts {
		o(&c)
	}
	before, err := HashHostFiles()
	if err != nil {
		t.Fatalf("sshtest: hash this machine's account files: %v", err)
	}
	// Not t.TempDir: its name can hold a comma, which would end the
	// overlay's mount options.
	dir, err := os.MkdirTemp("", "sshtest-")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	began := time.Now()
	s, err := start(dir, c)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("sshtest: %v", err)
	}
	t.Logf("sshtest: sshd on %s:%s, started at %s, ready in %v", s.Host, s.Port, began.Format(time.RFC3339Nano), time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshtest: sshd log:\n%s", s.Log())
		}
		os.RemoveAll(dir)
		after, err := HashHostFiles()
		if err != nil {
			t.Errorf("sshtest: hash this machine's account files: %v", err)
		} else if after != before {
			t.Errorf("sshtest: THIS MACHINE'S ACCOUNT FILES CHANGED while sshd ran:\nbefore %s\nafter  %s", before, after)
		}
	})
	return s
}

// Skip skips t because a real sshd cannot run here, or fails it under
// CI=true.
func Skip(t testing.TB, reason string) {
	t.Helper()
	msg := "!!! " + reason + ": SKIPPING SSH tests against a real sshd !!!"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: this is a failure)")
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

// HashHostFiles returns a digest of this machine's account files
// (/etc/passwd, shadow, group, gshadow). A missing file counts as empty;
// one this process may not read (shadow, without root) as "unreadable".
func HashHostFiles() (string, error) {
	var b strings.Builder
	for _, f := range hostFiles {
		data, err := os.ReadFile(f)
		switch {
		case errors.Is(err, fs.ErrPermission):
			fmt.Fprintf(&b, "%s:unreadable ", filepath.Base(f))
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
		fmt.Fprintf(&b, "%s:%x ", filepath.Base(f), sha256.Sum256(data))
	}
	return strings.TrimSpace(b.String()), nil
}

var (
	availOnce   sync.Once
	availReason string
)

// unavailable says why a namespaced sshd cannot run here, or "".
func unavailable() string {
	availOnce.Do(func() {
		if os.Geteuid() != 0 {
			availReason = "sshtest needs root (to make namespaces and run sshd)"
			return
		}
		for _, p := range []string{"unshare", "nsenter", "mount", "/usr/sbin/sshd", "useradd", "chpasswd"} {
			if _, err := exec.LookPath(p); err != nil {
				availReason = fmt.Sprintf("sshtest needs %s (packages util-linux, mount, openssh-server, passwd)", p)
				return
			}
		}
		// The same namespaces and kinds of mount the server uses, on
		// nothing that matters.
		dir, err := os.MkdirTemp("", "sshtest-probe-")
		if err != nil {
			availReason = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		probe := `set -eu; mkdir "$1/lower" "$1/upper" "$1/work" "$1/merged"
mount -t overlay sshtest-probe -o "lowerdir=$1/lower,upperdir=$1/upper,workdir=$1/work" "$1/merged"
mount -t tmpfs sshtest-probe /run`
		out, err := exec.Command("unshare", append(unshareArgs, "/bin/sh", "-c", probe, "sh", dir)...).CombinedOutput()
		if err != nil {
			availReason = fmt.Sprintf("sshtest cannot make its namespaces and mounts here (%v: %s)", err, bytes.TrimSpace(out))
		}
	})
	return availReason
}

// unshareArgs make private mount and PID namespaces: mounts never reach
// this machine, and when the namespace's first process dies the kernel
// kills every other one (the per-connection sshds, which leave the process
// group by calling setsid).
var unshareArgs = []string{"--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc"}

// script runs inside the namespaces. $1 is the server's directory; root's
// password arrives on stdin, never on a command line (printf is a shell
// builtin).
const script = `set -eu
dir=$1
IFS= read -r rootpw
mount -t overlay sshtest-etc -o "lowerdir=/etc,upperdir=$dir/upper,workdir=$dir/work" /etc
[ -e /etc/.sshtest-overlay ] || { echo "sshtest: /etc is not the overlay; not starting sshd" >&2; exit 1; }
mount -t tmpfs -o mode=0755 sshtest-run /run
mkdir -m 0755 /run/sshd
for d in /var/log /var/mail /var/lib/sudo; do
	if [ -d "$d" ] && [ ! -L "$d" ]; then mount -t tmpfs -o mode=0755 sshtest-var "$d"; fi
done
printf 'root:%s\n' "$rootpw" | chpasswd
exec /usr/sbin/sshd -D -e -f "$dir/sshd_config"
`

func start(dir string, c config) (*Server, error) {
	s := &Server{Host: "127.0.0.1", dir: dir}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	var err error
	// A free port can be taken between choosing and binding it: try again.
	for range 3 {
		if err = s.launch(c); err == nil || !strings.Contains(s.Log(), "Address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// prepare writes the overlay's upper directory (the copy's shadow and
// gshadow, every password locked; root's key; the marker) and the host
// key.
func (s *Server) prepare() error {
	upper := filepath.Join(s.dir, "upper")
	for _, d := range []string{upper, filepath.Join(s.dir, "work"), filepath.Join(upper, "ssh", "sshtest_authorized_keys")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Lock every account and group password: the server accepts only the
	// passwords a test sets, never this machine's own, and the copy holds
	// none of this machine's hashes.
	for _, name := range []string{"shadow", "gshadow"} {
		if err := lockCopy(filepath.Join("/etc", name), filepath.Join(upper, name)); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/etc/nologin"); err == nil {
		// A whiteout: /etc/nologin would refuse every login but root's.
		if err := syscall.Mknod(filepath.Join(upper, "nologin"), syscall.S_IFCHR, 0); err != nil {
			return fmt.Errorf("hide /etc/nologin: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(upper, ".sshtest-overlay"), nil, 0o644); err != nil {
		return err
	}

	_, rootKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := xssh.MarshalPrivateKey(rootKey, "sshtest root")
	if err != nil {
		return err
	}
	signer, err := xssh.NewSignerFromKey(rootKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(upper, "ssh", "sshtest_authorized_keys", "root"), xssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		return err
	}
	s.Root = escrow.Credentials{Username: "root", Password: rand.Text(), PrivateKey: string(pem.EncodeToMemory(block))}

	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if block, err = xssh.MarshalPrivateKey(hostKey, "sshtest host"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "ssh_host_ed25519_key"), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	hostSigner, err := xssh.NewSignerFromKey(hostKey)
	if err != nil {
		return err
	}
	s.HostKey = strings.TrimSpace(string(xssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	return nil
}

// lockCopy writes to dst the lines of src (a shadow or gshadow file) with
// every password field set to "!", keeping src's mode and owner.
func lockCopy(src, dst string) error {
	data, err := os.ReadFile(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for i, l := range lines {
		if f := strings.Split(l, ":"); len(f) > 1 {
			f[1] = "!"
			lines[i] = strings.Join(f, ":")
		}
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Chown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

func (s *Server) launch(c config) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = strconv.Itoa(port)
	yesNo := map[bool]string{true: "yes", false: "no"}
	conf := fmt.Sprintf(`# sshtest: a throwaway server; /etc is an overlay inside a mount namespace.
Port %s
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile /etc/ssh/sshtest_authorized_keys/%%u
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication %s
KbdInteractiveAuthentication yes
UsePAM yes
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 64
`, s.Port, filepath.Join(s.dir, "ssh_host_ed25519_key"), filepath.Join(s.dir, "sshd.pid"), yesNo[c.passwordAuth])
	if err := os.WriteFile(filepath.Join(s.dir, "sshd_config"), []byte(conf), 0o600); err != nil {
		return err
	}
	if s.log != nil {
		s.log.Close()
	}
	if s.log, err = os.Create(filepath.Join(s.dir, "sshd.log")); err != nil {
		return err
	}
	args := append(append([]string{}, unshareArgs...), "/bin/sh", "-c", script, "sshtest", s.dir)
	s.cmd = exec.Command("unshare", args...)
	s.cmd.Stdin = strings.NewReader(s.Root.Password + "\n")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start unshare: %w", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		_ = s.cmd.Wait()
		close(exited)
	}()
	addr := net.JoinHostPort(s.Host, s.Port)
	deadline := time.Now().Add(10 * time.Second)
	for !speaksSSH(addr) {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited before listening:\n%s", s.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("sshd did not answer within 10s:\n%s", s.Log())
		}
	}
	// unshare --fork's child: the namespace's first process, now sshd.
	pid := s.cmd.Process.Pid
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		s.nsPID, err = strconv.Atoi(strings.TrimSpace(string(children)))
	}
	if err != nil {
		s.kill()
		return fmt.Errorf("find the namespace's process: %v", err)
	}
	return nil
}

// speaksSSH reports whether addr answers with an SSH banner.
func speaksSSH(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "SSH-2.0-")
}

// kill ends the namespace's first process: the kernel kills every other
// process of the namespace, and unshare reaps it (leaving no zombie) and
// exits. The process group is the fallback.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	if s.nsPID > 0 {
		_ = syscall.Kill(s.nsPID, syscall.SIGKILL)
		select {
		case <-s.exited:
			return
		case <-time.After(5 * time.Second):
		}
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Stop kills sshd and every process of its namespaces. Start's cleanup
// calls it; calling it again does nothing.
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.kill()
		if s.log != nil {
			s.log.Close()
		}
	})
}

// Log returns what sshd has logged (it runs with -e).
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "sshd.log"))
	return string(data)
}

// Account is the rotation account of user on this server, its host key
// pinned.
func (s *Server) Account(user string) escrow.TargetAccount {
	return escrow.TargetAccount{Username: user, Host: s.Host, Port: s.Port, Options: map[string]string{"hostKey": s.HostKey}}
}

var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// AddUser adds a user with password to the copy's account database, with
// useradd and chpasswd run inside the server's mount namespace (shell
// /bin/sh, home /).
func (s *Server) AddUser(t testing.TB, name, password string) {
	t.Helper()
	if !userName.MatchString(name) {
		t.Fatalf("sshtest: user name %q must match %s", name, userName)
	}
	if password == "" || strings.ContainsAny(password, "\r\n\x00") {
		t.Fatalf("sshtest: a password must be non-empty and hold no line break or NUL")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.inside("", "useradd", "-M", "-d", "/", "-s", "/bin/sh", "-c", "sshtest user", name); err != nil {
		t.Fatalf("sshtest: add user %s: %v", name, err)
	}
	if err := s.inside(name+":"+password+"\n", "chpasswd"); err != nil {
		t.Fatalf("sshtest: set %s's password: %v", name, err)
	}
}

// inside runs a command in the server's mount namespace.
func (s *Server) inside(stdin string, args ...string) error {
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(s.nsPID), "--mount", "--"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", args[0], err, bytes.TrimSpace(out))
	}
	return nil
}

// ShadowLine returns user's line of the copy's /etc/shadow.
func (s *Server) ShadowLine(t testing.TB, user string) string {
	t.Helper()
	// The overlay's writes land in upper/, which always holds shadow.
	data, err := os.ReadFile(filepath.Join(s.dir, "upper", "shadow"))
	if err != nil {
		t.Fatalf("sshtest: read the copy's shadow: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, user+":") {
			return l
		}
	}
	t.Fatalf("sshtest: the copy's shadow has no %s", user)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
