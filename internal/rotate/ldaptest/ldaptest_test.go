package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func TestServer(t *testing.T) {
	s := Start(t)
	dn := s.AddUser(t, "harness", "first-Pass1")
	if err := s.CanBind(dn, "first-Pass1"); err != nil {
		t.Fatalf("bind with the right password: %v", err)
	}
	if err := s.CanBind(dn, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with a wrong password: %v, want invalid credentials", err)
	}
	if err := s.CanBind(dn, ""); err == nil {
		t.Fatal("an empty password bound")
	}
	for _, v := range s.StoredPassword(t, dn) {
		if !strings.HasPrefix(v, "{SSHA}") {
			t.Errorf("userPassword %q is not a {SSHA} hash", v)
		}
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(s.CAPEM)) {
		t.Fatal("CAPEM holds no certificate")
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			t.Errorf("StartTLS as %s with the harness CA: %v", host, err)
		} else if err := c.Bind(dn, "first-Pass1"); err != nil {
			t.Errorf("bind over StartTLS: %v", err)
		}
		c.Close()
	}
}
