package eventbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	eb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
)

// fakePut fakes the one call Sink makes. respond answers call n (from 0);
// nil accepts every entry.
type fakePut struct {
	API
	mu      sync.Mutex
	calls   [][]types.PutEventsRequestEntry
	respond func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error)
}

func (f *fakePut) PutEvents(ctx context.Context, in *eb.PutEventsInput, _ ...func(*eb.Options)) (*eb.PutEventsOutput, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, in.Entries)
	f.mu.Unlock()
	if f.respond != nil {
		return f.respond(n, in.Entries)
	}
	return accept(in.Entries, nil), nil
}

// accept answers entries, failing those for which fail returns a code.
func accept(entries []types.PutEventsRequestEntry, fail func(i int, e types.PutEventsRequestEntry) string) *eb.PutEventsOutput {
	out := &eb.PutEventsOutput{Entries: make([]types.PutEventsResultEntry, len(entries))}
	for i, e := range entries {
		if fail != nil {
			if code := fail(i, e); code != "" {
				out.Entries[i] = types.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("failed: " + code)}
				out.FailedEntryCount++
				continue
			}
		}
		out.Entries[i] = types.PutEventsResultEntry{EventId: aws.String(fmt.Sprintf("ev-%d", i))}
	}
	return out
}

// noSleep records the waits instead of waiting.
type noSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *noSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func newSink(f *fakePut, opts Options) (*Sink, *noSleep) {
	ns := &noSleep{}
	if opts.Sleep == nil {
		opts.Sleep = ns.sleep
	}
	return New(f, opts), ns
}

const secretish = "COMMENT-TEXT-NOT-FOR-ERRORS"

func records(n int) []*escrow.AuditRecord {
	out := make([]*escrow.AuditRecord, n)
	for i := range out {
		out[i] = &escrow.AuditRecord{
			ID:      fmt.Sprintf("R%03d", i),
			Time:    time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC),
			Actor:   escrow.Actor{Subject: "alice"},
			Action:  escrow.ActionSecretReveal,
			Outcome: escrow.OutcomeSuccess,
			Comment: secretish,
		}
	}
	return out
}

func detailID(t *testing.T, e types.PutEventsRequestEntry) string {
	t.Helper()
	var ev struct{ ID string }
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &ev); err != nil {
		t.Fatalf("detail %q: %v", aws.ToString(e.Detail), err)
	}
	return ev.ID
}

func callIDs(t *testing.T, call []types.PutEventsRequestEntry) string {
	var ids []string
	for _, e := range call {
		ids = append(ids, detailID(t, e))
	}
	return strings.Join(ids, ",")
}

func TestEntryShape(t *testing.T) {
	f := &fakePut{}
	s, _ := newSink(f, Options{EventBus: "arn:aws:events:us-east-1:123456789012:event-bus/audit"})
	recs := records(1)
	recs = append(recs,
		&escrow.AuditRecord{ID: "EMPTY", Outcome: escrow.OutcomeFailed},
		&escrow.AuditRecord{ID: "LONG", Action: strings.Repeat("a", 129), Time: time.Unix(1, 0)},
		&escrow.AuditRecord{ID: "MAX", Action: strings.Repeat("é", 128), Time: time.Unix(1, 0)},
	)
	if err := s.Publish(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 1 || len(f.calls[0]) != 4 {
		t.Fatalf("calls %d", len(f.calls))
	}
	for i, e := range f.calls[0] {
		want, _ := siem.MarshalEvent(recs[i])
		if aws.ToString(e.Detail) != string(want) {
			t.Errorf("entry %d detail %s, want %s", i, aws.ToString(e.Detail), want)
		}
		if aws.ToString(e.Source) != "escrow.audit" {
			t.Errorf("entry %d source %q", i, aws.ToString(e.Source))
		}
		if aws.ToString(e.EventBusName) != "arn:aws:events:us-east-1:123456789012:event-bus/audit" {
			t.Errorf("entry %d bus %q", i, aws.ToString(e.EventBusName))
		}
		if len(e.Resources) != 0 || e.TraceHeader != nil {
			t.Errorf("entry %d sends more than the event: %+v", i, e)
		}
	}
	e := f.calls[0]
	for i, want := range []string{escrow.ActionSecretReveal, "audit", "audit", strings.Repeat("é", 128)} {
		if got := aws.ToString(e[i].DetailType); got != want {
			t.Errorf("entry %d detail type %q, want %q", i, got, want)
		}
	}
	if e[0].Time == nil || !e[0].Time.Equal(recs[0].Time) || e[1].Time != nil {
		t.Errorf("times %v, %v: want the record's, and none for a zero time", e[0].Time, e[1].Time)
	}
	if got, want := entrySize(&e[0]), 14+len("escrow.audit")+len(escrow.ActionSecretReveal)+len(aws.ToString(e[0].Detail)); got != want {
		t.Errorf("entrySize = %d, want %d", got, want)
	}

	// No bus configured: the default bus (no EventBusName).
	f = &fakePut{}
	s, _ = newSink(f, Options{})
	if err := s.Publish(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
	if f.calls[0][0].EventBusName != nil {
		t.Errorf("bus %q, want none", aws.ToString(f.calls[0][0].EventBusName))
	}
}

func TestBatchesOfTen(t *testing.T) {
	f := &fakePut{}
	s, _ := newSink(f, Options{})
	recs := records(25)
	if err := s.Publish(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var ids []string
	for _, c := range f.calls {
		sizes = append(sizes, len(c))
		ids = append(ids, callIDs(t, c))
	}
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Fatalf("batch sizes %v, want [10 10 5]", sizes)
	}
	var want []string
	for _, r := range recs {
		want = append(want, r.ID)
	}
	if got := strings.Join(ids, ","); got != strings.Join(want, ",") {
		t.Fatalf("order %s, want %s", got, strings.Join(want, ","))
	}
}

// padTo returns a record whose entry is exactly size bytes.
func padTo(t *testing.T, id string, size int) *escrow.AuditRecord {
	t.Helper()
	r := records(1)[0]
	r.ID, r.Comment = id, "x"
	e, _ := newEntry(0, r, nil)
	if e == nil || e.size > size {
		t.Fatalf("cannot pad to %d", size)
	}
	r.Comment = strings.Repeat("x", size-e.size+1)
	if e, _ := newEntry(0, r, nil); e != nil && e.size != size {
		t.Fatalf("padded to %d, want %d", e.size, size)
	}
	return r
}

func TestBatchesBySize(t *testing.T) {
	const kb = 1024
	for _, tc := range []struct {
		name  string
		sizes []int
		want  string // entries per call
	}{
		{"two of 100 KB per call", []int{100 * kb, 100 * kb, 100 * kb, 100 * kb, 100 * kb}, "[2 2 1]"},
		{"sum one under the limit", []int{128 * kb, 128*kb - 1}, "[2]"},
		{"sum at the limit splits", []int{128 * kb, 128 * kb}, "[1 1]"},
		{"small ones fill up to the limit", []int{200 * kb, 20 * kb, 20 * kb, 20 * kb, 1 * kb}, "[3 2]"},
		{"one just under the limit", []int{256*kb - 1, 1 * kb}, "[1 1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePut{}
			s, _ := newSink(f, Options{})
			var recs []*escrow.AuditRecord
			for i, size := range tc.sizes {
				recs = append(recs, padTo(t, fmt.Sprintf("B%d", i), size))
			}
			if err := s.Publish(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, c := range f.calls {
				got = append(got, len(c))
				total := 0
				for i := range c {
					total += entrySize(&c[i])
				}
				if total >= MaxRequestBytes {
					t.Errorf("a call of %d bytes", total)
				}
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("batches %v, want %s", got, tc.want)
			}
		})
	}
}

// A record whose event alone is too large (or nil) is not sent; the rest
// are, and the error names it as invalid.
func TestUnsendable(t *testing.T) {
	f := &fakePut{}
	s, _ := newSink(f, Options{})
	recs := records(3)
	recs[0] = padTo(t, "HUGE", MaxRequestBytes)
	recs[2] = nil
	err := s.Publish(context.Background(), recs)
	if !errors.Is(err, escrow.ErrInvalid) || escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("Publish = %v, want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), "HUGE") || !strings.Contains(err.Error(), "#2") || !strings.Contains(err.Error(), "2 of 3") {
		t.Fatalf("error %v does not name HUGE and #2", err)
	}
	if len(f.calls) != 1 || callIDs(t, f.calls[0]) != "R001" {
		t.Fatalf("sent %d calls, want R001 alone", len(f.calls))
	}
}

// Only the entries that failed are sent again, and once accepted Publish
// succeeds.
func TestRetryOnlyFailedEntries(t *testing.T) {
	f := &fakePut{respond: func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) {
		return accept(in, func(i int, e types.PutEventsRequestEntry) string {
			if n == 0 && (i == 2 || i == 5) {
				return "ThrottlingException"
			}
			if n == 0 && i == 7 {
				return "InternalFailure"
			}
			return ""
		}), nil
	}}
	s, ns := newSink(f, Options{Backoff: 40 * time.Millisecond})
	if err := s.Publish(context.Background(), records(12)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var got []string
	for _, c := range f.calls {
		got = append(got, callIDs(t, c))
	}
	want := []string{"R000,R001,R002,R003,R004,R005,R006,R007,R008,R009", "R002,R005,R007", "R010,R011"}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Fatalf("calls\n %s\nwant\n %s", strings.Join(got, " | "), strings.Join(want, " | "))
	}
	if len(ns.waits) != 1 || ns.waits[0] < 20*time.Millisecond || ns.waits[0] > 40*time.Millisecond {
		t.Fatalf("waits %v, want one in [20ms, 40ms]", ns.waits)
	}
}

// TestEntryErrors maps each per-entry ErrorCode: retryable codes are sent
// MaxAttempts times, others once, and the rest of the batch still goes.
func TestEntryErrors(t *testing.T) {
	for _, tc := range []struct {
		code  string
		calls int
		want  escrow.Code
		msg   string
	}{
		{"ThrottlingException", 3, escrow.CodeUnavailable, msgUnavailable},
		{"InternalFailure", 3, escrow.CodeUnavailable, msgUnavailable},
		{"AccessDeniedException", 1, escrow.CodeInternal, msgMisconfigured},
		{"NotAuthorizedForSourceException", 1, escrow.CodeInternal, msgMisconfigured},
		{"NotAuthorizedForDetailTypeException", 1, escrow.CodeInternal, msgMisconfigured},
		{"InvalidAccountIdException", 1, escrow.CodeInternal, msgMisconfigured},
		{"SomethingNewException", 1, escrow.CodeInternal, msgMisconfigured},
		{"InvalidArgument", 1, escrow.CodeInvalid, msgRefused},
		{"MalformedDetail", 1, escrow.CodeInvalid, msgRefused},
		{"RedactionFailure", 1, escrow.CodeInvalid, msgRefused},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f := &fakePut{respond: func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) {
				return accept(in, func(i int, e types.PutEventsRequestEntry) string {
					if detailID(t, e) == "R001" {
						return tc.code
					}
					return ""
				}), nil
			}}
			s, ns := newSink(f, Options{MaxAttempts: 3})
			err := s.Publish(context.Background(), records(3))
			if len(f.calls) != tc.calls || len(ns.waits) != tc.calls-1 {
				t.Fatalf("%d calls, %d waits; want %d, %d", len(f.calls), len(ns.waits), tc.calls, tc.calls-1)
			}
			checkErr(t, err, tc.want, tc.msg)
			if !strings.Contains(err.Error(), "R001") || !strings.Contains(err.Error(), tc.code) || !strings.Contains(err.Error(), "1 of 3") {
				t.Fatalf("error %v does not name R001 and %s", err, tc.code)
			}
			if len(f.calls[0]) != 3 {
				t.Fatalf("first call had %d entries", len(f.calls[0]))
			}
		})
	}
}

// The most actionable code wins when several entries fail differently.
func TestMixedEntryErrors(t *testing.T) {
	for _, tc := range []struct {
		codes []string
		want  escrow.Code
	}{
		{[]string{"MalformedDetail", "AccessDeniedException"}, escrow.CodeInternal},
		{[]string{"MalformedDetail", "AccessDeniedException", "ThrottlingException"}, escrow.CodeUnavailable},
		{[]string{"MalformedDetail", "InvalidArgument"}, escrow.CodeInvalid},
	} {
		f := &fakePut{respond: func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) {
			return accept(in, func(i int, e types.PutEventsRequestEntry) string {
				if i < len(tc.codes) {
					return tc.codes[i]
				}
				return ""
			}), nil
		}}
		s, _ := newSink(f, Options{MaxAttempts: 1})
		if err := s.Publish(context.Background(), records(5)); escrow.ErrorCode(err) != tc.want {
			t.Errorf("codes %v: Publish = %v, want %s", tc.codes, err, tc.want)
		}
	}
}

func TestOddAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  func(in []types.PutEventsRequestEntry) *eb.PutEventsOutput
	}{
		{"no event id", func(in []types.PutEventsRequestEntry) *eb.PutEventsOutput {
			out := accept(in, nil)
			out.Entries[1] = types.PutEventsResultEntry{}
			return out
		}},
		{"too few entries", func(in []types.PutEventsRequestEntry) *eb.PutEventsOutput {
			out := accept(in, nil)
			out.Entries = out.Entries[:1]
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePut{respond: func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) { return tc.out(in), nil }}
			s, _ := newSink(f, Options{})
			err := s.Publish(context.Background(), records(3))
			if escrow.ErrorCode(err) != escrow.CodeInternal {
				t.Fatalf("Publish = %v, want CodeInternal", err)
			}
			if len(f.calls) != 1 {
				t.Fatalf("%d calls, want 1", len(f.calls))
			}
		})
	}
}

// ctx ending while waiting to retry stops Publish as unavailable.
func TestCancelledWhileWaiting(t *testing.T) {
	f := &fakePut{respond: func(n int, in []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) {
		return accept(in, func(int, types.PutEventsRequestEntry) string { return "ThrottlingException" }), nil
	}}
	s, _ := newSink(f, Options{Sleep: func(ctx context.Context, d time.Duration) error { return context.DeadlineExceeded }})
	err := s.Publish(context.Background(), records(12))
	if !errors.Is(err, escrow.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish = %v, want ErrUnavailable wrapping the deadline", err)
	}
	if len(f.calls) != 1 {
		t.Fatalf("%d calls, want 1 (no later batch after the context ended)", len(f.calls))
	}
}

func TestWait(t *testing.T) {
	s := New(&fakePut{}, Options{Backoff: 100 * time.Millisecond})
	for attempt, max := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000} {
		max *= time.Millisecond
		for range 20 {
			if d := s.wait(attempt + 1); d < max/2 || d > max {
				t.Fatalf("wait(%d) = %v, want in [%v, %v]", attempt+1, d, max/2, max)
			}
		}
	}
	if d := New(&fakePut{}, Options{}).wait(1); d < DefaultBackoff/2 || d > DefaultBackoff {
		t.Fatalf("default wait %v", d)
	}
}

// opErr wraps e as the SDK does: an OperationError around an HTTP response
// error around the service error.
func opErr(e error, status int) error {
	return &smithy.OperationError{ServiceID: "EventBridge", OperationName: "PutEvents", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: e},
		RequestID:     "req-1",
	}}
}

func checkErr(t *testing.T, err error, want escrow.Code, msg string) {
	t.Helper()
	if got := escrow.ErrorCode(err); got != want {
		t.Fatalf("code = %q (%v), want %q", got, err, want)
	}
	var e *escrow.Error
	if !errors.As(err, &e) || e.Message != msg {
		t.Fatalf("message of %v, want %q", err, msg)
	}
	for _, sentinel := range []*escrow.Error{escrow.ErrUnavailable, escrow.ErrInvalid, escrow.ErrInternal} {
		if errors.Is(err, sentinel) != (sentinel.Code == want) {
			t.Fatalf("errors.Is(%v, %s) is wrong", err, sentinel.Code)
		}
	}
	if strings.Contains(err.Error(), secretish) {
		t.Fatalf("error %v holds a record's contents", err)
	}
}

// TestConvertError maps the errors of a whole PutEvents call.
func TestConvertError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want escrow.Code
		msg  string
	}{
		{"throttling", opErr(&types.ThrottlingException{}, 400), escrow.CodeUnavailable, msgUnavailable},
		{"throttling by code", opErr(&smithy.GenericAPIError{Code: "ThrottlingException"}, 400), escrow.CodeUnavailable, msgUnavailable},
		{"internal exception", opErr(&types.InternalException{}, 500), escrow.CodeUnavailable, msgUnavailable},
		{"internal failure", opErr(&smithy.GenericAPIError{Code: "InternalFailure"}, 500), escrow.CodeUnavailable, msgUnavailable},
		{"service unavailable", opErr(&smithy.GenericAPIError{Code: "ServiceUnavailable"}, 503), escrow.CodeUnavailable, msgUnavailable},
		{"unknown 502", opErr(&smithy.GenericAPIError{Code: "BadGateway"}, 502), escrow.CodeUnavailable, msgUnavailable},
		{"unknown 429", opErr(&smithy.GenericAPIError{Code: "SlowDown"}, 429), escrow.CodeUnavailable, msgUnavailable},
		{"network", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}, escrow.CodeUnavailable, msgUnavailable},
		{"deadline", &smithy.OperationError{Err: context.DeadlineExceeded}, escrow.CodeUnavailable, msgUnavailable},
		{"cancelled", &smithy.OperationError{Err: context.Canceled}, escrow.CodeUnavailable, msgUnavailable},
		{"no answer", &smithy.OperationError{Err: errors.New("failed to retrieve credentials")}, escrow.CodeUnavailable, msgUnavailable},
		{"bus missing", opErr(&types.ResourceNotFoundException{Message: aws.String("Event bus audit does not exist.")}, 400), escrow.CodeInternal, msgMisconfigured},
		{"access denied", opErr(&smithy.GenericAPIError{Code: "AccessDeniedException"}, 400), escrow.CodeInternal, msgMisconfigured},
		{"bad credentials", opErr(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}, 400), escrow.CodeInternal, msgMisconfigured},
		{"validation", opErr(&smithy.GenericAPIError{Code: "ValidationException"}, 400), escrow.CodeInternal, msgMisconfigured},
		{"invalid params", &smithy.OperationError{Err: smithy.InvalidParamsError{Context: "PutEventsInput"}}, escrow.CodeInternal, msgError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePut{respond: func(int, []types.PutEventsRequestEntry) (*eb.PutEventsOutput, error) { return nil, tc.err }}
			s, _ := newSink(f, Options{})
			err := s.Publish(context.Background(), records(15))
			if len(f.calls) != 1 {
				t.Fatalf("PutEvents called %d times, want 1 (stop at a failed call)", len(f.calls))
			}
			checkErr(t, err, tc.want, tc.msg)
			if !errors.Is(err, tc.err) {
				t.Fatalf("%v does not keep the SDK error as its cause", err)
			}
		})
	}
	if convertError(nil) != nil {
		t.Fatal("convertError(nil) != nil")
	}
}

func TestEntryCode(t *testing.T) {
	for code, want := range map[string]struct {
		code  escrow.Code
		retry bool
	}{
		"InternalFailure":                     {escrow.CodeUnavailable, true},
		"ThrottlingException":                 {escrow.CodeUnavailable, true},
		"AccessDeniedException":               {escrow.CodeInternal, false},
		"InvalidAccountIdException":           {escrow.CodeInternal, false},
		"NotAuthorizedForSourceException":     {escrow.CodeInternal, false},
		"NotAuthorizedForDetailTypeException": {escrow.CodeInternal, false},
		"InvalidArgument":                     {escrow.CodeInvalid, false},
		"MalformedDetail":                     {escrow.CodeInvalid, false},
		"RedactionFailure":                    {escrow.CodeInvalid, false},
		"Unheard":                             {escrow.CodeInternal, false},
	} {
		if got := entryCode(code); got != want.code {
			t.Errorf("entryCode(%s) = %s, want %s", code, got, want.code)
		}
		if got := retryable(code); got != want.retry {
			t.Errorf("retryable(%s) = %v", code, got)
		}
	}
}
