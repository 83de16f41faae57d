// Package hook calls checkout webhooks: it POSTs an escrow.HookEvent to a
// URL the customer runs, signed so the receiver can tell it comes from
// Escrow, and reads back whether the checkout may go on. It also holds the
// receiving side (Verify, Receiver) for hooks written in Go, and the signed
// POST itself (Client.Post), which rotate/webhook shares.
//
// It must never put a signing key or a request body into an error or a log
// line, never follow a redirect, never send over plain http beyond
// loopback, and never pass a hook's text on to a user uncleaned.
//
// # Signing (version 1)
//
// Each call is a POST of a JSON body with
//
//	Content-Type: application/json
//	Escrow-Timestamp: <Unix seconds, decimal, no sign or leading zeros>
//	Escrow-Delivery: <a unique id; Escrow sends 32 lowercase hex digits>
//	Escrow-Signature: v1=<hex HMAC-SHA256(key, timestamp + "." + body)>
//
// where timestamp is the Escrow-Timestamp value, body the exact bytes
// sent, and key the hook's signing key: the "key" (else "password") field
// of the Escrow secret that HookRule.KeySecret names, at least MinKey
// bytes. A receiver must
//
//   - compute the HMAC over the raw bytes it received, not a re-encoding,
//     and compare it with the header's in constant time;
//   - refuse a timestamp more than five minutes away from its clock;
//   - refuse a delivery id, and a signature, it has already accepted
//     within that window. The delivery id is not signed, so a replay can
//     carry a fresh one; the signature cannot change.
//
// For a checkout hook the body is the HookEvent JSON, for example
//
//	{"event":"pre-checkout","secretId":"...","secretPath":"/prod/db","checkoutId":"...",
//	 "subject":"alice","comment":"...","ticket":"CHG0012345","time":"2026-11-23T08:30:00Z"}
//
// and the hook answers 2xx with
//
//	{"allow":true}
//	{"allow":false,"message":"why not; shown to the user"}
//
// within the hook's timeout (5 s unless set, 30 s at most), in at most
// 64 KiB. Anything else (a timeout, a redirect, which is never followed,
// another status, an answer that is not that JSON) is a failure of the
// hook. A failing answer may still carry {"message":"..."}: Escrow quotes
// it in the error, so a hook can say why it failed. Messages reach users
// without control characters and cut to 500 characters.
package hook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Header names of the signing scheme.
const (
	HeaderTimestamp = "Escrow-Timestamp"
	HeaderDelivery  = "Escrow-Delivery"
	HeaderSignature = "Escrow-Signature"
)

// Limits of a call.
const (
	DefaultTimeout = 5 * time.Second
	MaxTimeout     = 30 * time.Second
	// MaxBody bounds an answer Client reads and a request Receiver reads.
	MaxBody = 64 << 10
	// MaxMessage bounds, in runes, a hook's message shown to a user.
	MaxMessage = 500
	// MinKey is the shortest signing key a checkout hook may use, in bytes.
	MinKey = 16
)

// Signature returns the Escrow-Signature value for body sent with the
// Escrow-Timestamp value timestamp.
func Signature(key []byte, timestamp string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(key, timestamp, body))
}

func mac(key []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Client sends signed webhooks.
type Client struct {
	http *http.Client
	now  func() time.Time
}

var _ escrow.Hooks = (*Client)(nil)

// New returns a Client that sends with a copy of hc (nil: a fresh client)
// changed never to follow redirects, and stamps requests with now (nil:
// time.Now).
func New(hc *http.Client, now func() time.Time) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	c := *hc
	// A redirect would carry a signed body, perhaps a password, elsewhere.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if now == nil {
		now = time.Now
	}
	return &Client{http: &c, now: now}
}

// Post sends body to rawURL, signed with key, and returns the answer's
// status and body. peer names the receiver in error messages ("hook
// audit"). timeout bounds the whole exchange: 0 means DefaultTimeout, and
// more than MaxTimeout means MaxTimeout.
//
// Returns ErrInvalid, before any connection, for a URL that is not https
// (http only on loopback) or carries credentials, or an empty key; and
// ErrUnavailable if the receiver cannot be reached, times out, redirects,
// or answers more than MaxBody bytes. Any other status is returned as is.
// Neither the URL, the key nor the body appears in an error.
func (c *Client) Post(ctx context.Context, peer, rawURL string, key, body []byte, timeout time.Duration) (int, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && !(u.Scheme == "http" && ticket.Loopback(u.Hostname()))) {
		// The URL is not quoted: it might carry a token.
		return 0, nil, escrow.Errorf(escrow.CodeInvalid, "%s: the URL must be an absolute https URL without credentials (http only on loopback)", peer)
	}
	if len(key) == 0 {
		return 0, nil, escrow.Errorf(escrow.CodeInvalid, "%s has no signing key", peer)
	}
	switch {
	case timeout <= 0:
		timeout = DefaultTimeout
	case timeout > MaxTimeout:
		timeout = MaxTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := make([]byte, 16)
	rand.Read(id) // never fails since Go 1.24
	ts := strconv.FormatInt(c.now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, escrow.Wrap(escrow.CodeInternal, err, "build "+peer+" request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderDelivery, hex.EncodeToString(id))
	req.Header.Set(HeaderSignature, Signature(key, ts, body))

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, failed(ctx, peer, timeout, err, "cannot be reached")
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return 0, nil, escrow.Errorf(escrow.CodeUnavailable, "%s redirected (HTTP %d); redirects are not followed", peer, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return 0, nil, failed(ctx, peer, timeout, err, "cut its answer off")
	}
	if len(data) > MaxBody {
		return 0, nil, escrow.Errorf(escrow.CodeUnavailable, "%s answered more than %d KiB", peer, MaxBody>>10)
	}
	return resp.StatusCode, data, nil
}

// failed words a transport error, telling a timeout from the rest.
func failed(ctx context.Context, peer string, timeout time.Duration, err error, otherwise string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL may carry a token; keep only the cause
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return escrow.Wrap(escrow.CodeUnavailable, err, fmt.Sprintf("%s timed out after %s", peer, timeout))
	case ctx.Err() != nil:
		return escrow.Wrap(escrow.CodeUnavailable, err, peer+" was cancelled")
	}
	return escrow.Wrap(escrow.CodeUnavailable, err, peer+" "+otherwise)
}

// Call implements escrow.Hooks: it posts ev to h.URL signed with key and
// returns the hook's answer, its message cleaned. Returns ErrInvalid for a
// URL Post refuses or a key shorter than MinKey, and ErrUnavailable for
// every failure of the hook, with the reason (and the hook's own message,
// if a failing answer carries one) in the error's message.
func (c *Client) Call(ctx context.Context, h escrow.HookRule, key []byte, ev escrow.HookEvent) (escrow.HookResult, error) {
	peer := "hook " + Clean(h.Name)
	if len(key) < MinKey {
		return escrow.HookResult{}, escrow.Errorf(escrow.CodeInvalid, "%s: its signing key is shorter than %d bytes", peer, MinKey)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return escrow.HookResult{}, escrow.Wrap(escrow.CodeInternal, err, "encode "+peer+" event")
	}
	status, data, err := c.Post(ctx, peer, h.URL, key, body, h.Timeout.D())
	if err != nil {
		return escrow.HookResult{}, err
	}
	var answer struct {
		Allow   *bool  `json:"allow"`
		Message string `json:"message"`
	}
	jerr := json.Unmarshal(data, &answer)
	if status < 200 || status > 299 {
		msg := fmt.Sprintf("%s answered HTTP %d", peer, status)
		if m := Clean(answer.Message); jerr == nil && m != "" {
			msg += ": " + m
		}
		return escrow.HookResult{}, escrow.Errorf(escrow.CodeUnavailable, "%s", msg)
	}
	if jerr != nil {
		return escrow.HookResult{}, escrow.Wrap(escrow.CodeUnavailable, jerr, peer+` answered no JSON {"allow":...}`)
	}
	if answer.Allow == nil {
		return escrow.HookResult{}, escrow.Errorf(escrow.CodeUnavailable, `%s answered JSON without "allow"`, peer)
	}
	return escrow.HookResult{Allow: *answer.Allow, Message: Clean(answer.Message)}, nil
}

// Clean makes text from outside fit to show a user: white space becomes a
// plain space (a message is one line), other control and format
// characters (which could hide or reorder text) go, and it is cut to
// MaxMessage runes.
func Clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == MaxMessage {
			break
		}
		switch {
		case unicode.IsSpace(r):
			r = ' '
		case unicode.In(r, unicode.Cc, unicode.Cf):
			continue
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
