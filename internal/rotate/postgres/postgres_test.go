package postgres

import (
	"bytes"
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
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// Known answers computed independently with Python's hashlib.pbkdf2_hmac
// and hmac (RFC 5802: StoredKey = H(HMAC(SaltedPassword, "Client Key")),
// ServerKey = HMAC(SaltedPassword, "Server Key")).
var verifierVectors = []struct {
	name, password, saltHex string
	iterations              int
	want                    string
}{
	{"ascii", "password", "000102030405060708090a0b0c0d0e0f", 4096,
		"SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$4PSH04DiBM59z6mw0gs6x1r6+duXYQ+R0KwGZr+W5/o=:IgPInY95tTazYxnARISZb/eTxuX/JRwWgrM9ByaOUIk="},
	{"quotes and dollars", `it's a "$1" \ $$ test`, "657363726f772d6b61742d73616c7421", 4096,
		"SCRAM-SHA-256$4096:ZXNjcm93LWthdC1zYWx0IQ==$lEC3LHpm0ASudKjLXSDsWv4ax6VIxnI1kiY7Mm8M54o=:YMWdQKZSagSebynkkdsQPKvbnnEefMpgAbYmvwXPC88="},
	{"symbols", "Tr0ub4dor&3", "00112233445566778899aabbccddeeff", 4096,
		"SCRAM-SHA-256$4096:ABEiM0RVZneImaq7zN3u/w==$JuTt10kPYEBNPRj1JnTYr2HJLt3gY3wH/37PBKcHGhw=:1YcR1Oh5gJ2iSueUHDetziUgYETJ5TgyG79l1p/bMsE="},
	{"RFC 7677 salt", "pencil", "5b6d99689d12358eeca04b141236fa81", 4096,
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="},
	{"one iteration", "x", "ffffffffffffffffffffffffffffffff", 1,
		"SCRAM-SHA-256$1://///////////////////w==$pBCfaLPMFMj4w4eRTn729+i/4D2XauGYufVA2/Wibs0=:j7O+Jv5fRNKFWwRcnX/pbNhqyC4WFIusrSxoA5udEHg="},
}

func TestVerifierKnownAnswers(t *testing.T) {
	t.Parallel()
	for _, v := range verifierVectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			salt, err := hex.DecodeString(v.saltHex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := scramVerifier(v.password, salt, v.iterations)
			if err != nil {
				t.Fatal(err)
			}
			if got != v.want {
				t.Errorf("scramVerifier(%q) =\n  %s\nwant\n  %s", v.password, got, v.want)
			}
		})
	}
}

// TestConvertError is the table of STYLE 5: every branch of the mapping.
func TestConvertError(t *testing.T) {
	t.Parallel()
	pg := func(code string) error {
		// pgx wraps the server's error in its connect and query errors.
		return fmt.Errorf("failed to connect: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: "m"})
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, c := range []struct {
		name    string
		err     error
		code    escrow.Code
		refused bool
	}{
		{"nil", nil, "", false},
		{"bad password 28P01", pg("28P01"), escrow.CodeConflict, true},
		{"no login 28000", pg("28000"), escrow.CodeConflict, true},
		{"insufficient privilege 42501", pg("42501"), escrow.CodeInvalid, false},
		{"no such role 42704", pg("42704"), escrow.CodeInvalid, false},
		{"no such database 3D000", pg("3D000"), escrow.CodeInvalid, false},
		{"too many connections 53300", pg("53300"), escrow.CodeUnavailable, false},
		{"lock timeout 55P03", pg("55P03"), escrow.CodeUnavailable, false},
		{"connection refused", fmt.Errorf("dial: %w", refused), escrow.CodeUnavailable, false},
		{"timeout", fmt.Errorf("connect: %w", context.DeadlineExceeded), escrow.CodeUnavailable, false},
		{"tls", errors.New("tls: failed to verify certificate"), escrow.CodeUnavailable, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := convertError(c.err, "db:5432")
			if code := escrow.ErrorCode(got); code != c.code {
				t.Errorf("code = %q, want %q (%v)", code, c.code, got)
			}
			if r := errors.Is(got, escrow.ErrLoginRefused); r != c.refused {
				t.Errorf("errors.Is(ErrLoginRefused) = %v, want %v", r, c.refused)
			}
			if c.err != nil && !errors.Is(got, c.err) {
				t.Errorf("the cause is lost: %v", got)
			}
		})
	}
}

// fakeConn answers Exec with err and records the SQL; it stands in for the
// server only to test the mapping and what Set sends.
type fakeConn struct {
	mu  sync.Mutex
	sql []string
	err error
}

func (f *fakeConn) Exec(_ context.Context, sql string, _ ...any) (pgconn.CommandTag, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sql = append(f.sql, sql)
	return pgconn.CommandTag{}, f.err
}

func (f *fakeConn) Close(context.Context) error { return nil }

func TestSetThroughFake(t *testing.T) {
	t.Parallel()
	const next = `n3w'pass\word$1`
	acct := escrow.TargetAccount{Username: `we"ird role`, Host: "db.internal", Options: map[string]string{"tls": "disable"}}
	login := escrow.Credentials{Username: "admin", Password: "adm1n-secret"}
	for _, c := range []struct {
		name string
		exec error
		code escrow.Code
	}{
		{"ok", nil, ""},
		{"not allowed", &pgconn.PgError{Severity: "ERROR", Code: "42501", Message: "permission denied to alter role"}, escrow.CodeInvalid},
		{"no such role", &pgconn.PgError{Severity: "ERROR", Code: "42704", Message: "role does not exist"}, escrow.CodeInvalid},
		{"server failure", &pgconn.PgError{Severity: "ERROR", Code: "XX000", Message: "internal"}, escrow.CodeUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fc := &fakeConn{err: c.exec}
			var cfg *pgx.ConnConfig
			var logs bytes.Buffer
			tg := New()
			tg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			tg.connect = func(_ context.Context, c *pgx.ConnConfig) (conn, error) { cfg = c; return fc, nil }
			err := tg.Set(context.Background(), acct, login, next)
			if code := escrow.ErrorCode(err); code != c.code {
				t.Fatalf("Set: code %q, want %q (%v)", code, c.code, err)
			}
			if len(fc.sql) != 1 {
				t.Fatalf("sent %d statements, want 1", len(fc.sql))
			}
			sql := fc.sql[0]
			if !strings.HasPrefix(sql, `ALTER ROLE "we""ird role" PASSWORD 'SCRAM-SHA-256$4096:`) || !strings.HasSuffix(sql, "'") {
				t.Errorf("statement %q", sql)
			}
			if cfg.User != "admin" || cfg.Password != login.Password || cfg.Host != "db.internal" || cfg.Port != 5432 || cfg.Database != "postgres" || cfg.TLSConfig != nil {
				t.Errorf("config %s@%s:%d/%s tls=%v", cfg.User, cfg.Host, cfg.Port, cfg.Database, cfg.TLSConfig != nil)
			}
			noSecrets(t, sql, next, login.Password)
			noSecrets(t, fmt.Sprint(err)+logs.String(), next, login.Password, "SCRAM-SHA-256$")
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tg := New()
	ca := testCA(t)
	for _, c := range []struct {
		name     string
		acct     escrow.TargetAccount
		code     escrow.Code
		tls      string // "", "skip-verify", "verify"
		port     uint16
		database string
	}{
		{"loopback defaults", escrow.TargetAccount{Username: "u", Host: "127.0.0.1"}, "", "", 5432, "postgres"},
		{"localhost", escrow.TargetAccount{Username: "u", Host: "localhost", Port: "6432", Database: "app"}, "", "", 6432, "app"},
		{"ipv6 loopback", escrow.TargetAccount{Username: "u", Host: "::1"}, "", "", 5432, "postgres"},
		{"remote defaults to verify-full", escrow.TargetAccount{Username: "u", Host: "db.example.com"}, "", "verify", 5432, "postgres"},
		{"remote disable", escrow.TargetAccount{Username: "u", Host: "10.0.0.5", Options: map[string]string{"tls": "disable"}}, "", "", 5432, "postgres"},
		{"none is disable", escrow.TargetAccount{Username: "u", Host: "10.0.0.5", Options: map[string]string{"tls": "none"}}, "", "", 5432, "postgres"},
		{"require", escrow.TargetAccount{Username: "u", Host: "127.0.0.1", Options: map[string]string{"tls": "require"}}, "", "skip-verify", 5432, "postgres"},
		{"verify-full with ca", escrow.TargetAccount{Username: "u", Host: "127.0.0.1", Options: map[string]string{"tls": "verify-full", "ca": ca}}, "", "verify", 5432, "postgres"},
		{"ca without verify-full", escrow.TargetAccount{Username: "u", Host: "db", Options: map[string]string{"tls": "require", "ca": ca}}, escrow.CodeInvalid, "", 0, ""},
		{"ca not PEM", escrow.TargetAccount{Username: "u", Host: "db", Options: map[string]string{"ca": "nope"}}, escrow.CodeInvalid, "", 0, ""},
		{"unknown tls", escrow.TargetAccount{Username: "u", Host: "db", Options: map[string]string{"tls": "prefer"}}, escrow.CodeInvalid, "", 0, ""},
		{"no host", escrow.TargetAccount{Username: "u"}, escrow.CodeInvalid, "", 0, ""},
		{"unix socket", escrow.TargetAccount{Username: "u", Host: "/var/run/postgresql"}, escrow.CodeInvalid, "", 0, ""},
		{"host list", escrow.TargetAccount{Username: "u", Host: "a,b"}, escrow.CodeInvalid, "", 0, ""},
		{"bad port", escrow.TargetAccount{Username: "u", Host: "db", Port: "99999"}, escrow.CodeInvalid, "", 0, ""},
		{"port 0", escrow.TargetAccount{Username: "u", Host: "db", Port: "0"}, escrow.CodeInvalid, "", 0, ""},
		{"long database", escrow.TargetAccount{Username: "u", Host: "db", Database: strings.Repeat("d", 64)}, escrow.CodeInvalid, "", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, _, err := tg.config(c.acct, "login", "pw")
			if code := escrow.ErrorCode(err); code != c.code {
				t.Fatalf("code %q, want %q (%v)", code, c.code, err)
			}
			if err != nil {
				return
			}
			if cfg.Port != c.port || cfg.Database != c.database || cfg.User != "login" || cfg.Password != "pw" {
				t.Errorf("config %s:%d/%s as %s", cfg.Host, cfg.Port, cfg.Database, cfg.User)
			}
			if len(cfg.Fallbacks) != 0 || cfg.RequireAuth != allowedAuth || cfg.ConnectTimeout != DefaultConnectTimeout {
				t.Errorf("fallbacks %d, require_auth %q, connect timeout %v", len(cfg.Fallbacks), cfg.RequireAuth, cfg.ConnectTimeout)
			}
			var got string
			switch tc := cfg.TLSConfig; {
			case tc == nil:
			case tc.InsecureSkipVerify:
				got = "skip-verify"
			default:
				got = "verify"
				if tc.ServerName != c.acct.Host {
					t.Errorf("ServerName %q, want %q", tc.ServerName, c.acct.Host)
				}
				if (c.acct.Options["ca"] != "") != (tc.RootCAs != nil) {
					t.Errorf("RootCAs set = %v with ca option set = %v", tc.RootCAs != nil, c.acct.Options["ca"] != "")
				}
			}
			if got != c.tls {
				t.Errorf("tls %q, want %q", got, c.tls)
			}
		})
	}
}

// TestConfigIgnoresEnvironment: libpq's PG* variables of the process must
// not redirect, weaken or break a rotation. Not parallel: it sets the
// environment.
func TestConfigIgnoresEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"PGHOST": "evil.example", "PGPORT": "1", "PGDATABASE": "evil", "PGUSER": "evil", "PGPASSWORD": "env-secret",
		"PGSSLMODE": "verify-full", "PGSSLCERTMODE": "require", "PGTARGETSESSIONATTRS": "standby",
		"PGOPTIONS": "-c search_path=evil", "PGAPPNAME": "evil", "PGTZ": "Mars/Olympus",
		"PGCHANNELBINDING": "require", "PGREQUIREAUTH": "password", "PGMINPROTOCOLVERSION": "3.2",
		"PGCONNECT_TIMEOUT": "1", "PGPASSFILE": "/nonexistent", "PGSSLNEGOTIATION": "direct",
	} {
		t.Setenv(k, v)
	}
	acct := escrow.TargetAccount{Username: "u", Host: "127.0.0.1", Port: "5433", Database: "app"}
	cfg, _, err := New().config(acct, "login", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "127.0.0.1" || cfg.Port != 5433 || cfg.Database != "app" || cfg.User != "login" || cfg.Password != "pw" {
		t.Errorf("address or credentials from the environment: %s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	}
	if cfg.TLSConfig != nil || len(cfg.Fallbacks) != 0 || cfg.ValidateConnect != nil || cfg.SSLNegotiation != "" || cfg.SSLCertMode != "disable" {
		t.Errorf("TLS or fallbacks from the environment: tls=%v fallbacks=%d validate=%v negotiation=%q certmode=%q",
			cfg.TLSConfig != nil, len(cfg.Fallbacks), cfg.ValidateConnect != nil, cfg.SSLNegotiation, cfg.SSLCertMode)
	}
	if cfg.RequireAuth != allowedAuth || cfg.ChannelBinding != "prefer" || cfg.MinProtocolVersion != "3.0" || cfg.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("auth from the environment: require_auth=%q channel_binding=%q min_protocol=%q timeout=%v",
			cfg.RequireAuth, cfg.ChannelBinding, cfg.MinProtocolVersion, cfg.ConnectTimeout)
	}
	want := map[string]string{"application_name": "escrow-rotation", "statement_timeout": "10000", "lock_timeout": "10000"}
	if fmt.Sprint(cfg.RuntimeParams) != fmt.Sprint(want) {
		t.Errorf("runtime params %v, want %v", cfg.RuntimeParams, want)
	}
}

func TestRefusedBeforeConnecting(t *testing.T) {
	t.Parallel()
	tg := New()
	tg.connect = func(context.Context, *pgx.ConnConfig) (conn, error) {
		t.Error("connected although the input is invalid")
		return nil, errors.New("unreachable")
	}
	acct := escrow.TargetAccount{Username: "u", Host: "127.0.0.1"}
	login := escrow.Credentials{Username: "u", Password: "p"}
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		acct  escrow.TargetAccount
		login escrow.Credentials
		next  string
	}{
		{"non-ASCII password", acct, login, "pässwörd-123"},
		{"control character", acct, login, "pass\nword"},
		{"empty password", acct, login, ""},
		{"long password", acct, login, strings.Repeat("p", 1025)},
		{"no role", escrow.TargetAccount{Host: "127.0.0.1"}, login, "n3xt-Secret-1"},
		{"long role", escrow.TargetAccount{Username: strings.Repeat("r", 64), Host: "127.0.0.1"}, login, "n3xt-Secret-1"},
		{"no login user", acct, escrow.Credentials{Password: "p"}, "n3xt-Secret-1"},
		{"no login password", acct, escrow.Credentials{Username: "u"}, "n3xt-Secret-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := tg.Set(ctx, c.acct, c.login, c.next)
			if !errors.Is(err, escrow.ErrInvalid) {
				t.Fatalf("Set: %v, want ErrInvalid", err)
			}
			noSecrets(t, err.Error(), c.next)
		})
	}
	if err := tg.Test(ctx, escrow.TargetAccount{Host: "127.0.0.1"}, "p"); !errors.Is(err, escrow.ErrInvalid) {
		t.Errorf("Test without a username: %v, want ErrInvalid", err)
	}
}

// --- against a real PostgreSQL ---

// fixture is a real server, a target whose log is kept, and the errors
// seen, so that every test can check no secret leaked.
type fixture struct {
	srv  *pgtest.Server
	tg   *Target
	logs *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := pgtest.StartShared(t)
	logs := &syncBuffer{}
	tg := New()
	tg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return &fixture{srv: srv, tg: tg, logs: logs}
}

func (f *fixture) acct(role string) escrow.TargetAccount {
	return escrow.TargetAccount{Username: role, Host: f.srv.Host, Port: f.srv.Port}
}

// role creates a role named after the test (roles are cluster-wide and the
// server is shared) and returns its name.
func (f *fixture) role(t *testing.T, suffix, password string, superuser bool) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())) + "_" + suffix
	if len(name) > maxIdentifier {
		name = name[len(name)-maxIdentifier:]
	}
	f.srv.CreateRole(t, name, password, superuser)
	return name
}

func (f *fixture) canLogin(t *testing.T, role, password string) bool {
	t.Helper()
	return f.srv.CanLogin(context.Background(), role, password) == nil
}

// verifier reads the role's stored password.
func (f *fixture) verifier(t *testing.T, role string) string {
	t.Helper()
	var v string
	if err := f.srv.Conn(t).QueryRow(context.Background(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
		t.Fatalf("read pg_authid: %v", err)
	}
	return v
}

func TestRealOwnPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const old, next = "old-Passw0rd!", "new-Passw0rd#42"
	role := f.role(t, "self", old, false)

	err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: role, Password: old}, next)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	if f.canLogin(t, role, old) {
		t.Error("the old password still works")
	}
	if !f.canLogin(t, role, next) {
		t.Error("the new password does not work")
	}
	if err := f.tg.Test(ctx, f.acct(role), next); err != nil {
		t.Errorf("Test(new): %v", err)
	}
	errOld := f.tg.Test(ctx, f.acct(role), old)
	if !errors.Is(errOld, escrow.ErrLoginRefused) || escrow.ErrorCode(errOld) != escrow.CodeConflict {
		t.Errorf("Test(old): %v, want ErrLoginRefused", errOld)
	}
	noSecrets(t, fmt.Sprint(errOld)+f.logs.String(), old, next, f.verifier(t, role))
}

func TestRealPrivilegedLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const adminPW, old, next = "admin-Passw0rd", "user-old-1", "user-new-2"
	admin := f.role(t, "admin", adminPW, true)
	role := f.role(t, "user", old, false)

	if err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: admin, Password: adminPW}, next); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if f.canLogin(t, role, old) || !f.canLogin(t, role, next) {
		t.Error("the password did not change")
	}
	if !f.canLogin(t, admin, adminPW) {
		t.Error("the privileged login's own password changed")
	}
	noSecrets(t, f.logs.String(), adminPW, old, next)
}

func TestRealUnprivilegedLoginMayNotChangeAnother(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	other := f.role(t, "other", "other-pw-1", false)
	role := f.role(t, "user", "user-pw-1", false)
	err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: other, Password: "other-pw-1"}, "user-pw-2")
	if !errors.Is(err, escrow.ErrInvalid) || errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set: %v, want ErrInvalid", err)
	}
	if !f.canLogin(t, role, "user-pw-1") {
		t.Error("the password changed")
	}
	noSecrets(t, err.Error()+f.logs.String(), "other-pw-1", "user-pw-1", "user-pw-2", "SCRAM-SHA-256$")
}

func TestRealWrongLoginPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	role := f.role(t, "r", "right-pw-1", false)
	err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: role, Password: "wrong-pw-1"}, "next-pw-1")
	if !errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set: %v, want ErrLoginRefused", err)
	}
	if !f.canLogin(t, role, "right-pw-1") || f.canLogin(t, role, "next-pw-1") {
		t.Error("the password changed")
	}
	errTest := f.tg.Test(ctx, f.acct(role), "wrong-pw-1")
	if !errors.Is(errTest, escrow.ErrLoginRefused) {
		t.Errorf("Test(wrong): %v, want ErrLoginRefused", errTest)
	}
	if err := f.tg.Test(ctx, f.acct(role), "right-pw-1"); err != nil {
		t.Errorf("Test(right): %v", err)
	}
	noSecrets(t, err.Error()+errTest.Error()+f.logs.String(), "right-pw-1", "wrong-pw-1", "next-pw-1", "SCRAM-SHA-256$")
}

func TestRealNoLoginRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	role := f.role(t, "r", "nologin-pw-1", false)
	if _, err := f.srv.Conn(t).Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	// SQLSTATE 28000: the right password, but the role may not log in.
	if err := f.tg.Test(ctx, f.acct(role), "nologin-pw-1"); !errors.Is(err, escrow.ErrLoginRefused) {
		t.Errorf("Test: %v, want ErrLoginRefused", err)
	}
}

func TestRealMissingRoleAndDatabase(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.role(t, "admin", "admin-pw-1", true)
	login := escrow.Credentials{Username: admin, Password: "admin-pw-1"}
	if err := f.tg.Set(ctx, f.acct("no_such_role_x"), login, "pw-123456"); !errors.Is(err, escrow.ErrInvalid) {
		t.Errorf("Set on a missing role: %v, want ErrInvalid", err)
	}
	acct := f.acct(admin)
	acct.Database = "no_such_database"
	if err := f.tg.Test(ctx, acct, "admin-pw-1"); !errors.Is(err, escrow.ErrInvalid) {
		t.Errorf("Test on a missing database: %v, want ErrInvalid", err)
	}
}

func TestRealUnreachable(t *testing.T) {
	t.Parallel()
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	tg := New()
	tg.ConnectTimeout = 2 * time.Second
	acct := escrow.TargetAccount{Username: "u", Host: "127.0.0.1", Port: port}
	err = tg.Set(context.Background(), acct, escrow.Credentials{Username: "u", Password: "login-pw-1"}, "next-pw-1")
	if !errors.Is(err, escrow.ErrUnavailable) || errors.Is(err, escrow.ErrLoginRefused) {
		t.Fatalf("Set: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(escrow.ErrorMessage(err), "127.0.0.1:"+port) {
		t.Errorf("message %q does not name the address", escrow.ErrorMessage(err))
	}
	errTest := tg.Test(context.Background(), acct, "login-pw-1")
	if !errors.Is(errTest, escrow.ErrUnavailable) {
		t.Errorf("Test: %v, want ErrUnavailable", errTest)
	}
	noSecrets(t, err.Error()+errTest.Error(), "login-pw-1", "next-pw-1")
}

// TestRealAwkwardPasswords uses passwords that break naive quoting, and a
// role name that needs quoting too.
func TestRealAwkwardPasswords(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const first = `st'art"\x`
	role := f.role(t, `o'dd "role"`, first, false)
	prev := first
	for _, next := range []string{
		`it's a "$1" \ $$ test`,
		`'; DROP ROLE postgres; --`,
		`$$ $tag$ \\ \' ''`,
		` leading and trailing spaces `,
		`E'\x41'`,
	} {
		if err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: role, Password: prev}, next); err != nil {
			t.Fatalf("Set(%q): %v", next, err)
		}
		if !f.canLogin(t, role, next) || f.canLogin(t, role, prev) {
			t.Fatalf("after Set(%q) the new password does not work or the old one still does", next)
		}
		if err := f.tg.Test(ctx, f.acct(role), next); err != nil {
			t.Fatalf("Test(%q): %v", next, err)
		}
		prev = next
	}
}

// TestRealNoCleartextOnServer checks what the server kept: a SCRAM
// verifier in pg_authid, and a statement log (log_statement=all) that
// holds the ALTER ROLE with that verifier but never the password.
func TestRealNoCleartextOnServer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const old, next = "cleartext-old-9f2c", "cleartext-new-5e1d"
	role := f.role(t, "r", old, false)
	if err := f.tg.Set(ctx, f.acct(role), escrow.Credentials{Username: role, Password: old}, next); err != nil {
		t.Fatalf("Set: %v", err)
	}
	v := f.verifier(t, role)
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") {
		t.Fatalf("stored password %.20q... is not a SCRAM-SHA-256 verifier with 4096 iterations", v)
	}
	log, err := f.srv.Log()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "ALTER ROLE") || !strings.Contains(log, v) {
		t.Fatal("the server log lacks the ALTER ROLE statement: log_statement=all is not in effect, so this test proves nothing")
	}
	noSecrets(t, log, old, next)
	noSecrets(t, f.logs.String(), old, next, v)
}

func TestRealTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	role := f.role(t, "r", "tls-pw-1", false)
	acct := func(opts map[string]string) escrow.TargetAccount {
		a := f.acct(role)
		a.Options = opts
		return a
	}
	ca := string(f.srv.CAPEM)
	if err := f.tg.Test(ctx, acct(map[string]string{"tls": "require"}), "tls-pw-1"); err != nil {
		t.Errorf("require: %v", err)
	}
	if err := f.tg.Test(ctx, acct(map[string]string{"tls": "verify-full", "ca": ca}), "tls-pw-1"); err != nil {
		t.Errorf("verify-full with the CA: %v", err)
	}
	// The system roots do not know the test CA.
	if err := f.tg.Test(ctx, acct(map[string]string{"tls": "verify-full"}), "tls-pw-1"); !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("verify-full with system roots: %v, want ErrUnavailable", err)
	}
	// Set over verified TLS, then check the new password without TLS.
	err := f.tg.Set(ctx, acct(map[string]string{"tls": "verify-full", "ca": ca}), escrow.Credentials{Username: role, Password: "tls-pw-1"}, "tls-pw-2")
	if err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	if !f.canLogin(t, role, "tls-pw-2") {
		t.Error("the new password does not work")
	}
}

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// noSecrets fails t if text holds any of secrets.
func noSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a secret (%d bytes) appears in an error or log", len(s))
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger shared by parallel calls.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRealRefusesWeakAuth runs on a server of its own, whose
// authentication it weakens: a server that asks for the password in clear
// must not get it, and one that asks for none (trust) must not make Test
// pass a wrong password.
func TestRealRefusesWeakAuth(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	ctx := context.Background()
	srv.CreateRole(t, "weak", "weak-pw-1", false)
	tg := New()
	acct := escrow.TargetAccount{Username: "weak", Host: srv.Host, Port: srv.Port}
	login := escrow.Credentials{Username: "weak", Password: "weak-pw-1"}

	srv.SetHostAuth(t, "password")
	if err := tg.Test(ctx, acct, "weak-pw-1"); !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("Test under cleartext password auth: %v, want ErrUnavailable", err)
	}
	if err := tg.Set(ctx, acct, login, "weak-pw-2"); !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("Set under cleartext password auth: %v, want ErrUnavailable", err)
	}
	log, err := srv.Log()
	if err != nil {
		t.Fatal(err)
	}
	// log_connections=on: the harness's own logins show, weak's must not
	// (neither a success nor a failed password check).
	if !strings.Contains(log, "connection authorized: user="+srv.User) {
		t.Fatal("the server log lacks connection lines: log_connections is not in effect, so this check proves nothing")
	}
	if strings.Contains(log, "user=weak") || strings.Contains(log, `for user "weak"`) {
		t.Error("the server received weak's password in clear")
	}

	srv.SetHostAuth(t, "trust")
	if err := tg.Test(ctx, acct, "wrong-pw"); err == nil {
		t.Error("Test passed a wrong password because the server trusts everyone")
	} else if !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("Test under trust: %v, want ErrUnavailable", err)
	}

	srv.SetHostAuth(t, "scram-sha-256")
	if err := tg.Test(ctx, acct, "weak-pw-1"); err != nil {
		t.Errorf("the password changed: %v", err)
	}
}
