package sshtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// TestIsolation: a user added to the server exists in the copy only, root
// logs in with its password and key, and Stop leaves no process or port.
func TestIsolation(t *testing.T) {
	s := Start(t)
	s.AddUser(t, "sshtestuser", "a-test-password-1")
	if line := s.ShadowLine(t, "sshtestuser"); !strings.HasPrefix(line, "sshtestuser:$") {
		t.Errorf("shadow line %q has no hash", line)
	}
	for _, f := range hostFiles {
		data, _ := os.ReadFile(f)
		if bytes.Contains(data, []byte("sshtestuser")) {
			t.Errorf("this machine's %s has the test user", f)
		}
	}
	if line := s.ShadowLine(t, "daemon"); !strings.HasPrefix(line, "daemon:!:") {
		t.Errorf("daemon is not locked in the copy: %q", line)
	}

	pinned, _, _, _, err := xssh.ParseAuthorizedKey([]byte(s.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := xssh.ParsePrivateKey([]byte(s.Root.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]xssh.AuthMethod{"password": xssh.Password(s.Root.Password), "key": xssh.PublicKeys(signer)} {
		c, err := xssh.Dial("tcp", net.JoinHostPort(s.Host, s.Port), &xssh.ClientConfig{
			User: "root", Auth: []xssh.AuthMethod{auth}, HostKeyCallback: xssh.FixedHostKey(pinned), Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatalf("root login by %s: %v", name, err)
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		// Inside, /etc is the overlay and the user exists.
		out, err := sess.Output("grep -c '^sshtestuser:' /etc/passwd && test -e /etc/.sshtest-overlay && test -d /run/sshd")
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("inside the namespace (by %s): %q, %v", name, out, err)
		}
		c.Close()
	}

	pid := s.nsPID
	s.Stop()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("the namespace's process %d outlived Stop (or is an unreaped zombie)", pid)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, s.Port), time.Second); err == nil {
		c.Close()
		t.Error("sshd still listens after Stop")
	}
}
