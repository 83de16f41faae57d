// Package ssh rotates a Linux account's password over SSH: a privileged
// account (root, or a sudoer) logs in and feeds "user:password" to
// chpasswd(8) on its standard input.
//
// It must never put a password on a command line (ps and process
// accounting show command lines to every user of the machine, and shells
// and audit logs keep them), never connect to a server whose host key is
// not pinned, and never let a password into an error or a log line.
//
// An account never changes its own password here: chpasswd needs root,
// and the alternative, answering passwd(1)'s prompts, depends on the
// server's PAM stack, locale and password-quality rules. An SSH rotation
// therefore needs a privileged secret (RotationConfig.Privileged).
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/escrow-pam/escrow/internal/escrow"
	xssh "golang.org/x/crypto/ssh"
)

// DefaultTimeout bounds a Set or a Test, from dialling to the last command.
const DefaultTimeout = 10 * time.Second

// Target changes Linux passwords over SSH.
type Target struct {
	// Timeout bounds each Set and Test; 0 means DefaultTimeout. The
	// context's own deadline, if sooner, wins.
	Timeout time.Duration
	// Logger gets one line per changed password; nil discards.
	Logger *slog.Logger

	dial dialFunc
}

var _ escrow.RotationTarget = (*Target)(nil)

// New returns a Target with the default timeout and no logging.
func New() *Target {
	return &Target{Timeout: DefaultTimeout, dial: dialSSH}
}

// The remote commands. None holds a secret: passwords go on stdin.
const (
	cmdChpasswd = "chpasswd"
	// cmdSudoNoPassword runs chpasswd only if sudo needs no password (-n);
	// -k ignores cached credentials, so the answer is the policy's.
	cmdSudoNoPassword = "sudo -n -k chpasswd"
	// cmdSudoCheck checks the sudo password, read from stdin (-S) once:
	// stdin then ends, so a refused password is never followed by a
	// retry that would read the next line.
	cmdSudoCheck = "sudo -S -k -p '' -v"
	// cmdSudoChpasswd reads the sudo password, then chpasswd's input.
	cmdSudoChpasswd = "sudo -S -k -p '' chpasswd"
	// cmdTest proves the login works.
	cmdTest = "true"
)

// Set makes next acct.Username's password on acct.Host, logging in as the
// privileged login (root runs chpasswd; anyone else runs it through sudo).
// Returns ErrInvalid if acct has no pinned host key, if login is the
// account itself, or if a name or password cannot be fed to chpasswd; an
// error wrapping ErrLoginRefused (code forbidden) if the server or sudo
// refuses login; and ErrUnavailable if the server cannot be reached, its
// host key differs from the pinned one, or chpasswd fails.
func (t *Target) Set(ctx context.Context, acct escrow.TargetAccount, login escrow.Credentials, next string) error {
	addr, hostKey, err := server(acct)
	if err != nil {
		return err
	}
	if err := checkUsername(acct.Username); err != nil {
		return err
	}
	if login.Username == "" || (login.Password == "" && login.PrivateKey == "") {
		return escrow.Errorf(escrow.CodeInvalid, "an SSH rotation needs a privileged account with a password or a private key")
	}
	if login.Username == acct.Username {
		return escrow.Errorf(escrow.CodeInvalid, "an SSH rotation needs a privileged account (root or a sudoer), not the account itself: only root can run chpasswd")
	}
	if next == "" || strings.ContainsAny(next, "\r\n\x00") {
		// A line break would start a second chpasswd line: another user's password.
		return escrow.Errorf(escrow.CodeInvalid, "a new SSH password must be non-empty and hold no line break or NUL")
	}
	if login.Username != "root" && strings.ContainsAny(login.Password, "\r\n\x00") {
		return escrow.Errorf(escrow.CodeInvalid, "a sudo password must hold no line break or NUL")
	}
	auth, err := authMethods(login.Password, login.PrivateKey)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	w := where{addr: addr, user: login.Username}
	c, err := t.dial(ctx, addr, clientConfig(login.Username, hostKey, auth))
	if err != nil {
		return convertError(ctx, w, fmt.Errorf("log in: %w", err))
	}
	defer c.Close()

	secrets := []string{next, login.Password}
	line := acct.Username + ":" + next + "\n"
	via := cmdChpasswd
	if login.Username == "root" {
		err = run(c, cmdChpasswd, line, secrets)
	} else {
		via, err = sudoChpasswd(c, login.Password, line, secrets)
	}
	if err != nil {
		return convertError(ctx, w, err)
	}
	t.logger().InfoContext(ctx, "ssh: password changed", "server", addr, "user", acct.Username, "login", login.Username, "command", via)
	return nil
}

// sudoChpasswd runs chpasswd through sudo. sudo -S reads its password from
// the same stdin as chpasswd, so what is fed depends on the policy: were
// the sudo password fed to a sudo that asks none, chpasswd would read it
// as a "user:password" line. Hence: try without a password, else check the
// password alone, then feed the password and the line.
func sudoChpasswd(c conn, password, line string, secrets []string) (string, error) {
	// With no input, chpasswd changes nothing.
	err := run(c, cmdSudoNoPassword, "", secrets)
	if err == nil {
		return cmdSudoNoPassword, run(c, cmdSudoNoPassword, line, secrets)
	}
	var exit *exitError
	if !errors.As(err, &exit) {
		return "", err
	}
	if exit.status == 126 || exit.status == 127 {
		return "", fmt.Errorf("sudo: %w", err) // not installed or not runnable
	}
	if password == "" {
		return "", escrow.Errorf(escrow.CodeInvalid, "sudo asks for a password, but the privileged account has only a private key")
	}
	if err := run(c, cmdSudoCheck, password+"\n", secrets); err != nil {
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%w: sudo: %w", errRefused, err)
		}
		return "", err
	}
	return cmdSudoChpasswd, run(c, cmdSudoChpasswd, password+"\n"+line, secrets)
}

// Test logs in as acct.Username with password and runs true. Returns an
// error wrapping ErrLoginRefused (code forbidden) if the server refuses
// the password, ErrInvalid if acct has no pinned host key, and
// ErrUnavailable if the server cannot be reached, its host key differs
// from the pinned one, or the command fails.
func (t *Target) Test(ctx context.Context, acct escrow.TargetAccount, password string) error {
	addr, hostKey, err := server(acct)
	if err != nil {
		return err
	}
	if err := checkUsername(acct.Username); err != nil {
		return err
	}
	if password == "" {
		return escrow.Errorf(escrow.CodeInvalid, "an SSH login test needs a password")
	}
	auth, err := authMethods(password, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout())
	defer cancel()
	w := where{addr: addr, user: acct.Username}
	c, err := t.dial(ctx, addr, clientConfig(acct.Username, hostKey, auth))
	if err != nil {
		return convertError(ctx, w, fmt.Errorf("log in: %w", err))
	}
	defer c.Close()
	if err := run(c, cmdTest, "", []string{password}); err != nil {
		return convertError(ctx, w, err)
	}
	return nil
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
	return slog.New(slog.DiscardHandler)
}

// server returns acct's address and pinned host key.
func server(acct escrow.TargetAccount) (string, xssh.PublicKey, error) {
	if acct.Host == "" {
		return "", nil, escrow.Errorf(escrow.CodeInvalid, "an SSH rotation needs the secret's host")
	}
	port := acct.Port
	if port == "" {
		port = "22"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", nil, escrow.Errorf(escrow.CodeInvalid, "an SSH port must be 1 to 65535")
	}
	pinned := strings.TrimSpace(acct.Options["hostKey"])
	if pinned == "" {
		return "", nil, escrow.Errorf(escrow.CodeInvalid, "an SSH rotation needs the server's host key (rotation option hostKey, in authorized_keys form): Escrow never logs in to an unverified server")
	}
	key, _, _, rest, err := xssh.ParseAuthorizedKey([]byte(pinned))
	if err != nil || len(bytes.TrimSpace(rest)) != 0 {
		return "", nil, escrow.Errorf(escrow.CodeInvalid, "the rotation option hostKey must be one SSH public key in authorized_keys form")
	}
	if _, ok := key.(*xssh.Certificate); ok {
		return "", nil, escrow.Errorf(escrow.CodeInvalid, "the rotation option hostKey must be a plain public key, not a certificate")
	}
	return net.JoinHostPort(acct.Host, port), key, nil
}

// checkUsername refuses names chpasswd would misread: a colon ends the
// name, a line break starts another line.
func checkUsername(name string) error {
	if name == "" || len(name) > 256 || strings.HasPrefix(name, "-") || strings.ContainsFunc(name, func(r rune) bool {
		return r == ':' || r <= ' ' || r == 0x7f
	}) {
		return escrow.Errorf(escrow.CodeInvalid, "an SSH account's username must be non-empty and hold no colon, space or control character")
	}
	return nil
}

// namedAuth is an auth method, its RFC 4252 name (x/crypto keeps the name
// unexported), and the credential it spends.
type namedAuth struct {
	name   string
	secret string // "key" or "password"
	method xssh.AuthMethod
}

// authMethods are the ways to log in with password and/or a PEM private
// key, the key first. The password is offered by the "password" method
// or, on servers that leave passwords to PAM, by "keyboard-interactive";
// never by both, so that a wrong password costs one failed attempt (on
// servers that lock accounts after a few) and one PAM delay, not two.
func authMethods(password, privateKey string) ([]namedAuth, error) {
	var auth []namedAuth
	if privateKey != "" {
		signer, err := xssh.ParsePrivateKey([]byte(privateKey))
		if err != nil {
			var missing *xssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, escrow.Errorf(escrow.CodeInvalid, "the privileged account's private key is passphrase-protected")
			}
			return nil, escrow.Wrap(escrow.CodeInvalid, err, "the privileged account's private key is not a PEM SSH private key")
		}
		auth = append(auth, namedAuth{"publickey", "key", xssh.PublicKeys(signer)})
	}
	if password != "" {
		auth = append(auth,
			namedAuth{"password", "password", xssh.Password(password)},
			namedAuth{"keyboard-interactive", "password", xssh.KeyboardInteractive(answerPassword(password))},
		)
	}
	return auth, nil
}

// nextAuth returns the first of auth that the server allows and whose
// credential has not been spent.
func nextAuth(auth []namedAuth, ac *xssh.ClientAuthContext) (xssh.AuthMethod, bool) {
	spent := map[string]bool{}
	for _, a := range auth {
		if slices.Contains(ac.TriedMethods, a.name) || slices.Contains(ac.PartialSuccessMethods, a.name) {
			spent[a.secret] = true
		}
	}
	for _, a := range auth {
		if !spent[a.secret] && slices.Contains(ac.AllowedMethods, a.name) {
			return a.method, true
		}
	}
	return nil, false
}

// answerPassword answers a keyboard-interactive prompt that asks for one
// hidden answer (PAM's "Password: ") with password, once per attempt. It
// answers nothing else: a second prompt is, for example, PAM asking for a
// new password because the old one expired.
func answerPassword(password string) xssh.KeyboardInteractiveChallenge {
	answered := false
	return func(_, _ string, questions []string, echos []bool) ([]string, error) {
		switch {
		case len(questions) == 0:
			return nil, nil
		case len(questions) == 1 && !echos[0] && !answered:
			answered = true
			return []string{password}, nil
		}
		return nil, errors.New("keyboard-interactive asked more than one password")
	}
}

var (
	// errRefused ends authentication when the server accepted none of the
	// methods tried; sudoChpasswd wraps it when sudo refuses the password.
	errRefused = errors.New("login refused")
	// errHostKeyMismatch: the server did not show the pinned key.
	errHostKeyMismatch = errors.New("host key mismatch")
)

// clientConfig logs in as user with auth, accepting only hostKey.
func clientConfig(user string, hostKey xssh.PublicKey, auth []namedAuth) *xssh.ClientConfig {
	algos := []string{hostKey.Type()}
	if hostKey.Type() == xssh.KeyAlgoRSA {
		algos = []string{xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256}
	}
	pinned := hostKey.Marshal()
	return &xssh.ClientConfig{
		User: user,
		// Ask for the pinned key's type, so that a server with several
		// host keys shows the one pinned.
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(_ string, _ net.Addr, key xssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), pinned) {
				return fmt.Errorf("%w: the server showed %s, not the pinned %s", errHostKeyMismatch, xssh.FingerprintSHA256(key), xssh.FingerprintSHA256(hostKey))
			}
			return nil
		},
		// Picks the next method itself so that running out of methods
		// ends in errRefused, which errors.Is can tell from a network
		// failure (x/crypto's own ending is an unexported string).
		AuthCallback: func(ac *xssh.ClientAuthContext) (xssh.AuthMethod, error) {
			if m, ok := nextAuth(auth, ac); ok {
				return m, nil
			}
			return nil, fmt.Errorf("%w: methods tried %v, server allows %v", errRefused, ac.TriedMethods, ac.AllowedMethods)
		},
	}
}

// conn is what the adapter uses of an SSH connection: run one command with
// the given stdin and return its stderr. *client wraps x/crypto/ssh; unit
// tests fake it.
type conn interface {
	// Run returns an *exitError if the command ran and failed.
	Run(cmd, stdin string) (stderr string, err error)
	Close() error
}

// dialFunc opens an authenticated connection to addr, closed when ctx
// ends.
type dialFunc func(ctx context.Context, addr string, cfg *xssh.ClientConfig) (conn, error)

// exitError is a remote command's failure.
type exitError struct {
	cmd    string // never holds a secret
	status int
	signal string
	stderr string // cleaned of secrets
}

func (e *exitError) Error() string {
	how := "exit status " + strconv.Itoa(e.status)
	if e.signal != "" {
		how = "signal " + e.signal
	}
	if e.stderr == "" {
		return fmt.Sprintf("%s: %s", e.cmd, how)
	}
	return fmt.Sprintf("%s: %s: %s", e.cmd, how, e.stderr)
}

// run runs cmd on c, cleaning secrets out of its stderr.
func run(c conn, cmd, stdin string, secrets []string) error {
	stderr, err := c.Run(cmd, stdin)
	var exit *exitError
	if errors.As(err, &exit) {
		exit.cmd = cmd
		exit.stderr = clean(stderr, secrets)
		return exit
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", cmd, err)
	}
	return nil
}

// clean cuts secrets out of a remote command's stderr and keeps it short
// and on one line. stderr of maxStderr bytes was cut off, maybe inside a
// secret, so its last bytes go too.
func clean(s string, secrets []string) string {
	cut := len(s) >= maxStderr
	longest := 0
	for _, p := range secrets {
		if p != "" {
			s = strings.ReplaceAll(s, p, "[redacted]")
			longest = max(longest, len(p))
		}
	}
	if cut {
		s = s[:max(0, len(s)-longest)] + " [cut]"
	}
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) || unicode.IsSpace(r) {
			return r
		}
		return -1
	}, s)), " ")
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	return s
}

// where names a failed attempt in errors.
type where struct{ addr, user string }

// convertError translates what x/crypto/ssh, the network and the remote
// commands return into escrow errors (STYLE 5). ctx is the attempt's
// context: once it has ended, any failure is its timeout or cancellation.
func convertError(ctx context.Context, w where, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	var e *escrow.Error
	var exit *exitError
	switch {
	case errors.As(err, &e):
		return err
	case errors.Is(err, errRefused):
		msg := fmt.Sprintf("the SSH server %s refused the login of %s", w.addr, w.user)
		if errors.As(err, &exit) {
			msg = fmt.Sprintf("sudo on %s refused %s", w.addr, w.user)
		}
		// Forbidden, not Unavailable: the server answered, and trying
		// again with the same credentials will not help.
		return &escrow.Error{Code: escrow.CodeForbidden, Message: msg, Err: fmt.Errorf("%w: %w", escrow.ErrLoginRefused, err)}
	case errors.Is(err, errHostKeyMismatch):
		return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("host key mismatch: %s did not show the pinned host key, so Escrow did not log in", w.addr))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, os.ErrDeadlineExceeded):
		return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("the SSH server %s did not answer in time, or the attempt was cancelled", w.addr))
	case errors.As(err, &exit):
		return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("%q failed on %s", exit.cmd, w.addr))
	case errors.Is(err, io.EOF), isNetError(err):
		return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("cannot reach the SSH server %s", w.addr))
	}
	return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("the SSH server %s failed", w.addr))
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
