// Package ldap is the escrow.RotationTarget for LDAP directories (the RFC
// 3062 Password Modify extended operation, as OpenLDAP and 389 DS serve
// it) and for Active Directory (a Modify of unicodePwd).
//
// The account's Username is the user's DN (uid=alice,ou=people,dc=example,
// dc=com); the login's Username is a DN too. The server is acct.URL
// (ldap:// or ldaps://) or acct.Host and acct.Port (389, or 636 for
// ldaps). acct.Options["tls"] is "starttls" (the default, except for a
// loopback host in LDAP mode, where it is "none"), "ldaps" or "none", and
// acct.Options["ca"] a PEM CA certificate to trust instead of the system's.
// The LDAP mode is tested against a real slapd (package ldaptest); the AD
// mode only by unit tests of the requests it builds, as no domain
// controller runs here.
//
// It must never send a password in clear over a network: "none" is refused
// unless the host is a loopback address, and a failed StartTLS or
// certificate check fails the call rather than going on in clear. It must
// never put a password in an error or a log.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Mode is the kind of directory a Target talks to.
type Mode int

const (
	// ModeLDAP changes passwords with the RFC 3062 Password Modify extended
	// operation, so the server hashes them under its own policy.
	ModeLDAP Mode = iota
	// ModeAD changes passwords by modifying unicodePwd, which Active
	// Directory accepts only over TLS.
	ModeAD
)

func (m Mode) String() string {
	if m == ModeAD {
		return escrow.TargetAD
	}
	return escrow.TargetLDAP
}

// DefaultTimeout bounds one Set or Test, connection included, when
// Target.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Values of acct.Options["tls"].
const (
	TLSStartTLS = "starttls"
	TLSLDAPS    = "ldaps"
	TLSNone     = "none"
)

// Target changes and tests passwords on an LDAP directory or on Active
// Directory.
type Target struct {
	mode Mode
	// Timeout bounds one Set or Test, within the caller's context; zero
	// means DefaultTimeout.
	Timeout time.Duration
	// Logger receives one line per password change; nil discards it.
	Logger *slog.Logger

	dial func(ctx context.Context, ep endpoint) (conn, error) // replaced by unit tests
}

var _ escrow.RotationTarget = (*Target)(nil)

// New returns a Target for LDAP directories (RFC 3062 Password Modify).
func New() *Target { return &Target{mode: ModeLDAP, dial: dial} }

// NewAD returns a Target for Active Directory (unicodePwd). It has not been
// run against a real domain controller here: its requests are checked by
// unit tests only.
func NewAD() *Target { return &Target{mode: ModeAD, dial: dial} }

// Mode returns the kind of directory t talks to.
func (t *Target) Mode() Mode { return t.mode }

// conn is the part of *goldap.Conn the target uses, so that unit tests can
// see the requests it sends.
type conn interface {
	Bind(username, password string) error
	PasswordModify(*goldap.PasswordModifyRequest) (*goldap.PasswordModifyResult, error)
	Modify(*goldap.ModifyRequest) error
	Close() error
}

// Set makes next the password of the account whose DN is acct.Username,
// binding as login. If login is the account itself (the same DN), it
// proves the current password: Password Modify with oldPassword, or in AD
// a Delete of the old unicodePwd and an Add of the new one in one Modify.
// Otherwise login is privileged and resets the password: Password Modify
// with userIdentity and no oldPassword, or in AD a Replace of unicodePwd.
//
// Returns an error wrapping escrow.ErrLoginRefused (with code invalid: the
// stored credentials are wrong) if the server refuses login; escrow.ErrInvalid if acct or login is incomplete or unsafe (no
// DN, tls "none" to a remote host) or the server refuses the change
// (insufficient access, password policy, no such entry); and
// escrow.ErrUnavailable if the server cannot be reached, TLS cannot be set
// up, or it does not answer in time.
func (t *Target) Set(ctx context.Context, acct escrow.TargetAccount, login escrow.Credentials, next string) error {
	ep, err := t.endpoint(acct)
	if err != nil {
		return err
	}
	if err := checkDN("the account's username", acct.Username); err != nil {
		return err
	}
	if err := checkDN("the login's username", login.Username); err != nil {
		return err
	}
	if login.Password == "" {
		return escrow.Errorf(escrow.CodeInvalid, "the login of %s has no password: LDAP takes an empty one as an anonymous bind", login.Username)
	}
	if next == "" {
		// An empty newPassword asks the server to make one up, which
		// Escrow would never learn.
		return escrow.Errorf(escrow.CodeInvalid, "the new password is empty")
	}
	if t.mode == ModeAD && (!utf8.ValidString(next) || !utf8.ValidString(login.Password)) {
		return escrow.Errorf(escrow.CodeInvalid, "Active Directory passwords must be UTF-8")
	}
	self := sameDN(login.Username, acct.Username)
	j := job{addr: ep.String(), login: login.Username, dn: acct.Username, secrets: secrets(login.Password, next)}

	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	err = t.set(ctx, ep, j, login, next, self)
	log := t.logger().With("target", j.addr, "dn", j.dn, "mode", t.mode.String(), "privileged", !self)
	if err != nil {
		log.WarnContext(ctx, "ldap password change failed", "err", err)
		return err
	}
	log.InfoContext(ctx, "ldap password changed")
	return nil
}

func (t *Target) set(ctx context.Context, ep endpoint, j job, login escrow.Credentials, next string, self bool) error {
	c, err := t.dial(ctx, ep)
	if err != nil {
		return convertError(ctx, j, err)
	}
	defer c.Close()
	if err := c.Bind(login.Username, login.Password); err != nil {
		return convertError(ctx, j, err)
	}
	if t.mode == ModeAD {
		err = c.Modify(adModify(j.dn, login.Password, next, self))
	} else {
		_, err = c.PasswordModify(passwordModify(j.dn, login.Password, next, self))
	}
	return convertError(ctx, j, err)
}

// Test binds as acct.Username with password.
//
// Returns nil if the server accepts it, an error wrapping
// escrow.ErrLoginRefused if it refuses it, escrow.ErrInvalid if acct is
// incomplete or unsafe or password is empty (an empty password is an
// unauthenticated bind, which succeeds without proving anything), and
// escrow.ErrUnavailable if the server cannot be reached.
func (t *Target) Test(ctx context.Context, acct escrow.TargetAccount, password string) error {
	ep, err := t.endpoint(acct)
	if err != nil {
		return err
	}
	if err := checkDN("the account's username", acct.Username); err != nil {
		return err
	}
	if password == "" {
		return escrow.Errorf(escrow.CodeInvalid, "cannot test an empty password: LDAP takes it as an anonymous bind")
	}
	j := job{addr: ep.String(), login: acct.Username, dn: acct.Username, secrets: secrets(password)}
	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	c, err := t.dial(ctx, ep)
	if err != nil {
		return convertError(ctx, j, err)
	}
	defer c.Close()
	return convertError(ctx, j, c.Bind(acct.Username, password))
}

func (t *Target) timeout() time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return DefaultTimeout
}

func (t *Target) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// passwordModify builds the RFC 3062 request. A self-change names no user
// (the bound one) and proves the old password; a privileged reset names
// the user and sends no old password.
func passwordModify(dn, old, next string, self bool) *goldap.PasswordModifyRequest {
	if self {
		return goldap.NewPasswordModifyRequest("", old, next)
	}
	return goldap.NewPasswordModifyRequest(dn, "", next)
}

// adModify builds Active Directory's password change. AD treats a Delete
// of the old value and an Add of the new one in one request as a user's
// own change (checked against the old password and the policy), and a
// Replace as an administrator's reset.
func adModify(dn, old, next string, self bool) *goldap.ModifyRequest {
	req := goldap.NewModifyRequest(dn, nil)
	if self {
		req.Delete("unicodePwd", []string{UnicodePwd(old)})
		req.Add("unicodePwd", []string{UnicodePwd(next)})
	} else {
		req.Replace("unicodePwd", []string{UnicodePwd(next)})
	}
	return req
}

// UnicodePwd encodes password as Active Directory's unicodePwd wants it:
// UTF-16LE of the password in double quotes.
func UnicodePwd(password string) string {
	u := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		binary.LittleEndian.PutUint16(b[2*i:], r)
	}
	return string(b)
}

// secrets lists what must never appear in an error or a log: each
// password as given and as AD's encoding of it.
func secrets(passwords ...string) []string {
	var s []string
	for _, p := range passwords {
		if p != "" {
			s = append(s, p, UnicodePwd(p))
		}
	}
	return s
}

func checkDN(what, dn string) error {
	if strings.TrimSpace(dn) == "" {
		return escrow.Errorf(escrow.CodeInvalid, "%s must be a DN (for example uid=alice,ou=people,dc=example,dc=com)", what)
	}
	if _, err := goldap.ParseDN(dn); err != nil {
		return escrow.Wrap(escrow.CodeInvalid, err, fmt.Sprintf("%s must be a DN (for example uid=alice,ou=people,dc=example,dc=com)", what))
	}
	return nil
}

// sameDN compares DNs as a directory does: attribute names and values
// case-insensitively, spacing and escaping normalized.
func sameDN(a, b string) bool {
	da, errA := goldap.ParseDN(a)
	db, errB := goldap.ParseDN(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return da.EqualFold(db)
}

// endpoint is where and how to connect.
type endpoint struct {
	host, port string
	tls        string // TLSStartTLS, TLSLDAPS or TLSNone
	tlsConfig  *tls.Config
}

func (ep endpoint) hostPort() string { return net.JoinHostPort(ep.host, ep.port) }

// String is the server's address for messages and logs.
func (ep endpoint) String() string {
	scheme := "ldap"
	if ep.tls == TLSLDAPS {
		scheme = "ldaps"
	}
	return scheme + "://" + ep.hostPort()
}

// endpoint reads the server's address and TLS settings from acct. It
// refuses tls "none" to anything but a loopback host before any traffic.
func (t *Target) endpoint(acct escrow.TargetAccount) (endpoint, error) {
	var ep endpoint
	mode := acct.Options["tls"]
	switch mode {
	case "", TLSStartTLS, TLSLDAPS, TLSNone:
	default:
		return ep, escrow.Errorf(escrow.CodeInvalid, "the tls option of an LDAP target must be starttls, ldaps or none, not %q", mode)
	}
	if acct.URL != "" {
		u, err := url.Parse(acct.URL)
		if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return ep, escrow.Errorf(escrow.CodeInvalid, "the url of an LDAP target must look like ldap://host:port or ldaps://host:port")
		}
		switch {
		case u.Scheme == "ldaps" && (mode == "" || mode == TLSLDAPS):
			mode = TLSLDAPS
		case u.Scheme == "ldap" && mode != TLSLDAPS:
		case u.Scheme == "ldap" || u.Scheme == "ldaps":
			return ep, escrow.Errorf(escrow.CodeInvalid, "the url's scheme %s contradicts the tls option %q", u.Scheme, mode)
		default:
			return ep, escrow.Errorf(escrow.CodeInvalid, "the url of an LDAP target must start with ldap:// or ldaps://")
		}
		ep.host, ep.port = u.Hostname(), u.Port()
	} else {
		ep.host, ep.port = acct.Host, acct.Port
	}
	if ep.host == "" {
		return ep, escrow.Errorf(escrow.CodeInvalid, "an LDAP target needs a host or a url")
	}
	loopback := isLoopback(ep.host)
	if mode == "" {
		// On a loopback host nothing crosses a network, so a local
		// directory without TLS works as it is; anywhere else TLS is the
		// default.
		mode = TLSStartTLS
		if loopback && t.mode != ModeAD {
			mode = TLSNone
		}
	}
	if mode == TLSNone && t.mode == ModeAD {
		return ep, escrow.Errorf(escrow.CodeInvalid, "Active Directory changes passwords only over TLS: set the tls option to starttls or ldaps")
	}
	if mode == TLSNone && !loopback {
		return ep, escrow.Errorf(escrow.CodeInvalid, "tls none is allowed only for a loopback host: a password never crosses a network in clear (set tls to starttls or ldaps)")
	}
	ep.tls = mode
	if ep.port == "" {
		ep.port = "389"
		if mode == TLSLDAPS {
			ep.port = "636"
		}
	}
	if n, err := strconv.Atoi(ep.port); err != nil || n < 1 || n > 65535 {
		return ep, escrow.Errorf(escrow.CodeInvalid, "the port of an LDAP target must be 1 to 65535")
	}
	ca := acct.Options["ca"]
	if mode == TLSNone {
		if ca != "" {
			return ep, escrow.Errorf(escrow.CodeInvalid, "the ca option needs tls starttls or ldaps, not none")
		}
		return ep, nil
	}
	ep.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: ep.host}
	if ca != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ca)) {
			return ep, escrow.Errorf(escrow.CodeInvalid, "the ca option holds no PEM certificate")
		}
		ep.tlsConfig.RootCAs = pool
	}
	return ep, nil
}

// isLoopback trusts only the name localhost and loopback IP literals: a
// name resolved through DNS could point anywhere.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dial connects to ep and sets up TLS. Everything it does ends when ctx
// does: the dial takes ctx, and the connection's deadline is ctx's.
func dial(ctx context.Context, ep endpoint) (conn, error) {
	var d net.Dialer
	var raw net.Conn
	var err error
	if ep.tls == TLSLDAPS {
		raw, err = (&tls.Dialer{NetDialer: &d, Config: ep.tlsConfig}).DialContext(ctx, "tcp", ep.hostPort())
	} else {
		raw, err = d.DialContext(ctx, "tcp", ep.hostPort())
	}
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	if err := raw.SetDeadline(deadline); err != nil {
		raw.Close()
		return nil, err
	}
	// A cancelled ctx closes the socket, which fails any request in flight.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c := goldap.NewConn(raw, ep.tls == TLSLDAPS)
	c.Start()
	c.SetTimeout(time.Until(deadline))
	lc := &ldapConn{Conn: c, stop: stop}
	if ep.tls == TLSStartTLS {
		if err := c.StartTLS(ep.tlsConfig); err != nil {
			lc.Close()
			return nil, &startTLSError{err}
		}
	}
	return lc, nil
}

type ldapConn struct {
	*goldap.Conn
	stop func() bool
}

func (c *ldapConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// startTLSError marks a failed StartTLS: go-ldap flattens the handshake's
// error to text, so the step is what tells it apart.
type startTLSError struct{ err error }

func (e *startTLSError) Error() string { return "starttls: " + e.err.Error() }
func (e *startTLSError) Unwrap() error { return e.err }

// job names what a call is doing, for error messages. None of it is
// secret; secrets lists what is.
type job struct {
	addr    string // ldap://host:port
	login   string // the DN that binds
	dn      string // the account's DN
	secrets []string
}

// convertError translates a go-ldap or network error into an escrow error
// with a message safe to show, and makes sure no password survives in it.
func convertError(ctx context.Context, j job, err error) error {
	if err == nil {
		return nil
	}
	cause := redact(err, j.secrets)
	var le *goldap.Error
	var st *startTLSError
	server := errors.As(err, &le) && le.ResultCode < goldap.ErrorNetwork // the server answered
	switch {
	case errors.As(err, &st) && server:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s refused StartTLS (result %d %s): set the tls option to ldaps, or enable TLS on the server", j.addr, le.ResultCode, goldap.LDAPResultCodeMap[le.ResultCode]))
	case !server && ended(ctx, err) != nil:
		return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("%w: %w", ended(ctx, err), cause), fmt.Sprintf("LDAP at %s did not answer in time", j.addr))
	case errors.As(err, &st) || isTLSError(err):
		return escrow.Wrap(escrow.CodeUnavailable, cause, fmt.Sprintf("cannot set up TLS with LDAP at %s: is its certificate signed by the ca option's CA, for this host name?", j.addr))
	case !server:
		return escrow.Wrap(escrow.CodeUnavailable, cause, fmt.Sprintf("cannot reach LDAP at %s", j.addr))
	}
	switch le.ResultCode {
	case goldap.LDAPResultInvalidCredentials:
		return escrow.Wrap(escrow.CodeInvalid, fmt.Errorf("%w: %w", escrow.ErrLoginRefused, cause), fmt.Sprintf("LDAP at %s refused the login of %s", j.addr, j.login))
	case goldap.LDAPResultInsufficientAccessRights:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s does not let %s change the password of %s", j.addr, j.login, j.dn))
	case goldap.LDAPResultConstraintViolation:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s refused the new password of %s: it breaks the password policy (length, history or minimum age)", j.addr, j.dn))
	case goldap.LDAPResultNoSuchObject:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s has no entry %s", j.addr, j.dn))
	case goldap.LDAPResultInvalidDNSyntax:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s does not take %s as a DN", j.addr, j.dn))
	case goldap.LDAPResultConfidentialityRequired, goldap.LDAPResultStrongAuthRequired:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s requires a secure connection: set the tls option to starttls or ldaps", j.addr))
	case goldap.LDAPResultUnwillingToPerform:
		return escrow.Wrap(escrow.CodeInvalid, cause, fmt.Sprintf("LDAP at %s is unwilling to change the password of %s", j.addr, j.dn))
	case goldap.LDAPResultBusy, goldap.LDAPResultUnavailable, goldap.LDAPResultTimeLimitExceeded, goldap.LDAPResultAdminLimitExceeded:
		return escrow.Wrap(escrow.CodeUnavailable, cause, fmt.Sprintf("cannot reach LDAP at %s: it is busy or unavailable", j.addr))
	}
	return escrow.Wrap(escrow.CodeUnavailable, cause, fmt.Sprintf("LDAP at %s failed (result %d %s)", j.addr, le.ResultCode, goldap.LDAPResultCodeMap[le.ResultCode]))
}

// ended returns why ctx ended, if it has. The socket's deadline is ctx's,
// so a read can time out a moment before ctx's own timer marks it done; and
// go-ldap flattens that read's error to text, so the clock decides.
func ended(ctx context.Context, err error) error {
	if e := ctx.Err(); e != nil {
		return e
	}
	if d, ok := ctx.Deadline(); (ok && !time.Now().Before(d)) || errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}

func isTLSError(err error) bool {
	var cv *tls.CertificateVerificationError
	var alert tls.AlertError
	var header tls.RecordHeaderError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	return errors.As(err, &cv) || errors.As(err, &alert) || errors.As(err, &header) || errors.As(err, &unknown) || errors.As(err, &host)
}

// redact returns err, or, if its text holds a secret, a bare error with the
// secret cut out: the original chain held the secret, so it is dropped.
func redact(err error, secrets []string) error {
	msg := err.Error()
	leaked := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			leaked = true
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	if !leaked {
		return err
	}
	return errors.New(msg)
}
