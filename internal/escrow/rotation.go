package escrow

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"
)

// Rotation targets: the kinds of system a password can be rotated on.
const (
	TargetPostgres = "postgres" // a PostgreSQL role (ALTER ROLE ... PASSWORD)
	TargetLDAP     = "ldap"     // an LDAP user (RFC 3062 password modify)
	TargetAD       = "ad"       // an Active Directory user (unicodePwd)
	TargetSSH      = "ssh"      // a Linux account, chpasswd over SSH
	TargetWebhook  = "webhook"  // anything else: a signed HTTP call
)

// RotationConfig says how a secret's password is changed on its real
// target. The account's address comes from the secret's own fields
// (username, host, port, database, url); nothing here is secret.
type RotationConfig struct {
	// Target is one of postgres, ldap, ad, ssh, webhook.
	Target string `json:"target"`
	// Privileged, if set, is the ID of another Escrow secret whose username
	// and password (or private_key) log in to change this account's
	// password. Without it the account changes its own password, logging in
	// with the current one.
	Privileged string `json:"privileged,omitempty"`
	// Password is the policy new passwords are generated under.
	Password PasswordPolicy `json:"password"`
	// Options are target-specific settings, none of them secret: "tls"
	// (none, starttls, ldaps, require), "ca" (a PEM CA certificate),
	// "hostKey" (an SSH host key in authorized_keys form), "url" (a
	// webhook's address).
	Options map[string]string `json:"options,omitempty"`
	// Pinned is set by the server, never by a caller: the account fields
	// (username, host, port, database, url) when an owner set the
	// rotation. A rotation through a privileged account refuses to run if
	// any has changed since, so an editor of this secret cannot point the
	// privileged login at a host of their choosing.
	Pinned map[string]string `json:"pinned,omitempty"`
}

// AccountFields are the value fields that say where an account lives.
var AccountFields = []string{"username", "host", "port", "database", "url"}

// PinAccount returns the account fields of v, for RotationConfig.Pinned.
func PinAccount(v SecretValue) map[string]string {
	pin := make(map[string]string, len(AccountFields))
	for _, f := range AccountFields {
		pin[f] = v[f]
	}
	return pin
}

// CheckPinned returns ErrInvalid naming the first account field of v that
// differs from what was pinned.
func (r *RotationConfig) CheckPinned(v SecretValue) error {
	for _, f := range AccountFields {
		if r.Pinned[f] != v[f] {
			return Errorf(CodeInvalid, "the account's %s changed since the rotation was set; an owner must set the rotation again to use the privileged account with it", f)
		}
	}
	return nil
}

// Validate checks a rotation's shape.
func (r *RotationConfig) Validate() error {
	if r == nil {
		return nil
	}
	switch r.Target {
	case TargetPostgres, TargetLDAP, TargetAD, TargetSSH, TargetWebhook:
	default:
		return Errorf(CodeInvalid, "rotation target %q must be one of postgres, ldap, ad, ssh, webhook", r.Target)
	}
	if len(r.Options) > 16 {
		return Errorf(CodeInvalid, "rotation has more than 16 options")
	}
	for k, v := range r.Options {
		if k == "" || len(k) > 64 || len(v) > 8<<10 || !utf8.ValidString(v) {
			return Errorf(CodeInvalid, "rotation option names are 1 to 64 characters and values at most 8 KiB of UTF-8")
		}
	}
	return r.Password.Validate()
}

// Character classes a password policy can require.
const (
	ClassLower  = "lower"
	ClassUpper  = "upper"
	ClassDigit  = "digit"
	ClassSymbol = "symbol"
)

// DefaultSymbols are the symbols a generated password may hold: none of
// them needs quoting in a shell, a connection string or LDIF.
const DefaultSymbols = "!#%+-.:=@^_~"

// PasswordPolicy is what a generated password looks like. The zero value
// means 24 characters with every class.
type PasswordPolicy struct {
	// Length is 8 to 128; 0 means 24.
	Length int `json:"length,omitempty"`
	// Classes each appear at least once; empty means all four.
	Classes []string `json:"classes,omitempty"`
	// Symbols replaces DefaultSymbols.
	Symbols string `json:"symbols,omitempty"`
	// Exclude lists characters never to use (for example "0O1lI").
	Exclude string `json:"exclude,omitempty"`
}

// Alphabets returns the policy's character sets, one per required class,
// with excluded characters removed, and the length. It returns ErrInvalid
// for a policy no password can meet.
func (p PasswordPolicy) Alphabets() ([]string, int, error) {
	n := p.Length
	if n == 0 {
		n = 24
	}
	if n < 8 || n > 128 {
		return nil, 0, Errorf(CodeInvalid, "password length must be 8 to 128")
	}
	classes := p.Classes
	if len(classes) == 0 {
		classes = []string{ClassLower, ClassUpper, ClassDigit, ClassSymbol}
	}
	if len(classes) > n {
		return nil, 0, Errorf(CodeInvalid, "a %d-character password cannot hold %d classes", n, len(classes))
	}
	symbols := p.Symbols
	if symbols == "" {
		symbols = DefaultSymbols
	}
	seen := map[string]bool{}
	var sets []string
	for _, c := range classes {
		var set string
		switch c {
		case ClassLower:
			set = "abcdefghijklmnopqrstuvwxyz"
		case ClassUpper:
			set = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		case ClassDigit:
			set = "0123456789"
		case ClassSymbol:
			set = symbols
		default:
			return nil, 0, Errorf(CodeInvalid, "password class %q must be lower, upper, digit or symbol", c)
		}
		if seen[c] {
			return nil, 0, Errorf(CodeInvalid, "password class %q is named twice", c)
		}
		seen[c] = true
		var b strings.Builder
		for _, r := range set {
			if r > 0x7e || r < 0x21 {
				return nil, 0, Errorf(CodeInvalid, "password symbols must be printable ASCII without spaces")
			}
			if !strings.ContainsRune(p.Exclude, r) && !strings.ContainsRune(b.String(), r) {
				b.WriteRune(r)
			}
		}
		if b.Len() == 0 {
			return nil, 0, Errorf(CodeInvalid, "password class %q has no characters left after exclusions", c)
		}
		sets = append(sets, b.String())
	}
	return sets, n, nil
}

// Validate checks that a password can be generated under p.
func (p PasswordPolicy) Validate() error {
	_, _, err := p.Alphabets()
	return err
}

// TargetAccount is the account a rotation changes, read from the secret's
// fields and its rotation options. It holds no password.
type TargetAccount struct {
	Username string
	Host     string
	Port     string
	Database string
	URL      string
	Options  map[string]string
}

// AccountOf builds the account of a secret's value and rotation options.
func AccountOf(v SecretValue, r *RotationConfig) TargetAccount {
	a := TargetAccount{Username: v["username"], Host: v["host"], Port: v["port"], Database: v["database"], URL: v["url"]}
	if r != nil {
		a.Options = r.Options
	}
	return a
}

// Credentials log in to a target: the account's own, or a privileged
// account's. A private key (SSH) may stand in for the password.
type Credentials struct {
	Username   string
	Password   string
	PrivateKey string
}

// ErrLoginRefused is wrapped by a target's error when the target answered
// and refused the credentials (as opposed to being unreachable). Check it
// with errors.Is.
var ErrLoginRefused = errors.New("the target refused the login")

// RotationTarget changes and tests a password on a real system.
//
// Implementations: rotate/postgres, rotate/ldap, rotate/ssh,
// rotate/webhook.
type RotationTarget interface {
	// Set makes next acct's password, logging in with login (the account
	// itself with its current password, or a privileged account). Returns
	// an error wrapping ErrLoginRefused if login is refused, ErrInvalid if
	// acct lacks what the target needs, and ErrUnavailable if the target
	// cannot be reached or fails. The error never holds a password.
	Set(ctx context.Context, acct TargetAccount, login Credentials, next string) error

	// Test logs in as acct with password. Returns nil if the target
	// accepts it, an error wrapping ErrLoginRefused if it refuses it, and
	// ErrUnavailable if it cannot be reached.
	Test(ctx context.Context, acct TargetAccount, password string) error
}

// HookEvent is what a checkout hook is told. It never holds a secret
// value.
type HookEvent struct {
	Event      string `json:"event"` // "pre-checkout" or "post-checkout"
	SecretID   string `json:"secretId"`
	SecretPath string `json:"secretPath"`
	CheckoutID string `json:"checkoutId"`
	Subject    string `json:"subject"`
	Email      string `json:"email,omitempty"`
	Comment    string `json:"comment,omitempty"`
	Ticket     string `json:"ticket,omitempty"`
	Expires    string `json:"expires,omitempty"` // RFC 3339
	Outcome    string `json:"outcome,omitempty"` // post-checkout: rotated, released, rotation_failed
	Time       string `json:"time"`              // RFC 3339
}

// HookResult is a hook's answer. A pre-checkout hook that answers Allow
// false vetoes the checkout; Message is shown to the user.
type HookResult struct {
	Allow   bool   `json:"allow"`
	Message string `json:"message,omitempty"`
}

// HookRule is one webhook a checkout policy calls.
type HookRule struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// KeySecret is the ID or path of an Escrow secret whose "key" (else
	// "password") field is the HMAC-SHA256 signing key.
	KeySecret string `json:"keySecret"`
	// Timeout is 1s to 30s; 0 means 5s.
	Timeout Duration `json:"timeout,omitempty"`
	// StopOnFailure makes a failing, timed out or vetoing pre-checkout
	// hook block the checkout. Without it a failure is audited and the
	// checkout goes on (a veto still blocks).
	StopOnFailure bool `json:"stopOnFailure,omitempty"`
}

// Hooks calls checkout webhooks.
//
// Implementation: hook.
type Hooks interface {
	// Call posts ev to h.URL, signed with key, and returns the hook's
	// answer. Returns ErrUnavailable if the hook cannot be reached, times
	// out, or answers anything but a 2xx with a HookResult.
	Call(ctx context.Context, h HookRule, key []byte, ev HookEvent) (HookResult, error)
}
