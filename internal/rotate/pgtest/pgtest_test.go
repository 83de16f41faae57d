package pgtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// TestStart checks a server of its own: logins, roles, TLS, the statement
// log, and that Stop really stops it.
func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	if s.Host != "127.0.0.1" || s.Port == "" {
		t.Fatalf("address %s:%s", s.Host, s.Port)
	}
	if err := s.CanLogin(ctx, s.User, s.Password); err != nil {
		t.Fatalf("superuser login: %v", err)
	}
	err := s.CanLogin(ctx, s.User, "wrong")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}

	s.CreateRole(t, "alice", "alice's pass", false)
	if err := s.CanLogin(ctx, "alice", "alice's pass"); err != nil {
		t.Fatalf("alice login: %v", err)
	}
	var super bool
	if err := s.Conn(t).QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'").Scan(&super); err != nil || super {
		t.Fatalf("alice rolsuper = %v, %v; want false", super, err)
	}

	// TLS with the harness CA, checked against 127.0.0.1.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("CAPEM holds no certificate")
	}
	cfg, err := s.Config(s.User, s.Password)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: s.Host, MinVersion: tls.VersionTLS12}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("TLS login: %v", err)
	}
	var ssl bool
	if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pg_stat_ssl.ssl = %v, %v; want true", ssl, err)
	}
	_ = c.Close(ctx)

	if _, err := s.Conn(t).Exec(ctx, "SELECT 'marker-7f3a'"); err != nil {
		t.Fatal(err)
	}
	log, err := s.Log()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "marker-7f3a") {
		t.Errorf("log_statement=all is not in effect; log:\n%s", log)
	}
	if strings.Contains(log, "alice's pass") {
		t.Errorf("CreateRole's password reached the server log")
	}

	s.SetHostAuth(t, "trust")
	if err := s.CanLogin(ctx, "alice", "not alice's pass"); err != nil {
		t.Errorf("under trust a wrong password should log in: %v", err)
	}
	s.SetHostAuth(t, "scram-sha-256")
	if err := s.CanLogin(ctx, "alice", "not alice's pass"); err == nil {
		t.Error("back under scram-sha-256 a wrong password logs in")
	}

	s.Stop()
	s.Stop() // twice is fine
	if err := s.CanLogin(ctx, s.User, s.Password); err == nil {
		t.Fatal("the server still answers after Stop")
	}
}

func TestShared(t *testing.T) {
	t.Parallel()
	a, b := StartShared(t), StartShared(t)
	if a != b {
		t.Fatal("StartShared started two servers")
	}
	if err := a.CanLogin(context.Background(), a.User, a.Password); err != nil {
		t.Fatal(err)
	}
}

// TestSharedCleanupWithoutTestMain runs a test binary that starts the
// shared server and exits without StopShared, as a package without a
// TestMain does: the server must die and its directory go.
func TestSharedCleanupWithoutTestMain(t *testing.T) {
	if os.Getenv("PGTEST_HELPER") == "1" {
		s := StartShared(t)
		fmt.Println("DIR=" + filepath.Dir(s.LogFile) + " PORT=" + s.Port)
		os.Exit(0)
	}
	if !Available() {
		Skip(t)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedCleanupWithoutTestMain$")
	cmd.Env = append(os.Environ(), "PGTEST_HELPER=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var dir, port string
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "DIR="); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(f, "PORT="); ok {
			port = v
		}
	}
	if dir == "" || port == "" {
		t.Fatalf("helper printed no DIR and PORT:\n%s", out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		c, dialErr := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if dialErr == nil {
			c.Close()
		}
		if errors.Is(statErr, fs.ErrNotExist) && dialErr != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("15s after the test binary exited: stat %s: %v; server still listening: %v", dir, statErr, dialErr == nil)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSkipUnderCI checks the house pattern: missing binaries skip, except
// under CI=true, where they fail.
func TestSkipUnderCI(t *testing.T) {
	var shout strings.Builder
	stderr = &shout
	t.Cleanup(func() { stderr = os.Stderr })
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			t.Setenv("PGTEST_BINDIR", t.TempDir()) // holds no binaries
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() { defer close(done); Start(r) }() // Skip and Fatal end the goroutine
			<-done
			switch {
			case ci == "true" && !r.failed:
				t.Error("under CI=true a missing PostgreSQL must fail the test")
			case ci == "" && !r.skipped:
				t.Error("without CI a missing PostgreSQL must skip the test")
			case ci == "" && !strings.Contains(shout.String(), "!!! PostgreSQL is not installed"):
				t.Errorf("the skip was not loud: %q", shout.String())
			}
		})
	}
}

// recorder notes Skip and Fatal instead of acting on the real test.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(...any)           { r.skipped = true; runtime.Goexit() }
func (r *recorder) Fatal(...any)          { r.failed = true; runtime.Goexit() }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }
