// Package webhook is the rotation target for systems Escrow has no adapter
// for: a small service of the customer's changes and checks passwords on
// Escrow's signed request. It must never put a password or the signing key
// into an error or a log line, never send a password over plain http
// beyond loopback, and never follow a redirect.
//
// # Contract
//
// Requests are POSTed to the secret's "url" field (else the rotation's
// "url" option), signed as package hook describes (Escrow-Timestamp,
// Escrow-Delivery, Escrow-Signature: v1=HMAC-SHA256 over timestamp "." body).
//
// Set a password:
//
//	{"action":"set","username":"svc-app","host":"app.example.com","password":"<new>"}
//
// signed with the rotation's privileged secret's password, at least
// hook.MinKey bytes: configure RotationConfig.Privileged with a secret
// whose password is the key the service shares. ("host" is left out when
// the secret has none.)
//
// Test a password:
//
//	{"action":"test","username":"svc-app","password":"<password>"}
//
// signed with that password itself: a test is a login attempt and carries
// no other credential, so the receiver verifies the signature with the
// password it holds for the username (or the one in the body, then
// compares), and should limit attempts as it would logins.
//
// The service answers 2xx {"ok":true} when done, 2xx {"ok":false} (or 401
// or 403) when it refuses the credentials or the password; anything else,
// within the timeout, is a failure.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
)

const peer = "the rotation webhook"

// Target changes passwords through a signed webhook.
type Target struct {
	client  *hook.Client
	timeout time.Duration
}

var _ escrow.RotationTarget = (*Target)(nil)

// New returns a Target that sends with c (nil: hook.New(nil, nil)) and
// gives each call timeout (0: hook.DefaultTimeout, at most
// hook.MaxTimeout).
func New(c *hook.Client, timeout time.Duration) *Target {
	if c == nil {
		c = hook.New(nil, nil)
	}
	return &Target{client: c, timeout: timeout}
}

// request is the body sent; the password is in it by necessity, which is
// why hook.Client.Post refuses plain http beyond loopback.
type request struct {
	Action   string `json:"action"`
	Username string `json:"username"`
	Host     string `json:"host,omitempty"`
	Password string `json:"password"`
}

// Set implements escrow.RotationTarget; login.Password is the signing key.
func (t *Target) Set(ctx context.Context, acct escrow.TargetAccount, login escrow.Credentials, next string) error {
	if len(login.Password) < hook.MinKey {
		return escrow.Errorf(escrow.CodeInvalid, "%s is signed with the privileged secret's password, which must be at least %d bytes", peer, hook.MinKey)
	}
	if next == "" {
		return escrow.Errorf(escrow.CodeInvalid, "%s: no new password to set", peer)
	}
	err := t.send(ctx, acct, []byte(login.Password), request{Action: "set", Username: acct.Username, Host: acct.Host, Password: next})
	if err != nil {
		return fmt.Errorf("set the password of %s: %w", acct.Username, err)
	}
	return nil
}

// Test implements escrow.RotationTarget; the request is signed with
// password.
func (t *Target) Test(ctx context.Context, acct escrow.TargetAccount, password string) error {
	if password == "" {
		return escrow.Errorf(escrow.CodeInvalid, "%s: no password to test", peer)
	}
	err := t.send(ctx, acct, []byte(password), request{Action: "test", Username: acct.Username, Password: password})
	if err != nil {
		return fmt.Errorf("test the password of %s: %w", acct.Username, err)
	}
	return nil
}

func (t *Target) send(ctx context.Context, acct escrow.TargetAccount, key []byte, req request) error {
	u := acct.URL
	if u == "" {
		u = acct.Options["url"]
	}
	if u == "" {
		return escrow.Errorf(escrow.CodeInvalid, `%s needs the secret's "url" field or the rotation's "url" option`, peer)
	}
	if acct.Username == "" {
		return escrow.Errorf(escrow.CodeInvalid, `%s needs the secret's "username" field`, peer)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "encode "+peer+" request")
	}
	status, data, err := t.client.Post(ctx, peer, u, key, body, t.timeout)
	if err != nil {
		return err
	}
	return verdict(status, data)
}

// verdict reads the answer. The body is never quoted: a careless service
// might echo the password.
func verdict(status int, data []byte) error {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return refusedLogin(fmt.Sprintf("%s refused the login (HTTP %d)", peer, status))
	case status < 200 || status > 299:
		return escrow.Errorf(escrow.CodeUnavailable, "%s answered HTTP %d", peer, status)
	}
	var ack struct {
		OK *bool `json:"ok"`
	}
	if err := json.Unmarshal(data, &ack); err != nil || ack.OK == nil {
		// Not even the decoder's error: it may quote a character of the body.
		return escrow.Errorf(escrow.CodeUnavailable, `%s answered no JSON {"ok":...}`, peer)
	}
	if !*ack.OK {
		return refusedLogin(peer + " refused the login")
	}
	return nil
}

// refusedLogin is Forbidden, not Unavailable: the target answered, and
// trying again with the same credentials will not help.
func refusedLogin(msg string) error {
	return escrow.Wrap(escrow.CodeForbidden, escrow.ErrLoginRefused, msg)
}
