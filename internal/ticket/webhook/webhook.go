// Package webhook is a generic ticket validator: for a ticket system Escrow
// has no adapter for, a small service of the customer's answers Escrow's
// questions in the contract below. It must never put the shared secret into
// an error, a log line or an audit record, and never grant anything on an
// answer outside the contract.
//
// # Contract (version 1)
//
// Escrow sends each question as POST to the configured base URL, with
//
//	Content-Type: application/json
//	X-Escrow-Timestamp: <Unix seconds, same value as the body's "timestamp">
//	X-Escrow-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the shared secret>
//
// The signature covers the body only; the timestamp and a random id are in
// the body, so they are signed too. A receiver must compare the signature
// in constant time over the bytes it received, refuse a timestamp more than
// five minutes from its clock, and may refuse an id it has seen.
//
// Lookup:
//
//	{"action":"lookup","number":"CHG0012345","system":"<configured name>","timestamp":1795426200,"id":"<32 hex>"}
//
// is answered 200 with one of
//
//	{"found":false}
//	{"found":true,"ticket":{
//	   "number":"CHG0012345",           required, equal to the number asked
//	   "kind":"change",                 required: "change" or "incident"
//	   "state":"Implement",             required: the system's own label
//	   "summary":"...", "assignee":"login or email", "assigneeEmail":"...",
//	   "assignmentGroup":"...", "configurationItem":"...", "url":"https://...",
//	   "plannedStart":"2026-11-23T09:00:00Z", "plannedEnd":"..."   RFC 3339
//	}}
//
// (the ticket.Ticket JSON fields; "system" is ignored and set by Escrow).
// A 404 means not found too. Unknown fields are ignored; a known field of
// the wrong type, a missing required field or any other status is an
// error, and Escrow refuses the access.
//
// Comment (write-back):
//
//	{"action":"comment","number":"CHG0012345","text":"...","system":"...","timestamp":...,"id":"..."}
//
// is answered 2xx with {"ok":true}.
//
// Errors follow ticket.System: 401/403 and answers outside the contract are
// internal (a misconfiguration or an impostor), timeouts and 5xx are
// unavailable, 429 and 503 are retried within the timeout.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Header names of the contract.
const (
	HeaderSignature = "X-Escrow-Signature"
	HeaderTimestamp = "X-Escrow-Timestamp"
)

// MinSecret is the shortest shared secret accepted, in bytes.
const MinSecret = 16

// Config configures one validator.
type Config struct {
	Name        string // the configured system's name, copied into each Ticket
	BaseURL     string // the validator's URL; every question is POSTed here
	Credentials ticket.Credentials
	Timeout     time.Duration // 0 = ticket.DefaultTimeout
	HTTPClient  *http.Client  // nil = a fresh client
	Now         func() time.Time
}

// System is a generic HTTP ticket validator.
type System struct {
	name   string
	client *ticket.Client
	now    func() time.Time
}

var _ ticket.System = (*System)(nil)

// New returns a System. Credentials.Token is the shared secret that signs
// each request.
func New(cfg Config) (*System, error) {
	secret := []byte(cfg.Credentials.Token)
	if len(secret) < MinSecret {
		return nil, escrow.Errorf(escrow.CodeInvalid, "a webhook ticket system needs a shared secret (token) of at least %d bytes in its credential secret", MinSecret)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	c, err := ticket.NewClient(cfg.BaseURL, cfg.HTTPClient, cfg.Timeout, signer(secret))
	if err != nil {
		return nil, err
	}
	return &System{name: cfg.Name, client: c, now: now}, nil
}

type timestampKey struct{}

// signer signs the body the client is about to send; each retry sends the
// same bytes, so the signature stays valid.
func signer(secret []byte) func(*http.Request) {
	return func(r *http.Request) {
		if ts, ok := r.Context().Value(timestampKey{}).(string); ok {
			r.Header.Set(HeaderTimestamp, ts)
		}
		if r.GetBody == nil {
			return // unsigned: the receiver refuses it
		}
		body, err := r.GetBody()
		if err != nil {
			return
		}
		defer body.Close()
		mac := hmac.New(sha256.New, secret)
		if _, err := io.Copy(mac, body); err != nil {
			return
		}
		r.Header.Set(HeaderSignature, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
}

// Sign returns the X-Escrow-Signature value for body: for receivers
// written in Go, and for tests.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// request is the body Escrow sends. Field order is fixed by the struct, so
// the bytes are stable across retries.
type request struct {
	Action    string `json:"action"`
	Number    string `json:"number"`
	Text      string `json:"text,omitempty"`
	System    string `json:"system"`
	Timestamp int64  `json:"timestamp"`
	ID        string `json:"id"`
}

func (s *System) send(ctx context.Context, req request, out any) error {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return escrow.Wrap(escrow.CodeInternal, err, "make request id")
	}
	req.System = s.name
	req.Timestamp = s.now().Unix()
	req.ID = hex.EncodeToString(id)
	ctx = context.WithValue(ctx, timestampKey{}, strconv.FormatInt(req.Timestamp, 10))
	return s.client.Do(ctx, http.MethodPost, "", nil, req, out)
}

// validNumber keeps odd strings away from the validator: 1 to 64 printable
// characters without spaces.
func validNumber(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

func (s *System) notFound(number string) error {
	return &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("no ticket %s in %s", number, s.name)}
}

func unexpected(what string) error {
	return escrow.Errorf(escrow.CodeInternal, "the validator's answer %s, outside the webhook contract", what)
}

// Lookup implements ticket.System.
func (s *System) Lookup(ctx context.Context, number string) (*ticket.Ticket, error) {
	if !validNumber(number) {
		return nil, &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("%q is not a ticket number", number)}
	}
	var verdict struct {
		Found  *bool          `json:"found"`
		Ticket *ticket.Ticket `json:"ticket"`
	}
	if err := s.send(ctx, request{Action: "lookup", Number: number}, &verdict); err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return nil, s.notFound(number)
		}
		return nil, fmt.Errorf("look up %s: %w", number, err)
	}
	var err error
	switch t := verdict.Ticket; {
	case verdict.Found == nil:
		err = unexpected(`has no "found"`)
	case !*verdict.Found:
		return nil, s.notFound(number)
	case t == nil:
		err = unexpected(`has no "ticket"`)
	case t.Number != number:
		err = unexpected("is about another ticket")
	case t.Kind != ticket.Change && t.Kind != ticket.Incident:
		err = unexpected(`has a "kind" other than change or incident`)
	case t.State == "":
		err = unexpected(`has no "state"`)
	case !t.PlannedStart.IsZero() && !t.PlannedEnd.IsZero() && t.PlannedEnd.Before(t.PlannedStart):
		err = unexpected("has a planned window that ends before it starts")
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", number, err)
	}
	t := verdict.Ticket
	t.System = s.name
	t.PlannedStart, t.PlannedEnd = utc(t.PlannedStart), utc(t.PlannedEnd)
	return t, nil
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// Comment implements ticket.System.
func (s *System) Comment(ctx context.Context, number, text string) error {
	if !validNumber(number) {
		return &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("%q is not a ticket number", number)}
	}
	if text == "" {
		return escrow.Errorf(escrow.CodeInvalid, "a comment needs text")
	}
	var ack struct {
		OK bool `json:"ok"`
	}
	if err := s.send(ctx, request{Action: "comment", Number: number, Text: text}, &ack); err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return s.notFound(number)
		}
		return fmt.Errorf("comment on %s: %w", number, err)
	}
	if !ack.OK {
		return fmt.Errorf("comment on %s: %w", number, unexpected(`is not {"ok":true}`))
	}
	return nil
}
