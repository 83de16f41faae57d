package ldap

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/rotate/ldaptest"
)

// password returns a fresh password, distinct in every test, so a leak
// check can look for it.
func password(t testing.TB) string {
	t.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "Pw-" + hex.EncodeToString(b[:]) + "!"
}

// logBuffer collects a target's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logged gives target a logger and, when the test ends, fails it if a log
// line holds one of the secrets.
func logged(t *testing.T, target *Target, secrets ...*string) *Target {
	t.Helper()
	var buf logBuffer
	target.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		for _, s := range secrets {
			for _, form := range []string{*s, UnicodePwd(*s)} {
				if *s != "" && strings.Contains(buf.String(), form) {
					t.Errorf("the log holds a password:\n%s", buf.String())
				}
			}
		}
	})
	return target
}

// noSecret fails t if err's text or its client message holds a secret.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		for _, form := range []string{s, UnicodePwd(s)} {
			if strings.Contains(err.Error(), form) || strings.Contains(escrow.ErrorMessage(err), form) {
				t.Errorf("error %q holds a password", err)
			}
		}
	}
}

func wantCode(t *testing.T, err error, code escrow.Code) {
	t.Helper()
	if got := escrow.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

// ---- unit tests: no server ----

func TestUnicodePwd(t *testing.T) {
	for _, v := range []struct{ in, hex string }{
		// Microsoft's example: "newPassword" with its quotes, UTF-16LE.
		{"newPassword", "22006e0065007700500061007300730077006f00720064002200"},
		{"", "22002200"},
		{"é", "2200e9002200"},
		{"€1", "2200ac2031002200"},
		{"😀", "22003dd800de2200"},       // a surrogate pair: D83D DE00, each half little-endian
		{`a"b`, "22006100220062002200"}, // inner quotes pass through as they are
	} {
		t.Run(v.in, func(t *testing.T) {
			t.Parallel()
			if got := hex.EncodeToString([]byte(UnicodePwd(v.in))); got != v.hex {
				t.Errorf("UnicodePwd(%q) = %s, want %s", v.in, got, v.hex)
			}
		})
	}
}

// fakeConn records the requests a target sends and answers with errs.
type fakeConn struct {
	binds    [][2]string
	pwModify []*goldap.PasswordModifyRequest
	modify   []*goldap.ModifyRequest
	bindErr  error
	opErr    error
	closed   bool
}

func (f *fakeConn) Bind(u, p string) error {
	f.binds = append(f.binds, [2]string{u, p})
	return f.bindErr
}
func (f *fakeConn) PasswordModify(r *goldap.PasswordModifyRequest) (*goldap.PasswordModifyResult, error) {
	f.pwModify = append(f.pwModify, r)
	return &goldap.PasswordModifyResult{}, f.opErr
}
func (f *fakeConn) Modify(r *goldap.ModifyRequest) error {
	f.modify = append(f.modify, r)
	return f.opErr
}
func (f *fakeConn) Close() error { f.closed = true; return nil }

func withFake(target *Target, f *fakeConn) *Target {
	target.dial = func(context.Context, endpoint) (conn, error) { return f, nil }
	return target
}

const (
	userDN  = "uid=alice,ou=people,dc=example,dc=com"
	adminDN = "cn=admin,dc=example,dc=com"
)

func TestRequests(t *testing.T) {
	t.Parallel()
	acct := escrow.TargetAccount{Username: userDN, Host: "ldap.example.com"}
	old, next, admin := "old-Pass1", "next-Pass2", "admin-Pass3"
	mod := func(op uint, vals ...string) goldap.Change {
		return goldap.Change{Operation: op, Modification: goldap.PartialAttribute{Type: "unicodePwd", Vals: vals}}
	}
	for _, c := range []struct {
		name     string
		target   *Target
		login    escrow.Credentials
		pwModify *goldap.PasswordModifyRequest
		changes  []goldap.Change
	}{
		{name: "ldap self", target: New(), login: escrow.Credentials{Username: userDN, Password: old},
			pwModify: &goldap.PasswordModifyRequest{OldPassword: old, NewPassword: next}},
		{name: "ldap self, DN spelled differently", target: New(), login: escrow.Credentials{Username: "UID=Alice, ou=People,dc=example,dc=com", Password: old},
			pwModify: &goldap.PasswordModifyRequest{OldPassword: old, NewPassword: next}},
		{name: "ldap privileged", target: New(), login: escrow.Credentials{Username: adminDN, Password: admin},
			pwModify: &goldap.PasswordModifyRequest{UserIdentity: userDN, NewPassword: next}},
		{name: "ad self", target: NewAD(), login: escrow.Credentials{Username: userDN, Password: old},
			changes: []goldap.Change{mod(goldap.DeleteAttribute, UnicodePwd(old)), mod(goldap.AddAttribute, UnicodePwd(next))}},
		{name: "ad privileged", target: NewAD(), login: escrow.Credentials{Username: adminDN, Password: admin},
			changes: []goldap.Change{mod(goldap.ReplaceAttribute, UnicodePwd(next))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeConn{}
			if err := withFake(c.target, f).Set(context.Background(), acct, c.login, next); err != nil {
				t.Fatal(err)
			}
			if len(f.binds) != 1 || f.binds[0] != [2]string{c.login.Username, c.login.Password} {
				t.Errorf("binds %q, want one as the login", f.binds)
			}
			if !f.closed {
				t.Error("connection left open")
			}
			if c.pwModify != nil {
				if len(f.pwModify) != 1 || len(f.modify) != 0 || *f.pwModify[0] != *c.pwModify {
					t.Errorf("password modify %+v, modify %+v; want one password modify %+v", f.pwModify, f.modify, c.pwModify)
				}
				return
			}
			if len(f.modify) != 1 || len(f.pwModify) != 0 {
				t.Fatalf("modify %+v, password modify %+v; want one modify", f.modify, f.pwModify)
			}
			got := f.modify[0]
			if got.DN != userDN || fmt.Sprint(got.Changes) != fmt.Sprint(c.changes) {
				t.Errorf("modify %s %+v, want %s %+v", got.DN, got.Changes, userDN, c.changes)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	ca, _, err := ldaptest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		ad     bool
		acct   escrow.TargetAccount
		want   string // ep.String(), or "" for ErrInvalid
		tlsVia string
	}{
		{name: "remote host defaults to starttls", acct: escrow.TargetAccount{Host: "ldap.example.com"}, want: "ldap://ldap.example.com:389", tlsVia: TLSStartTLS},
		{name: "loopback defaults to none", acct: escrow.TargetAccount{Host: "127.0.0.1", Port: "3389"}, want: "ldap://127.0.0.1:3389", tlsVia: TLSNone},
		{name: "localhost none", acct: escrow.TargetAccount{Host: "localhost", Options: map[string]string{"tls": "none"}}, want: "ldap://localhost:389", tlsVia: TLSNone},
		{name: "ipv6 loopback none", acct: escrow.TargetAccount{URL: "ldap://[::1]:1389", Options: map[string]string{"tls": "none"}}, want: "ldap://[::1]:1389", tlsVia: TLSNone},
		{name: "ldaps option", acct: escrow.TargetAccount{Host: "dc1.corp.test", Options: map[string]string{"tls": "ldaps"}}, want: "ldaps://dc1.corp.test:636", tlsVia: TLSLDAPS},
		{name: "ldaps url", acct: escrow.TargetAccount{URL: "ldaps://dc1.corp.test/"}, want: "ldaps://dc1.corp.test:636", tlsVia: TLSLDAPS},
		{name: "ldap url starttls", acct: escrow.TargetAccount{URL: "ldap://ldap.example.com:10389", Options: map[string]string{"ca": string(ca)}}, want: "ldap://ldap.example.com:10389", tlsVia: TLSStartTLS},
		{name: "ad loopback defaults to starttls", ad: true, acct: escrow.TargetAccount{Host: "127.0.0.1"}, want: "ldap://127.0.0.1:389", tlsVia: TLSStartTLS},

		{name: "none to a remote host", acct: escrow.TargetAccount{Host: "ldap.example.com", Options: map[string]string{"tls": "none"}}},
		{name: "none to a name that is not localhost", acct: escrow.TargetAccount{Host: "localhost.example.com", Options: map[string]string{"tls": "none"}}},
		{name: "none to a private address", acct: escrow.TargetAccount{URL: "ldap://10.0.0.5", Options: map[string]string{"tls": "none"}}},
		{name: "ad none on loopback", ad: true, acct: escrow.TargetAccount{Host: "127.0.0.1", Options: map[string]string{"tls": "none"}}},
		{name: "ldaps url with starttls", acct: escrow.TargetAccount{URL: "ldaps://x.test", Options: map[string]string{"tls": "starttls"}}},
		{name: "ldap url with ldaps", acct: escrow.TargetAccount{URL: "ldap://x.test", Options: map[string]string{"tls": "ldaps"}}},
		{name: "unknown tls", acct: escrow.TargetAccount{Host: "x.test", Options: map[string]string{"tls": "require"}}},
		{name: "http url", acct: escrow.TargetAccount{URL: "http://x.test"}},
		{name: "url with credentials", acct: escrow.TargetAccount{URL: "ldap://u:p@x.test"}},
		{name: "url with a query", acct: escrow.TargetAccount{URL: "ldap://x.test/?x"}},
		{name: "no host", acct: escrow.TargetAccount{}},
		{name: "bad port", acct: escrow.TargetAccount{Host: "x.test", Port: "70000"}},
		{name: "ca that is not PEM", acct: escrow.TargetAccount{Host: "x.test", Options: map[string]string{"ca": "nope"}}},
		{name: "ca with none", acct: escrow.TargetAccount{Host: "127.0.0.1", Options: map[string]string{"tls": "none", "ca": string(ca)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			target := New()
			if c.ad {
				target = NewAD()
			}
			ep, err := target.endpoint(c.acct)
			if c.want == "" {
				if !errors.Is(err, escrow.ErrInvalid) {
					t.Fatalf("endpoint: %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.String() != c.want || ep.tls != c.tlsVia {
				t.Errorf("endpoint %s over %s, want %s over %s", ep, ep.tls, c.want, c.tlsVia)
			}
			if (ep.tls == TLSNone) != (ep.tlsConfig == nil) {
				t.Errorf("tls %s with config %v", ep.tls, ep.tlsConfig)
			}
			if ep.tlsConfig != nil && ep.tlsConfig.ServerName != ep.host {
				t.Errorf("TLS server name %q, want %q", ep.tlsConfig.ServerName, ep.host)
			}
		})
	}
}

// TestRefusedBeforeAnyTraffic checks that what Set and Test refuse, they
// refuse without dialing.
func TestRefusedBeforeAnyTraffic(t *testing.T) {
	t.Parallel()
	good := escrow.Credentials{Username: userDN, Password: "old-Pass1"}
	remoteClear := escrow.TargetAccount{Username: userDN, Host: "ldap.example.com", Options: map[string]string{"tls": "none"}}
	local := escrow.TargetAccount{Username: userDN, Host: "127.0.0.1"}
	for _, c := range []struct {
		name string
		call func(*Target) error
	}{
		{"set over clear to a remote host", func(tg *Target) error { return tg.Set(context.Background(), remoteClear, good, "next-Pass2") }},
		{"test over clear to a remote host", func(tg *Target) error { return tg.Test(context.Background(), remoteClear, "old-Pass1") }},
		{"test an empty password", func(tg *Target) error { return tg.Test(context.Background(), local, "") }},
		{"set an empty password", func(tg *Target) error { return tg.Set(context.Background(), local, good, "") }},
		{"login without a password", func(tg *Target) error {
			return tg.Set(context.Background(), local, escrow.Credentials{Username: adminDN}, "next-Pass2")
		}},
		{"login that is not a DN", func(tg *Target) error {
			return tg.Set(context.Background(), local, escrow.Credentials{Username: "admin", Password: "x"}, "next-Pass2")
		}},
		{"account that is not a DN", func(tg *Target) error {
			return tg.Test(context.Background(), escrow.TargetAccount{Username: "alice", Host: "127.0.0.1"}, "old-Pass1")
		}},
		{"account without a username", func(tg *Target) error {
			return tg.Test(context.Background(), escrow.TargetAccount{Host: "127.0.0.1"}, "old-Pass1")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dialed := false
			target := New()
			target.dial = func(context.Context, endpoint) (conn, error) {
				dialed = true
				return nil, errors.New("dialed")
			}
			err := c.call(target)
			if !errors.Is(err, escrow.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
			if dialed {
				t.Error("dialed the server before refusing")
			}
		})
	}
}

func TestConvertError(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pass!"
	j := job{addr: "ldap://ldap.example.com:389", login: adminDN, dn: userDN, secrets: secrets(secret)}
	ldapErr := func(code uint16) error { return goldap.NewError(code, errors.New("diagnostic")) }
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	for _, c := range []struct {
		name    string
		ctx     context.Context
		err     error
		code    escrow.Code
		refused bool
		message string // a part of the client message
	}{
		{name: "invalid credentials", err: ldapErr(goldap.LDAPResultInvalidCredentials), code: escrow.CodeInvalid, refused: true, message: "refused the login of " + adminDN},
		{name: "insufficient access", err: ldapErr(goldap.LDAPResultInsufficientAccessRights), code: escrow.CodeInvalid, message: "does not let " + adminDN + " change the password of " + userDN},
		{name: "constraint violation", err: ldapErr(goldap.LDAPResultConstraintViolation), code: escrow.CodeInvalid, message: "password policy"},
		{name: "no such object", err: ldapErr(goldap.LDAPResultNoSuchObject), code: escrow.CodeInvalid, message: "has no entry " + userDN},
		{name: "confidentiality required", err: ldapErr(goldap.LDAPResultConfidentialityRequired), code: escrow.CodeInvalid, message: "secure connection"},
		{name: "unwilling to perform", err: ldapErr(goldap.LDAPResultUnwillingToPerform), code: escrow.CodeInvalid, message: "unwilling"},
		{name: "busy", err: ldapErr(goldap.LDAPResultBusy), code: escrow.CodeUnavailable, message: "cannot reach LDAP at ldap://ldap.example.com:389"},
		{name: "unavailable", err: ldapErr(goldap.LDAPResultUnavailable), code: escrow.CodeUnavailable, message: "cannot reach LDAP at ldap://ldap.example.com:389"},
		{name: "other result", err: ldapErr(goldap.LDAPResultOther), code: escrow.CodeUnavailable, message: "failed (result 80 Other)"},
		{name: "connection refused", err: goldap.NewError(goldap.ErrorNetwork, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), code: escrow.CodeUnavailable, message: "cannot reach LDAP at"},
		{name: "go-ldap timeout", err: goldap.NewError(goldap.ErrorNetwork, errors.New("ldap: connection timed out")), code: escrow.CodeUnavailable, message: "cannot reach LDAP at"},
		{name: "deadline", ctx: expired, err: &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, code: escrow.CodeUnavailable, message: "did not answer in time"},
		{name: "server answers after the deadline", ctx: expired, err: ldapErr(goldap.LDAPResultInvalidCredentials), code: escrow.CodeInvalid, refused: true},
		{name: "starttls refused", err: &startTLSError{ldapErr(goldap.LDAPResultUnavailable)}, code: escrow.CodeInvalid, message: "refused StartTLS"},
		{name: "starttls handshake", err: &startTLSError{goldap.NewError(goldap.ErrorNetwork, errors.New("TLS handshake failed (x509: certificate signed by unknown authority)"))}, code: escrow.CodeUnavailable, message: "cannot set up TLS"},
		{name: "ldaps unknown authority", err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, code: escrow.CodeUnavailable, message: "cannot set up TLS"},
		{name: "ldaps to a clear server", err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, code: escrow.CodeUnavailable, message: "cannot set up TLS"},
		{name: "diagnostic holding the password", err: goldap.NewError(goldap.LDAPResultConstraintViolation, errors.New("password "+secret+" is in history")), code: escrow.CodeInvalid},
		{name: "diagnostic holding the AD form", err: goldap.NewError(goldap.LDAPResultInvalidCredentials, errors.New("bad value "+UnicodePwd(secret))), code: escrow.CodeInvalid, refused: true},
		{name: "network error holding the password", err: fmt.Errorf("write %s: broken pipe", secret), code: escrow.CodeUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := convertError(ctx, j, c.err)
			wantCode(t, err, c.code)
			if got := errors.Is(err, escrow.ErrLoginRefused); got != c.refused {
				t.Errorf("errors.Is(%v, ErrLoginRefused) = %v, want %v", err, got, c.refused)
			}
			if !strings.Contains(escrow.ErrorMessage(err), c.message) {
				t.Errorf("message %q, want it to hold %q", escrow.ErrorMessage(err), c.message)
			}
			noSecret(t, err, secret)
		})
	}
	if convertError(context.Background(), j, nil) != nil {
		t.Error("convertError(nil) is not nil")
	}
}

// TestSetFailureLogsNoPassword drives a failing Set whose server echoes the
// passwords back, and checks neither the error nor the log holds them.
func TestSetFailureLogsNoPassword(t *testing.T) {
	t.Parallel()
	old, next := password(t), password(t)
	for _, target := range []*Target{New(), NewAD()} {
		f := &fakeConn{opErr: goldap.NewError(goldap.LDAPResultConstraintViolation, fmt.Errorf("%s then %s then %s", old, next, UnicodePwd(next)))}
		withFake(logged(t, target, &old, &next), f)
		err := target.Set(context.Background(), escrow.TargetAccount{Username: userDN, Host: "ldap.example.com"},
			escrow.Credentials{Username: userDN, Password: old}, next)
		wantCode(t, err, escrow.CodeInvalid)
		noSecret(t, err, old, next)
	}
}

// ---- against a real slapd ----

func TestSlapd(t *testing.T) {
	s := ldaptest.Start(t)
	local := func(dn string, opts map[string]string) escrow.TargetAccount {
		return escrow.TargetAccount{Username: dn, Host: s.Host, Port: s.Port, Options: opts}
	}
	admin := escrow.Credentials{Username: s.AdminDN, Password: s.AdminPassword}
	ctx := context.Background()

	t.Run("self change", func(t *testing.T) {
		t.Parallel()
		old, next := password(t), password(t)
		dn := s.AddUser(t, "self", old)
		target := logged(t, New(), &old, &next)
		if err := target.Set(ctx, local(dn, nil), escrow.Credentials{Username: dn, Password: old}, next); err != nil {
			t.Fatal(err)
		}
		if err := s.CanBind(dn, old); !goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			t.Errorf("bind with the old password: %v, want invalid credentials", err)
		}
		if err := s.CanBind(dn, next); err != nil {
			t.Errorf("bind with the new password: %v", err)
		}
		if err := target.Test(ctx, local(dn, nil), next); err != nil {
			t.Errorf("Test the new password: %v", err)
		}
	})

	t.Run("privileged reset", func(t *testing.T) {
		t.Parallel()
		old, next := password(t), password(t)
		dn := s.AddUser(t, "reset", old)
		target := logged(t, New(), &old, &next, &s.AdminPassword)
		if err := target.Set(ctx, local(dn, nil), admin, next); err != nil {
			t.Fatal(err)
		}
		if err := s.CanBind(dn, old); err == nil {
			t.Error("the old password still binds")
		}
		if err := s.CanBind(dn, next); err != nil {
			t.Errorf("bind with the new password: %v", err)
		}
	})

	t.Run("stored as SSHA", func(t *testing.T) {
		t.Parallel()
		old, next := password(t), password(t)
		dn := s.AddUser(t, "hashed", old)
		if err := New().Set(ctx, local(dn, nil), escrow.Credentials{Username: dn, Password: old}, next); err != nil {
			t.Fatal(err)
		}
		stored := s.StoredPassword(t, dn)
		if len(stored) != 1 || !strings.HasPrefix(stored[0], "{SSHA}") || strings.Contains(stored[0], next) {
			t.Errorf("userPassword %q, want one {SSHA} hash", stored)
		}
	})

	t.Run("test right and wrong", func(t *testing.T) {
		t.Parallel()
		pw, wrong := password(t), password(t)
		dn := s.AddUser(t, "tested", pw)
		target := logged(t, New(), &pw, &wrong)
		if err := target.Test(ctx, local(dn, nil), pw); err != nil {
			t.Errorf("Test the right password: %v", err)
		}
		err := target.Test(ctx, local(dn, nil), wrong)
		if !errors.Is(err, escrow.ErrLoginRefused) {
			t.Errorf("Test a wrong password: %v, want ErrLoginRefused", err)
		}
		noSecret(t, err, pw, wrong)
		err = target.Test(ctx, local("uid=nobody,"+ldaptest.PeopleDN, nil), pw)
		if !errors.Is(err, escrow.ErrLoginRefused) {
			t.Errorf("Test a missing user: %v, want ErrLoginRefused", err)
		}
		if err := target.Test(ctx, local(dn, nil), ""); !errors.Is(err, escrow.ErrInvalid) {
			t.Errorf("Test an empty password: %v, want ErrInvalid", err)
		}
	})

	t.Run("wrong login", func(t *testing.T) {
		t.Parallel()
		old, wrong, next := password(t), password(t), password(t)
		dn := s.AddUser(t, "wronglogin", old)
		target := logged(t, New(), &old, &wrong, &next)
		for _, login := range []escrow.Credentials{{Username: dn, Password: wrong}, {Username: s.AdminDN, Password: wrong}} {
			err := target.Set(ctx, local(dn, nil), login, next)
			if !errors.Is(err, escrow.ErrLoginRefused) {
				t.Errorf("Set as %s with a wrong password: %v, want ErrLoginRefused", login.Username, err)
			}
			noSecret(t, err, old, wrong, next)
		}
		if err := s.CanBind(dn, old); err != nil {
			t.Errorf("the password changed: %v", err)
		}
	})

	t.Run("another user may not change it", func(t *testing.T) {
		t.Parallel()
		pw, otherPW, next := password(t), password(t), password(t)
		dn := s.AddUser(t, "victim", pw)
		other := s.AddUser(t, "intruder", otherPW)
		err := New().Set(ctx, local(dn, nil), escrow.Credentials{Username: other, Password: otherPW}, next)
		wantCode(t, err, escrow.CodeInvalid)
		if errors.Is(err, escrow.ErrLoginRefused) {
			t.Errorf("%v: the login was accepted; the change was refused", err)
		}
		noSecret(t, err, pw, otherPW, next)
		if err := s.CanBind(dn, pw); err != nil {
			t.Errorf("the password changed: %v", err)
		}
	})

	t.Run("starttls with the harness CA", func(t *testing.T) {
		t.Parallel()
		old, next := password(t), password(t)
		dn := s.AddUser(t, "tls", old)
		for _, host := range []string{"127.0.0.1", "localhost"} {
			acct := escrow.TargetAccount{Username: dn, Host: host, Port: s.Port, Options: map[string]string{"tls": "starttls", "ca": s.CAPEM}}
			if err := New().Set(ctx, acct, escrow.Credentials{Username: dn, Password: old}, next); err != nil {
				t.Fatalf("Set over StartTLS to %s: %v", host, err)
			}
			if err := New().Test(ctx, acct, next); err != nil {
				t.Errorf("Test over StartTLS to %s: %v", host, err)
			}
			old, next = next, password(t)
		}
	})

	t.Run("starttls with a wrong CA", func(t *testing.T) {
		t.Parallel()
		old, next := password(t), password(t)
		dn := s.AddUser(t, "wrongca", old)
		otherCA, _, err := ldaptest.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range []map[string]string{
			{"tls": "starttls", "ca": string(otherCA)},
			{"tls": "starttls"}, // the system's roots do not know the harness CA
		} {
			err := New().Set(ctx, local(dn, opts), escrow.Credentials{Username: dn, Password: old}, next)
			wantCode(t, err, escrow.CodeUnavailable)
			if !strings.Contains(escrow.ErrorMessage(err), "TLS") {
				t.Errorf("message %q does not say TLS failed", escrow.ErrorMessage(err))
			}
			noSecret(t, err, old, next)
			if err := New().Test(ctx, local(dn, opts), old); !errors.Is(err, escrow.ErrUnavailable) {
				t.Errorf("Test with a wrong CA: %v, want ErrUnavailable", err)
			}
		}
		// Nothing went on in clear: the password is unchanged.
		if err := s.CanBind(dn, old); err != nil {
			t.Errorf("the password changed: %v", err)
		}
	})

	t.Run("ldaps to a server that speaks clear LDAP", func(t *testing.T) {
		t.Parallel()
		pw := password(t)
		dn := s.AddUser(t, "ldapsclear", pw)
		err := New().Test(ctx, local(dn, map[string]string{"tls": "ldaps", "ca": s.CAPEM}), pw)
		wantCode(t, err, escrow.CodeUnavailable)
	})

	t.Run("unreachable port", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		pw := password(t)
		acct := escrow.TargetAccount{Username: "uid=x," + ldaptest.PeopleDN, Host: "127.0.0.1", Port: port}
		err = New().Test(ctx, acct, pw)
		if !errors.Is(err, escrow.ErrUnavailable) || !strings.Contains(escrow.ErrorMessage(err), "cannot reach LDAP at ldap://127.0.0.1:"+port) {
			t.Errorf("Test on a closed port: %v, want ErrUnavailable", err)
		}
		err = New().Set(ctx, acct, admin, pw)
		if !errors.Is(err, escrow.ErrUnavailable) {
			t.Errorf("Set on a closed port: %v, want ErrUnavailable", err)
		}
		noSecret(t, err, pw, s.AdminPassword)
	})

	t.Run("server that never answers", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close() // held open, never answered
			}
		}()
		acct := escrow.TargetAccount{Username: "uid=x," + ldaptest.PeopleDN, Host: "127.0.0.1", Port: fmt.Sprint(l.Addr().(*net.TCPAddr).Port)}

		target := New()
		target.Timeout = 200 * time.Millisecond
		began := time.Now()
		err = target.Test(ctx, acct, "pw-Timeout1")
		if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Test a silent server: %v, want ErrUnavailable and DeadlineExceeded", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Test took %v with a 200ms timeout", d)
		}

		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		began = time.Now()
		err = New().Set(cctx, acct, admin, "pw-Timeout2")
		if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("Set cancelled: %v, want ErrUnavailable and Canceled", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Set took %v after its context was cancelled", d)
		}
	})
}
