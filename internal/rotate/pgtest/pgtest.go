// Package pgtest starts a real PostgreSQL server for tests: initdb in a temp
// dir, password (SCRAM) authentication, TLS with a throwaway CA, listening
// only on 127.0.0.1 on a free port, and every statement logged so tests can
// check what reached the server. When the PostgreSQL binaries are missing it
// skips with a loud message, except under CI=true, where it fails the test
// (DESIGN 7).
//
// It is for tests only. It must never be imported by production code, never
// listen beyond loopback, and never touch a server it did not start.
package pgtest

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL. Connect to it over TCP only.
type Server struct {
	Host     string // always 127.0.0.1
	Port     string
	User     string // the superuser
	Password string // the superuser's password
	// CAPEM is the PEM certificate of the CA that signed the server's TLS
	// certificate (valid for 127.0.0.1, ::1 and localhost).
	CAPEM []byte
	// LogFile is the server's log; log_statement=all, so every statement
	// the server received is in it.
	LogFile string
	// Version is what `postgres --version` printed.
	Version string

	dir  string // owned by the server's OS user; data, socket, TLS files
	data string // the data directory
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	stop sync.Once
}

// stderr is where Skip shouts; a test replaces it.
var stderr io.Writer = os.Stderr

// errMissing means no PostgreSQL binaries were found.
var errMissing = errors.New("PostgreSQL binaries (initdb, postgres) not found")

// Available reports whether the PostgreSQL binaries are installed.
func Available() bool {
	_, err := binDir()
	return err == nil
}

// Skip skips t because PostgreSQL is missing, or fails it under CI=true.
func Skip(t testing.TB) {
	t.Helper()
	msg := "!!! PostgreSQL is not installed (initdb/postgres, e.g. Debian package postgresql; or set PGTEST_BINDIR): SKIPPING tests against a real PostgreSQL !!!"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: this is a failure)")
	}
	fmt.Fprintln(stderr, msg)
	t.Skip(msg)
}

// Start starts a PostgreSQL server for t alone and stops it when t ends.
// It costs an initdb (1 to 12 s on a busy 2-CPU machine); tests that can
// share a server use StartShared.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's parent is a 0700 directory made by the testing package;
	// the server may run as another OS user, who must be able to reach dir.
	err := allowSearch(filepath.Dir(dir))
	var s *Server
	if err == nil {
		s, err = start(dir, t.Logf)
	}
	if errors.Is(err, errMissing) {
		Skip(t)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	sync.Mutex
	s   *Server
	dir string
	err error
	// reaper holds the write end of a pipe to a shell that removes dir
	// once the pipe closes, which happens when this process exits,
	// however it exits.
	reaper *os.File
}

// StartShared returns the test binary's shared server, starting it on
// first use. Tests on it must not depend on each other: give every role a
// name of its own. The server outlives t: it dies with the test binary
// and its directory is removed then, so a TestMain is optional; one may
// call StopShared after m.Run to stop it sooner.
func StartShared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "pgtest-")
		if shared.err == nil {
			shared.reaper, shared.err = startReaper(shared.dir)
		}
		if shared.err == nil {
			shared.err = checkSearch(shared.dir)
		}
		if shared.err == nil {
			shared.s, shared.err = start(shared.dir, t.Logf)
		}
	}
	if errors.Is(shared.err, errMissing) {
		Skip(t)
	}
	if shared.err != nil {
		t.Fatalf("pgtest: shared server: %v", shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started, and removes its
// directory.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.s != nil {
		shared.s.Stop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	if shared.reaper != nil {
		_ = shared.reaper.Close()
	}
	shared.s, shared.dir, shared.reaper = nil, "", nil
	shared.err = errors.New("the shared server was stopped")
}

// startReaper starts a shell that removes dir when the returned file is
// closed or this process dies. The server itself dies with this process
// (Pdeathsig); the pause lets its backends exit before the removal.
func startReaper(dir string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `read x; sleep 2; rm -rf "$0"`, dir)
	cmd.Stdin = r
	// Its own process group: a ^C to the test must not kill it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the temp dir reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return w, nil
}

// Stop shuts the server down at once (an immediate shutdown: no checkpoint,
// the data is thrown away anyway). It is safe to call twice.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		select {
		case <-s.done:
			return // already reaped: its pid may belong to someone else now
		default:
		}
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGQUIT) // the postmaster's "immediate shutdown"
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
		// Whatever is left of the process group (a stuck backend) goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	})
}

// Config returns a connection config for user over TCP, without TLS.
func (s *Server) Config(user, password string) (*pgx.ConnConfig, error) {
	// Only the password-free part goes through the connection string, so a
	// parse error can never quote the password.
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=postgres sslmode=disable connect_timeout=5", s.Host, s.Port))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = user, password
	return cfg, nil
}

// Connect logs in to the postgres database as user.
func (s *Server) Connect(ctx context.Context, user, password string) (*pgx.Conn, error) {
	cfg, err := s.Config(user, password)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// CanLogin returns nil if user logs in with password, else the error.
func (s *Server) CanLogin(ctx context.Context, user, password string) error {
	c, err := s.Connect(ctx, user, password)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

// Conn returns a superuser connection, closed when t ends.
func (s *Server) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := s.Connect(ctx, s.User, s.Password)
	if err != nil {
		t.Fatalf("pgtest: connect as the superuser: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// CreateRole creates a login role. The statement is kept out of the
// server log, so the log holds only what the code under test sent.
func (s *Server) CreateRole(t testing.TB, name, password string, superuser bool) {
	t.Helper()
	ctx := context.Background()
	c := s.Conn(t)
	if _, err := c.Exec(ctx, "SET log_statement = 'none'"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	attrs := "LOGIN"
	if superuser {
		attrs += " SUPERUSER"
	}
	// CREATE ROLE takes no bind parameters; the simple protocol has pgx
	// quote the password as a literal client-side.
	sql := "CREATE ROLE " + pgx.Identifier{name}.Sanitize() + " " + attrs + " PASSWORD $1"
	if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol, password); err != nil {
		t.Fatalf("pgtest: create role %q: %v", name, err)
	}
}

// SetHostAuth makes method (scram-sha-256, password or trust) the
// authentication method of every TCP connection from now on, to test how
// clients react to it. Use it on a server of your own (Start), never on
// the shared one.
func (s *Server) SetHostAuth(t testing.TB, method string) {
	t.Helper()
	required := map[string]string{"scram-sha-256": "scram-sha-256", "password": "password", "trust": "none"}[method]
	if required == "" {
		t.Fatalf("pgtest: SetHostAuth(%q): want scram-sha-256, password or trust", method)
	}
	hba := "host all all 127.0.0.1/32 " + method + "\n"
	if err := writeOwned(filepath.Join(s.data, "pg_hba.conf"), []byte(hba), s.cred); err != nil {
		t.Fatalf("pgtest: write pg_hba.conf: %v", err)
	}
	ctx := context.Background()
	if _, err := s.Conn(t).Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatalf("pgtest: reload the configuration: %v", err)
	}
	// The postmaster rereads pg_hba.conf a moment after pg_reload_conf
	// returns: wait until a login that accepts only method gets in.
	cfg, err := s.Config(s.User, s.Password)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RequireAuth = required
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_ = c.Close(ctx)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: the server does not use %s authentication 10s after reloading: %v", method, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns the server's log so far.
func (s *Server) Log() (string, error) {
	b, err := os.ReadFile(s.LogFile)
	return string(b), err
}

// start runs initdb in dir/data and starts the server; logf reports the
// time each step took.
func start(dir string, logf func(string, ...any)) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", User: "pgtest", Password: randomHex(16), dir: dir, LogFile: filepath.Join(dir, "server.log")}
	if out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
		s.Version = strings.TrimSpace(string(out))
	}

	began := time.Now()
	pwfile := filepath.Join(dir, "pwfile")
	if err := writeOwned(pwfile, []byte(s.Password+"\n"), cred); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	s.data, s.cred = data, cred
	initdb := command(bin, "initdb", dir, cred,
		"-D", data, "-U", s.User, "--pwfile="+pwfile, "--auth=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	out, err := initdb.CombinedOutput()
	_ = os.Remove(pwfile)
	if err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	initTook := time.Since(began)

	if err := s.writeTLS(cred); err != nil {
		return nil, err
	}

	// A port picked here can be taken before the server binds it; try again
	// on another one if that happens.
	startBegan := time.Now()
	for attempt := 1; ; attempt++ {
		err = s.run(bin, data, cred)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	logf("pgtest: %s started on 127.0.0.1:%s in %v (initdb %v, server start %v)",
		s.Version, s.Port, time.Since(began).Round(time.Millisecond),
		initTook.Round(time.Millisecond), time.Since(startBegan).Round(time.Millisecond))
	return s, nil
}

var errPortTaken = errors.New("port taken")

// run starts the postmaster on a free port and waits until the superuser
// can log in.
func (s *Server) run(bin, data string, cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = strconv.Itoa(port)
	// A unix socket path is limited to 107 bytes; a deep temp dir gets none
	// (the tests use TCP only). Never the system's default directory, where
	// another server may live.
	sockets := s.dir
	if len(sockets)+len("/.s.PGSQL.65535.lock") > 100 {
		sockets = ""
	}
	logFile, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own copy
	cmd := command(bin, "postgres", s.dir, cred,
		"-D", data,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+s.Port,
		"-c", "unix_socket_directories="+sockets,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=40",
		"-c", "password_encryption=scram-sha-256",
		"-c", "ssl=on",
		"-c", "ssl_cert_file="+filepath.Join(s.dir, "server.crt"),
		"-c", "ssl_key_file="+filepath.Join(s.dir, "server.key"),
		"-c", "log_statement=all", "-c", "log_connections=on", "-c", "logging_collector=off",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()

	const wait = 30 * time.Second
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = s.CanLogin(ctx, s.User, s.Password)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			tail := s.logTail()
			if strings.Contains(tail, "could not bind") || strings.Contains(tail, "already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, tail)
			}
			return fmt.Errorf("postgres exited before accepting connections; log tail:\n%s", tail)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("postgres did not accept connections within %v (last error: %v); log tail:\n%s", wait, err, s.logTail())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// logTail returns the last lines of the server log.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// writeTLS makes a throwaway CA and a server certificate it signs.
func (s *Server) writeTLS(cred *syscall.Credential) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := writeOwned(filepath.Join(s.dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cred); err != nil {
		return err
	}
	// The server refuses a key file others can read.
	return writeOwned(filepath.Join(s.dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), cred)
}

// command builds a command that runs as cred (nil: as this process), in
// its own process group so Stop can take down every backend, with a
// minimal environment so no PG* variable of the caller leaks in.
func command(bin, name, dir string, cred *syscall.Credential, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	// Pdeathsig kills the server if the test binary dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	return cmd
}

// serverUser returns the credential to run initdb and postgres under: they
// refuse to run as root, so as root they run as the postgres OS user (what
// `runuser -u postgres` would do, without the extra process in between).
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres OS user to run the server as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// writeOwned writes a 0600 file owned by cred's user.
func writeOwned(path string, b []byte, cred *syscall.Credential) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	if cred != nil {
		return os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// allowSearch lets other users traverse dir (not list it), then checks
// the directories above it.
func allowSearch(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := fi.Mode(); m.Perm()&0o011 != 0o011 {
		if err := os.Chmod(dir, m&(os.ModePerm|os.ModeSticky|os.ModeSetgid)|0o011); err != nil {
			return err
		}
	}
	return checkSearch(dir)
}

// checkSearch checks that the postgres OS user can traverse every
// directory above dir.
func checkSearch(dir string) error {
	if os.Geteuid() != 0 {
		return nil // the server runs as this user
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postgres OS user cannot traverse %s (mode %v); set GOTMPDIR/TMPDIR to a directory it can reach", d, fi.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// binDir finds the PostgreSQL server binaries: $PGTEST_BINDIR, else
// `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin (Debian
// keeps them off PATH), else initdb on PATH.
func binDir() (string, error) {
	ok := func(d string) bool {
		_, e1 := os.Stat(filepath.Join(d, "initdb"))
		_, e2 := os.Stat(filepath.Join(d, "postgres"))
		return d != "" && e1 == nil && e2 == nil
	}
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w in PGTEST_BINDIR=%s", errMissing, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); ok(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errMissing
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
