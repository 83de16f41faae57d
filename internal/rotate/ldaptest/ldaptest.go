// Package ldaptest starts a real OpenLDAP slapd for tests of the LDAP
// rotation target: its own slapd.conf and mdb database in the test's temp
// directory, listening on one loopback port, with a throwaway CA so StartTLS
// works. Tests that need slapd call Start; when slapd is missing they skip
// with a loud message, except under CI=true, where a missing slapd fails the
// test (DESIGN 7).
//
// It must never touch the system's slapd, its configuration (/etc/ldap) or
// its data: everything it writes lives under t.TempDir().
package ldaptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Where Debian's slapd package puts things.
const (
	SlapdPath  = "/usr/sbin/slapd"
	modulePath = "/usr/lib/ldap"
	schemaDir  = "/etc/ldap/schema"
)

// The directory every harness serves.
const (
	BaseDN   = "dc=example,dc=test"
	PeopleDN = "ou=people," + BaseDN
	AdminDN  = "cn=admin," + BaseDN
)

// startTimeout bounds how long slapd may take to answer; it starts in well
// under a second here, so hitting this means it is broken, not slow.
const startTimeout = 15 * time.Second

// Server is a running slapd.
type Server struct {
	URL           string // ldap://127.0.0.1:PORT/
	Host          string // 127.0.0.1
	Port          string
	AdminDN       string // the rootdn, which no ACL restricts
	AdminPassword string
	CAPEM         string // the CA that signed the server's certificate

	dir  string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when slapd has exited
}

// Available reports whether slapd and the modules and schemas it needs are
// installed.
func Available() bool {
	availOnce.Do(func() {
		for _, p := range []string{SlapdPath, filepath.Join(modulePath, "back_mdb.so"), filepath.Join(schemaDir, "nis.schema")} {
			if _, err := os.Stat(p); err != nil {
				availErr = err
				return
			}
		}
	})
	return availErr == nil
}

var (
	availOnce sync.Once
	availErr  error
)

// Skip skips t because slapd is missing, or fails it under CI=true.
func Skip(t testing.TB) {
	t.Helper()
	msg := "!!! OpenLDAP slapd is not installed (apt-get install slapd ldap-utils): SKIPPING LDAP tests against a real slapd !!!"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: this is a failure)")
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
}

// Start starts a slapd for the test, seeds dc=example,dc=test and
// ou=people, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if !Available() {
		Skip(t)
	}
	began := time.Now()
	var s *Server
	var err error
	// The free port is found by closing a listener, so another process may
	// take it before slapd binds it; a second port then fixes that.
	for attempt := 0; attempt < 3; attempt++ {
		s, err = start(t.TempDir())
		if err == nil || !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := s.seed(); err != nil {
		t.Fatalf("seed slapd: %v\n%s", err, s.output())
	}
	t.Logf("slapd ready at %s in %v", s.URL, time.Since(began).Round(time.Millisecond))
	return s
}

var errExited = errors.New("slapd exited")

func start(dir string) (*Server, error) {
	caPEM, certPEM, keyPEM, err := certificates()
	if err != nil {
		return nil, fmt.Errorf("make certificates: %w", err)
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	s := &Server{
		Host:          "127.0.0.1",
		Port:          strconv.Itoa(port),
		AdminDN:       AdminDN,
		AdminPassword: hex.EncodeToString(pw[:]),
		CAPEM:         string(caPEM),
		dir:           dir,
		done:          make(chan struct{}),
	}
	s.URL = "ldap://" + net.JoinHostPort(s.Host, s.Port) + "/"
	files := map[string][]byte{
		"ca.pem":     caPEM,
		"server.pem": certPEM,
		"server.key": keyPEM,
		"slapd.conf": []byte(s.config()),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	s.log, err = os.Create(filepath.Join(dir, "slapd.log"))
	if err != nil {
		return nil, err
	}
	// -d none keeps slapd in the foreground and prints only its errors.
	s.cmd = exec.Command(SlapdPath, "-h", s.URL, "-f", filepath.Join(dir, "slapd.conf"), "-d", "none")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.log.Close()
		return nil, fmt.Errorf("run %s: %w", SlapdPath, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.CanBind(s.AdminDN, s.AdminPassword)
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			out := s.output()
			s.Stop()
			return nil, fmt.Errorf("%w (%v) before answering on %s:\n%s", errExited, s.cmd.ProcessState, s.URL, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out := s.output()
			s.Stop()
			return nil, fmt.Errorf("slapd did not answer on %s within %v: %v\n%s", s.URL, startTimeout, err, out)
		}
	}
}

// config is the whole slapd.conf: the module and schemas it needs, TLS with
// the throwaway certificate, one mdb database.
func (s *Server) config() string {
	return fmt.Sprintf(`# Generated by ldaptest for one test; not the system's configuration.
include %[1]s/core.schema
include %[1]s/cosine.schema
include %[1]s/inetorgperson.schema
include %[1]s/nis.schema
pidfile %[2]s/slapd.pid
argsfile %[2]s/slapd.args
modulepath %[3]s
moduleload back_mdb
TLSCACertificateFile %[2]s/ca.pem
TLSCertificateFile %[2]s/server.pem
TLSCertificateKeyFile %[2]s/server.key
# The password modify extended operation stores salted hashes.
password-hash {SSHA}

database mdb
maxsize 67108864
suffix "%[4]s"
rootdn "%[5]s"
rootpw %[6]s
directory %[2]s/db
# A user may change their own password; nobody else may read it.
access to attrs=userPassword
	by self write
	by anonymous auth
	by * none
access to *
	by * read
`, schemaDir, s.dir, modulePath, BaseDN, s.AdminDN, s.AdminPassword)
}

// Stop kills slapd. Its data is discarded with the temp directory, so there
// is nothing to shut down cleanly.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	if s.log != nil {
		s.log.Close()
	}
}

func (s *Server) output() string {
	out, err := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
	if err != nil {
		return fmt.Sprintf("(no slapd output: %v)", err)
	}
	return string(out)
}

// Admin returns a plain connection bound as the rootdn; the caller closes
// it.
func (s *Server) Admin() (*ldap.Conn, error) {
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind as %s: %w", s.AdminDN, err)
	}
	return c, nil
}

func (s *Server) dial() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.URL, err)
	}
	c.SetTimeout(10 * time.Second)
	return c, nil
}

func (s *Server) seed() error {
	c, err := s.Admin()
	if err != nil {
		return err
	}
	defer c.Close()
	base := ldap.NewAddRequest(BaseDN, nil)
	base.Attribute("objectClass", []string{"top", "dcObject", "organization"})
	base.Attribute("dc", []string{"example"})
	base.Attribute("o", []string{"Example"})
	if err := c.Add(base); err != nil {
		return fmt.Errorf("add %s: %w", BaseDN, err)
	}
	people := ldap.NewAddRequest(PeopleDN, nil)
	people.Attribute("objectClass", []string{"top", "organizationalUnit"})
	people.Attribute("ou", []string{"people"})
	if err := c.Add(people); err != nil {
		return fmt.Errorf("add %s: %w", PeopleDN, err)
	}
	return nil
}

// AddUser adds uid=UID,ou=people,dc=example,dc=test with password and
// returns its DN. The password is set with the password modify operation,
// so it is stored hashed, as a real directory would hold it.
func (s *Server) AddUser(t testing.TB, uid, password string) string {
	t.Helper()
	dn := "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN
	c, err := s.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	add := ldap.NewAddRequest(dn, nil)
	add.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"})
	add.Attribute("uid", []string{uid})
	add.Attribute("cn", []string{uid})
	add.Attribute("sn", []string{uid})
	if err := c.Add(add); err != nil {
		t.Fatalf("add %s: %v", dn, err)
	}
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest(dn, "", password)); err != nil {
		t.Fatalf("set the password of %s: %v", dn, err)
	}
	return dn
}

// CanBind binds as dn with password over a fresh connection and returns
// the bind's error. An empty password is refused here, as it would be an
// unauthenticated bind that always succeeds.
func (s *Server) CanBind(dn, password string) error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Bind(dn, password)
}

// StoredPassword returns the userPassword values of dn, read as the rootdn.
func (s *Server) StoredPassword(t testing.TB, dn string) []string {
	t.Helper()
	c, err := s.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"userPassword"}, nil))
	if err != nil {
		t.Fatalf("read userPassword of %s: %v", dn, err)
	}
	if len(res.Entries) != 1 {
		t.Fatalf("read userPassword of %s: %d entries", dn, len(res.Entries))
	}
	return res.Entries[0].GetAttributeValues("userPassword")
}

// NewCA makes a throwaway self-signed CA. It returns the CA's certificate
// in PEM and a function that signs a server certificate for hosts with it.
func NewCA() (caPEM []byte, issue func(hosts ...string) (certPEM, keyPEM []byte, err error), err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ldaptest throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	issue = func(hosts ...string) ([]byte, []byte, error) {
		leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		leaf := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: hosts[0]},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				leaf.IPAddresses = append(leaf.IPAddresses, ip)
			} else {
				leaf.DNSNames = append(leaf.DNSNames, h)
			}
		}
		leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, key)
		if err != nil {
			return nil, nil, err
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(leafKey)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), issue, nil
}

func certificates() (caPEM, certPEM, keyPEM []byte, err error) {
	caPEM, issue, err := NewCA()
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM, keyPEM, err = issue("127.0.0.1", "localhost", "::1")
	if err != nil {
		return nil, nil, nil, err
	}
	// Checked here so a bad certificate fails with a Go error rather than
	// a terse GnuTLS one from slapd.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, nil, nil, err
	}
	return caPEM, certPEM, keyPEM, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
