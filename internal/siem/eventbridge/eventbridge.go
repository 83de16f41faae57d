// Package eventbridge implements siem.Sink with Amazon EventBridge: each
// audit record goes to an event bus as one PutEvents entry with Source
// "escrow.audit", DetailType the record's action and Detail its JSON event
// (siem.MarshalEvent), so rules can route audit events by action or by any
// field of the event (detail.outcome, detail.severity, detail.record.*).
//
// Entries go in batches of at most 10 and 256 KB, as PutEvents allows. The
// entries a batch reports as failed with a retryable code (InternalFailure,
// ThrottlingException) are sent again, alone, a bounded number of times;
// whole-call failures are left to the SDK client's own retryer. Delivery
// is at least once: consumers deduplicate on the event's id. The caller's
// role needs events:PutEvents on the bus, and nothing else.
//
// It must never send anything but the record's JSON event, and never put a
// record's contents in an error or a log line (only ids and codes).
package eventbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	eb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
)

// API is the subset of *eventbridge.Client that Sink uses.
type API interface {
	PutEvents(ctx context.Context, params *eb.PutEventsInput, optFns ...func(*eb.Options)) (*eb.PutEventsOutput, error)
}

var _ API = (*eb.Client)(nil)

// Limits of one PutEvents call. AWS raised the size limit to 1 MB in 2025;
// 256 KB still holds everywhere (and in emulators) and leaves each audit
// event, a few KB, plenty of room.
const (
	Source          = "escrow.audit" // every entry's Source
	MaxEntries      = 10             // entries per PutEvents call
	MaxRequestBytes = 256 * 1024     // sum of the entry sizes of one call, exclusive

	// timeBytes is what an entry's Time counts for in its size.
	timeBytes = 14
	// maxDetailType is the longest DetailType EventBridge takes (characters).
	maxDetailType = 128
	// fallbackDetailType replaces an action that cannot be a DetailType
	// (empty, too long, not UTF-8); the event keeps the action.
	fallbackDetailType = "audit"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 4
	DefaultBackoff     = 200 * time.Millisecond
	maxBackoff         = 5 * time.Second
)

// Client-safe messages; the causes stay in the chain for the log.
const (
	msgUnavailable   = "SIEM export unavailable"
	msgMisconfigured = "SIEM export misconfigured"
	msgRefused       = "audit event refused by EventBridge"
	msgError         = "SIEM export error"
)

// Options configure a Sink.
type Options struct {
	// EventBus is the name or ARN of the bus; "" means the account's
	// default bus.
	EventBus string
	// MaxAttempts bounds how often one entry is sent, the first time
	// included (default DefaultMaxAttempts).
	MaxAttempts int
	// Backoff is the wait before the first retry of failed entries; it
	// doubles for each further retry, up to 5s, with jitter (default
	// DefaultBackoff).
	Backoff time.Duration
	// Sleep waits for d or until ctx ends (default: a timer). Tests pass
	// one that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger gets a warning for each retry (default: discard).
	Logger *slog.Logger
}

// Sink publishes audit events to EventBridge. It is safe for concurrent
// use.
type Sink struct {
	client   API
	bus      *string
	attempts int
	backoff  time.Duration
	sleep    func(context.Context, time.Duration) error
	log      *slog.Logger
}

var _ siem.Sink = (*Sink)(nil)

// New returns a Sink that publishes through client.
func New(client API, opts Options) *Sink {
	s := &Sink{client: client, attempts: opts.MaxAttempts, backoff: opts.Backoff, sleep: opts.Sleep, log: opts.Logger}
	if opts.EventBus != "" {
		s.bus = aws.String(opts.EventBus)
	}
	if s.attempts < 1 {
		s.attempts = DefaultMaxAttempts
	}
	if s.backoff <= 0 {
		s.backoff = DefaultBackoff
	}
	if s.sleep == nil {
		s.sleep = sleep
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// entry is one record on its way.
type entry struct {
	id    string // the record's id, for errors and logs
	in    types.PutEventsRequestEntry
	size  int
	tries int
}

// failure is a record that was not published.
type failure struct {
	id    string
	code  escrow.Code
	cause string
}

// Publish sends records in batches of at most MaxEntries entries and
// MaxRequestBytes, in order, and retries the entries that failed with a
// retryable code. It stops at the first PutEvents call that fails as a
// whole (or when ctx ends before a retry): the records before it stay
// published, and the error is that call's.
//
// Returns nil when every record was accepted. Otherwise it returns an
// error wrapping
//   - escrow.ErrUnavailable if EventBridge could not take some events now
//     (throttling, its internal failures after every attempt, the network,
//     ctx ended): publish again later;
//   - an error with escrow.CodeInternal for a misconfiguration (no such
//     bus, access denied, a source or detail type the bus refuses) or an
//     answer Sink does not understand;
//   - escrow.ErrInvalid if the only failures are records that cannot be
//     published at all (nil, an event over 256 KB, an entry EventBridge
//     calls malformed): publishing them again will not help.
//
// The error names the records (by id) that were not published.
func (s *Sink) Publish(ctx context.Context, records []*escrow.AuditRecord) error {
	var (
		failed []failure
		batch  []*entry
		size   int
	)
	for i, r := range records {
		e, f := newEntry(i, r, s.bus)
		if f != nil {
			failed = append(failed, *f)
			continue
		}
		if len(batch) == MaxEntries || size+e.size >= MaxRequestBytes {
			if err := s.send(ctx, batch, &failed); err != nil {
				return err
			}
			batch, size = nil, 0
		}
		batch = append(batch, e)
		size += e.size
	}
	if len(batch) > 0 {
		if err := s.send(ctx, batch, &failed); err != nil {
			return err
		}
	}
	return summarize(failed, len(records))
}

// newEntry builds r's entry, or the failure that keeps it from being sent.
func newEntry(i int, r *escrow.AuditRecord, bus *string) (*entry, *failure) {
	if r == nil {
		return nil, &failure{id: fmt.Sprintf("#%d", i), code: escrow.CodeInvalid, cause: "nil record"}
	}
	detail, err := siem.MarshalEvent(r)
	if err != nil {
		return nil, &failure{id: r.ID, code: escrow.CodeInvalid, cause: err.Error()}
	}
	e := &entry{id: r.ID, in: types.PutEventsRequestEntry{
		Source:       aws.String(Source),
		DetailType:   aws.String(detailType(r.Action)),
		Detail:       aws.String(string(detail)),
		EventBusName: bus,
	}}
	if !r.Time.IsZero() {
		e.in.Time = aws.Time(r.Time)
	}
	e.size = entrySize(&e.in)
	if e.size >= MaxRequestBytes {
		return nil, &failure{id: r.ID, code: escrow.CodeInvalid,
			cause: fmt.Sprintf("event of %d bytes exceeds the %d-byte PutEvents limit", e.size, MaxRequestBytes)}
	}
	return e, nil
}

// detailType is action, or fallbackDetailType if EventBridge would refuse
// it.
func detailType(action string) string {
	if action == "" || !utf8.ValidString(action) || utf8.RuneCountInString(action) > maxDetailType {
		return fallbackDetailType
	}
	return action
}

// entrySize is the size EventBridge counts for e: 14 bytes for a Time, and
// the UTF-8 bytes of Source, DetailType, Detail and each Resource
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html).
func entrySize(e *types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	if e.Time != nil {
		n += timeBytes
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// send puts batch, then again the entries that failed with a retryable
// code, up to s.attempts times each. Entries that fail for good go to
// failed. It returns an error when a call fails as a whole, or ctx ends
// while it waits to retry.
func (s *Sink) send(ctx context.Context, batch []*entry, failed *[]failure) error {
	for attempt := 1; len(batch) > 0; attempt++ {
		in := &eb.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(batch))}
		for i, e := range batch {
			in.Entries[i] = e.in
			e.tries++
		}
		out, err := s.client.PutEvents(ctx, in)
		if err != nil {
			return convertError(fmt.Errorf("put %d events (first %s): %w", len(batch), batch[0].id, err))
		}
		if len(out.Entries) != len(batch) {
			return escrow.Wrap(escrow.CodeInternal,
				fmt.Errorf("put %d events (first %s): EventBridge answered with %d entries", len(batch), batch[0].id, len(out.Entries)),
				msgError)
		}
		var retry []*entry
		var codes []string
		for i, res := range out.Entries {
			code := aws.ToString(res.ErrorCode)
			switch {
			case code == "" && aws.ToString(res.EventId) != "":
				continue // accepted
			case code == "":
				*failed = append(*failed, failure{id: batch[i].id, code: escrow.CodeInternal, cause: "no event id and no error code"})
			case retryable(code) && batch[i].tries < s.attempts:
				retry = append(retry, batch[i])
				codes = append(codes, code)
			default:
				*failed = append(*failed, failure{id: batch[i].id, code: entryCode(code),
					cause: fmt.Sprintf("%s: %s (attempt %d)", code, aws.ToString(res.ErrorMessage), batch[i].tries)})
			}
		}
		if len(retry) == 0 {
			return nil
		}
		wait := s.wait(attempt)
		s.log.WarnContext(ctx, "eventbridge: retrying failed audit events",
			"count", len(retry), "batch", len(batch), "attempt", attempt+1, "codes", strings.Join(codes, ","), "wait", wait)
		if err := s.sleep(ctx, wait); err != nil {
			return escrow.Wrap(escrow.CodeUnavailable,
				fmt.Errorf("wait to retry %d events (first %s): %w", len(retry), retry[0].id, err), msgUnavailable)
		}
		batch = retry
	}
	return nil
}

// wait is the backoff before retry number attempt (1 for the first):
// Backoff doubled each time, capped, with "equal jitter" so that sinks
// throttled together do not retry together.
func (s *Sink) wait(attempt int) time.Duration {
	d := s.backoff
	for range attempt - 1 {
		if d >= maxBackoff/2 {
			d = maxBackoff
			break
		}
		d *= 2
	}
	return d/2 + rand.N(d/2+1)
}

// retryable reports whether EventBridge calls a failed entry's code
// retryable (PutEventsResultEntry.ErrorCode).
func retryable(code string) bool {
	return code == "InternalFailure" || code == "ThrottlingException"
}

// entryCode maps the ErrorCode of an entry that failed for good:
//   - InternalFailure, ThrottlingException (after every attempt):
//     unavailable;
//   - InvalidArgument, MalformedDetail, RedactionFailure: the entry itself
//     is refused, invalid;
//   - the rest (AccessDeniedException, NotAuthorizedForSourceException,
//     NotAuthorizedForDetailTypeException, InvalidAccountIdException, and
//     codes we do not know): a misconfiguration, internal.
func entryCode(code string) escrow.Code {
	switch code {
	case "InternalFailure", "ThrottlingException":
		return escrow.CodeUnavailable
	case "InvalidArgument", "MalformedDetail", "RedactionFailure":
		return escrow.CodeInvalid
	}
	return escrow.CodeInternal
}

// summarize turns the failures of a Publish into its error: the most
// actionable code wins (unavailable: retry; internal: fix, then retry;
// invalid: do not retry), and the cause names every record.
func summarize(failed []failure, total int) error {
	if len(failed) == 0 {
		return nil
	}
	code, msg := escrow.CodeInvalid, msgRefused
	var b strings.Builder
	for i, f := range failed {
		switch {
		case f.code == escrow.CodeUnavailable:
			code, msg = f.code, msgUnavailable
		case f.code == escrow.CodeInternal && code != escrow.CodeUnavailable:
			code, msg = f.code, msgMisconfigured
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s: %s", f.id, f.code, f.cause)
	}
	return escrow.Wrap(code, fmt.Errorf("%d of %d audit events not published: %s", len(failed), total, b.String()), msg)
}

// convertError is the one place where an error of a whole PutEvents call
// becomes an escrow error:
//   - what may pass (throttling, EventBridge's internal failures, any 5xx
//     or 429, the network, a cancelled or expired context, no answer at
//     all) is ErrUnavailable: publish again later;
//   - a missing bus, access denied, bad credentials, a request
//     EventBridge or the SDK calls invalid, and any other answer are
//     CodeInternal: a misconfiguration or a bug, with the SDK error kept as
//     the cause for the log.
func convertError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
	}
	var (
		thr *types.ThrottlingException
		ise *types.InternalException
		rnf *types.ResourceNotFoundException
	)
	switch {
	case errors.As(err, &thr), errors.As(err, &ise):
		return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
	case errors.As(err, &rnf):
		return escrow.Wrap(escrow.CodeInternal, fmt.Errorf("event bus missing: %w", err), msgMisconfigured)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
			"InternalException", "InternalFailure", "ServiceUnavailable", "InternalServerError":
			return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
		}
		var respErr interface{ HTTPStatusCode() int }
		if errors.As(err, &respErr) && (respErr.HTTPStatusCode() >= 500 || respErr.HTTPStatusCode() == 429) {
			return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
		}
		return escrow.Wrap(escrow.CodeInternal, err, msgMisconfigured)
	}
	var paramErr smithy.InvalidParamsError
	if errors.As(err, &paramErr) {
		return escrow.Wrap(escrow.CodeInternal, err, msgError)
	}
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &send) || errors.As(err, &netErr) {
		return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
	}
	// No answer from EventBridge at all (credentials that could not be
	// fetched, a response that could not be read): may pass.
	return escrow.Wrap(escrow.CodeUnavailable, err, msgUnavailable)
}
