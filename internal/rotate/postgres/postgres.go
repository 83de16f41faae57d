// Package postgres is the PostgreSQL rotation target: it changes a role's
// password with ALTER ROLE and tests a password by logging in.
//
// The new password never reaches the server in clear: Set sends a
// SCRAM-SHA-256 verifier computed here, as psql's \password does, so the
// server's statement log and pg_stat_statements see only the verifier. This
// package must never put a password or a verifier in an error or a log
// line, never build a connection string holding a password, and never let
// a server that asks for the password in clear (or asks for none) have it
// or pass for a successful login.
package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Defaults of Target's fields.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultStatementTimeout = 10 * time.Second
	DefaultDatabase         = "postgres"
	DefaultPort             = "5432"
)

// Options read from escrow.TargetAccount.Options.
const (
	// OptionTLS is "disable" (alias "none"), "require" or "verify-full".
	// Without it a loopback host (localhost, 127.0.0.0/8, ::1) gets
	// "disable" and any other host "verify-full" against the system roots.
	// "require" encrypts but checks no certificate; "verify-full" checks
	// the chain and that the certificate names the host.
	OptionTLS = "tls"
	// OptionCA is a PEM CA certificate (or several) that verify-full
	// trusts instead of the system roots. It is refused with any other
	// tls mode rather than silently ignored.
	OptionCA = "ca"
)

// The TLS modes of OptionTLS.
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"
	TLSVerifyFull = "verify-full"
)

// scramIterations is PostgreSQL's default scram_iterations: what the
// server itself would use for a cleartext password.
const scramIterations = 4096

// allowedAuth is the pgx require_auth policy: SCRAM (what Set stores) or
// MD5 (what an older server may hold before the first rotation). A server
// asking for the cleartext password, or for none at all (trust), is
// refused before it gets anything.
const allowedAuth = "scram-sha-256,md5"

// baseSettings is what pgx must parse to build a config (it cannot be made
// by hand). Every setting a PG* environment variable could change is named,
// so the environment can neither break parsing nor make pgx look up the OS
// user or read ~/.pgpass; config then sets the real values field by field.
// It holds no password, and never may.
const baseSettings = "host=localhost port=5432 dbname=postgres user=escrow passfile=/dev/null connect_timeout=10 " +
	"sslmode=disable sslcertmode=disable target_session_attrs=any channel_binding=prefer " +
	"require_auth=" + allowedAuth + " min_protocol_version=3.0 max_protocol_version=3.0"

// maxIdentifier is NAMEDATALEN-1: PostgreSQL silently truncates longer
// names, which could make ALTER ROLE hit another role.
const maxIdentifier = 63

// Target changes passwords of PostgreSQL roles. Create it with New; the
// zero value works too, with the defaults.
type Target struct {
	// ConnectTimeout bounds dialing, TLS and authentication; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// StatementTimeout bounds ALTER ROLE (it may wait on a lock), both on
	// the server (statement_timeout, lock_timeout) and here; 0 means
	// DefaultStatementTimeout.
	StatementTimeout time.Duration
	// Logger gets one line per Set, without any password; nil logs
	// nothing.
	Logger *slog.Logger

	// connect opens a connection; tests replace it to check the error
	// mapping. nil means pgx.ConnectConfig.
	connect func(ctx context.Context, cfg *pgx.ConnConfig) (conn, error)
}

// conn is the part of *pgx.Conn the target uses.
type conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Close(ctx context.Context) error
}

var _ escrow.RotationTarget = (*Target)(nil)

// New returns a Target with the default timeouts.
func New() *Target {
	return &Target{ConnectTimeout: DefaultConnectTimeout, StatementTimeout: DefaultStatementTimeout}
}

// Set makes next the password of the role acct.Username, logging in to
// acct's database as login: the role itself (a role may always change its
// own password) or a role allowed to alter it (a superuser, or a role with
// CREATEROLE, and from PostgreSQL 16 ADMIN OPTION on it).
//
// next must be 1 to 1024 bytes of printable ASCII (space included): SCRAM
// normalizes other passwords with SASLprep, which is not implemented here,
// and sending them in clear instead would put them in the server log, so
// they are refused with ErrInvalid. Escrow's password policies only
// generate printable ASCII.
//
// Returns an error wrapping escrow.ErrLoginRefused (code conflict) if the
// server refuses login; ErrInvalid if acct or login lacks what is needed,
// the role or database does not exist, or login may not change the role's
// password; ErrUnavailable if the server cannot be reached or fails.
func (t *Target) Set(ctx context.Context, acct escrow.TargetAccount, login escrow.Credentials, next string) error {
	if err := checkPassword(next); err != nil {
		return err
	}
	if err := checkRole("role", acct.Username); err != nil {
		return err
	}
	if err := checkRole("login username", login.Username); err != nil {
		return err
	}
	if login.Password == "" {
		return escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL login needs a password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "generate a SCRAM salt")
	}
	verifier, err := scramVerifier(next, salt, scramIterations)
	if err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "compute the SCRAM verifier")
	}
	// Utility statements take no bind parameters, so the verifier is a
	// literal. Its alphabet (base64, digits, "SCRAM-SHA-256$:") needs no
	// escaping.
	sql := "ALTER ROLE " + pgx.Identifier{acct.Username}.Sanitize() + " PASSWORD '" + verifier + "'"

	err = t.session(ctx, acct, login.Username, login.Password, func(ctx context.Context, c conn) error {
		ctx, cancel := context.WithTimeout(ctx, t.statementTimeout())
		defer cancel()
		_, err := c.Exec(ctx, sql)
		return err
	})
	log := t.logger().With("host", acct.Host, "port", acct.Port, "role", acct.Username, "login", login.Username)
	if err != nil {
		log.WarnContext(ctx, "postgres: set password failed", "err", err)
		return err
	}
	log.InfoContext(ctx, "postgres: password set")
	return nil
}

// Test logs in to acct's database as acct.Username with password and runs
// SELECT 1.
//
// Returns nil if that works, an error wrapping escrow.ErrLoginRefused
// (code conflict) if the server refuses the password, ErrInvalid if acct
// lacks a username or host or the database does not exist, and
// ErrUnavailable if the server cannot be reached, fails, or asks for no
// password at all (then a password cannot be tested).
func (t *Target) Test(ctx context.Context, acct escrow.TargetAccount, password string) error {
	if err := checkRole("role", acct.Username); err != nil {
		return err
	}
	return t.session(ctx, acct, acct.Username, password, func(ctx context.Context, c conn) error {
		_, err := c.Exec(ctx, "SELECT 1")
		return err
	})
}

// session connects as user, runs fn and closes the connection, mapping
// every error to an escrow error.
func (t *Target) session(ctx context.Context, acct escrow.TargetAccount, user, password string, fn func(context.Context, conn) error) error {
	cfg, addr, err := t.config(acct, user, password)
	if err != nil {
		return err
	}
	connect := t.connect
	if connect == nil {
		connect = func(ctx context.Context, cfg *pgx.ConnConfig) (conn, error) { return pgx.ConnectConfig(ctx, cfg) }
	}
	c, err := connect(ctx, cfg)
	if err != nil {
		return convertError(err, addr)
	}
	err = fn(ctx, c)
	// Close sends Terminate; its failure changes nothing that happened.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = c.Close(closeCtx)
	return convertError(err, addr)
}

// config builds the connection config from acct's fields. None of them
// goes through a connection string (so no parse error can quote a
// password), and every setting the PG* environment variables could have
// changed is set here.
func (t *Target) config(acct escrow.TargetAccount, user, password string) (*pgx.ConnConfig, string, error) {
	host := acct.Host
	if host == "" {
		return nil, "", escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL account needs a host")
	}
	if strings.ContainsAny(host, "/,= \x00") {
		// A leading "/" would make pgx dial a unix socket and skip TLS; a
		// comma would be a host list.
		return nil, "", escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL host must be a host name or an IP address")
	}
	portText := acct.Port
	if portText == "" {
		portText = DefaultPort
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, "", escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL port must be 1 to 65535")
	}
	addr := net.JoinHostPort(host, portText)
	database := acct.Database
	if database == "" {
		database = DefaultDatabase
	}
	if strings.IndexByte(database, 0) >= 0 || len(database) > maxIdentifier {
		return nil, "", escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL database name must be at most %d bytes, without NUL", maxIdentifier)
	}
	tlsConfig, err := tlsConfig(host, acct.Options)
	if err != nil {
		return nil, "", err
	}

	cfg, err := pgx.ParseConfig(baseSettings)
	if err != nil {
		// Only PGSERVICE naming a missing service gets here.
		return nil, "", escrow.Wrap(escrow.CodeInternal, err, "build the PostgreSQL connection config")
	}
	cfg.Host, cfg.Port, cfg.Database = host, uint16(port), database
	cfg.User, cfg.Password = user, password
	cfg.TLSConfig, cfg.Fallbacks = tlsConfig, nil
	cfg.SSLNegotiation, cfg.SSLCertMode = "", "disable"
	cfg.ChannelBinding, cfg.RequireAuth = "prefer", allowedAuth
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.ValidateConnect, cfg.AfterConnect = nil, nil
	cfg.ConnectTimeout = t.connectTimeout()
	cfg.DialFunc = (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
	ms := strconv.FormatInt(t.statementTimeout().Milliseconds(), 10)
	cfg.RuntimeParams = map[string]string{
		"application_name":  "escrow-rotation",
		"statement_timeout": ms,
		"lock_timeout":      ms,
	}
	return cfg, addr, nil
}

// tlsConfig reads the tls and ca options; see OptionTLS.
func tlsConfig(host string, opts map[string]string) (*tls.Config, error) {
	mode, set := opts[OptionTLS]
	if !set {
		mode = TLSVerifyFull
		if isLoopback(host) {
			mode = TLSDisable
		}
	}
	ca := opts[OptionCA]
	if ca != "" && mode != TLSVerifyFull {
		return nil, escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL option ca needs tls=verify-full")
	}
	switch mode {
	case TLSDisable, "none":
		return nil, nil
	case TLSRequire:
		// Like libpq's sslmode=require: encrypted, any certificate.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	case TLSVerifyFull:
		c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if ca != "" {
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM([]byte(ca)) {
				return nil, escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL option ca holds no PEM certificate")
			}
		}
		return c, nil
	}
	return nil, escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL option tls must be disable, require or verify-full")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// convertError maps a pgx error to an escrow error. The pgx error stays
// the internal cause: it names the user, database and address, never the
// password (PgError text is severity, message and SQLSTATE).
func convertError(err error, addr string) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return &escrow.Error{Code: escrow.CodeConflict, Message: "PostgreSQL at " + addr + " refused the login",
				Err: fmt.Errorf("%w: %w", escrow.ErrLoginRefused, err)}
		case "42501": // insufficient_privilege
			return escrow.Wrap(escrow.CodeInvalid, err, "the login may not change this role's password")
		case "42704": // undefined_object
			return escrow.Wrap(escrow.CodeInvalid, err, "the role does not exist")
		case "3D000": // invalid_catalog_name
			return escrow.Wrap(escrow.CodeInvalid, err, "the database does not exist")
		}
		return escrow.Wrap(escrow.CodeUnavailable, err, "PostgreSQL at "+addr+" failed")
	}
	// Everything else (refused, unresolvable, timed out, TLS failed, an
	// authentication method we refuse) means the server was not usable.
	return escrow.Wrap(escrow.CodeUnavailable, err, "cannot reach PostgreSQL at "+addr)
}

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores in
// pg_authid.rolpassword for password (RFC 5802, RFC 7677):
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, in base64.
// password is used as is, without SASLprep (see Set).
func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// checkPassword refuses what Set cannot turn into a verifier the server
// and its clients agree on. The message never quotes the password.
func checkPassword(p string) error {
	if p == "" || len(p) > 1024 {
		return escrow.Errorf(escrow.CodeInvalid, "a PostgreSQL password must be 1 to 1024 characters")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] > 0x7e {
			return escrow.Errorf(escrow.CodeInvalid, "a PostgreSQL password set by Escrow must be printable ASCII (SASLprep is not implemented)")
		}
	}
	return nil
}

func checkRole(what, name string) error {
	if name == "" {
		return escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL %s is missing", what)
	}
	if len(name) > maxIdentifier || strings.IndexByte(name, 0) >= 0 {
		return escrow.Errorf(escrow.CodeInvalid, "the PostgreSQL %s must be at most %d bytes, without NUL", what, maxIdentifier)
	}
	return nil
}

func (t *Target) connectTimeout() time.Duration {
	if t.ConnectTimeout > 0 {
		return t.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (t *Target) statementTimeout() time.Duration {
	if t.StatementTimeout > 0 {
		return t.StatementTimeout
	}
	return DefaultStatementTimeout
}

func (t *Target) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.New(slog.DiscardHandler)
}
