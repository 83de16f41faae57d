package s3store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// sdkErr wraps err the way the SDK returns an error of operation op that
// S3 answered with HTTP status (0: no response, as for a network failure).
func sdkErr(op string, status int, err error) error {
	if status != 0 {
		err = &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      err,
			},
			RequestID: "REQ1",
		}
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: err}
}

func apiErr(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "S3 says " + code}
}

var errorCases = []struct {
	name   string
	status int
	err    error
	want   escrow.Code
	detail string // in the error (the cause, for the log)
}{
	{"key exists", 412, apiErr("PreconditionFailed"), escrow.CodeConflict, ""},
	{"racing conditional write", 409, apiErr("ConditionalRequestConflict"), escrow.CodeConflict, ""},
	{"412 without a code", 412, apiErr("UnknownError"), escrow.CodeConflict, ""},
	{"no such key", 404, &types.NoSuchKey{}, escrow.CodeNotFound, ""},
	{"no such key, generic", 404, apiErr("NoSuchKey"), escrow.CodeNotFound, ""},
	{"not found (HEAD)", 404, &types.NotFound{}, escrow.CodeNotFound, ""},
	{"no such bucket", 404, &types.NoSuchBucket{}, escrow.CodeUnavailable, "misconfigured"},
	{"no such bucket, generic", 404, apiErr("NoSuchBucket"), escrow.CodeUnavailable, "misconfigured"},
	{"access denied", 403, apiErr("AccessDenied"), escrow.CodeUnavailable, "access denied"},
	{"access denied, typed", 403, &types.AccessDenied{}, escrow.CodeUnavailable, "access denied"},
	{"403 without a code", 403, apiErr("UnknownError"), escrow.CodeUnavailable, "access denied"},
	{"unknown access key", 403, apiErr("InvalidAccessKeyId"), escrow.CodeUnavailable, "access denied"},
	{"expired token", 400, apiErr("ExpiredToken"), escrow.CodeUnavailable, "access denied"},
	{"bad signature", 403, apiErr("SignatureDoesNotMatch"), escrow.CodeUnavailable, "access denied"},
	{"KMS key denied", 403, apiErr("KMS.AccessDeniedException"), escrow.CodeUnavailable, "access denied"},
	{"slow down", 503, apiErr("SlowDown"), escrow.CodeUnavailable, ""},
	{"internal error", 500, apiErr("InternalError"), escrow.CodeUnavailable, ""},
	{"service unavailable", 503, apiErr("ServiceUnavailable"), escrow.CodeUnavailable, ""},
	{"request timeout", 400, apiErr("RequestTimeout"), escrow.CodeUnavailable, ""},
	{"clock skew", 403, apiErr("RequestTimeTooSkewed"), escrow.CodeUnavailable, ""},
	{"operation aborted", 409, apiErr("OperationAborted"), escrow.CodeUnavailable, ""},
	{"body damaged in transit", 400, apiErr("BadDigest"), escrow.CodeUnavailable, ""},
	{"archived object", 403, &types.InvalidObjectState{}, escrow.CodeUnavailable, ""},
	{"unknown server fault", 0, &smithy.GenericAPIError{Code: "Odd", Fault: smithy.FaultServer}, escrow.CodeUnavailable, ""},
	{"http 502", 502, apiErr("UnknownError"), escrow.CodeUnavailable, ""},
	{"http 429", 429, apiErr("UnknownError"), escrow.CodeUnavailable, ""},
	{"invalid request", 400, &types.InvalidRequest{}, escrow.CodeInternal, ""},
	{"invalid argument", 400, apiErr("InvalidArgument"), escrow.CodeInternal, ""},
	{"missing checksum", 400, apiErr("MissingUploadObjectWithObjectLockHeaders"), escrow.CodeInternal, ""},
	{"unknown client fault", 0, &smithy.GenericAPIError{Code: "Odd", Fault: smithy.FaultClient}, escrow.CodeInternal, ""},
	{"network", 0, &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, escrow.CodeUnavailable, ""},
	{"deadline", 0, context.DeadlineExceeded, escrow.CodeUnavailable, ""},
	{"cancelled", 0, context.Canceled, escrow.CodeUnavailable, ""},
	{"unknown", 0, errors.New("boom"), escrow.CodeInternal, ""},
	{"already coded", 0, escrow.Errorf(escrow.CodeNotFound, "gone"), escrow.CodeNotFound, ""},
}

func TestConvertError(t *testing.T) {
	if convertError("op", nil) != nil {
		t.Fatal("convertError(nil) != nil")
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			err := convertError("do thing", sdkErr("PutObject", tc.status, tc.err))
			if got := escrow.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the SDK error is not in the chain of %v", err)
			}
			if !strings.Contains(err.Error(), "do thing") || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not name the operation and %q", err, tc.detail)
			}
		})
	}
	if msg := escrow.ErrorMessage(convertError("get", sdkErr("GetObject", 403, apiErr("AccessDenied")))); msg != msgAccessDenied {
		t.Errorf("access denied reads %q to the caller, want %q", msg, msgAccessDenied)
	}
	if msg := escrow.ErrorMessage(convertError("get", errors.New("secret detail"))); strings.Contains(msg, "secret detail") {
		t.Errorf("client message %q leaks the internal cause", msg)
	}
}

// fake answers ListObjectsV2 with one digest key and GetObject with a body,
// fails the call named fail with err, and records the PutObject inputs.
// Any other call goes to the embedded nil API and panics.
type fake struct {
	API
	fail string
	errs []error // returned by successive calls of fail; the last repeats
	body io.Reader
	puts []*s3.PutObjectInput
}

func (f *fake) next(op string) error {
	if f.fail != op || len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	if len(f.errs) > 1 {
		f.errs = f.errs[1:]
	}
	return err
}

func (f *fake) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	f.puts = append(f.puts, in)
	if err := f.next("PutObject"); err != nil {
		return nil, err
	}
	return &s3.PutObjectOutput{}, nil
}

func (f *fake) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, o ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if err := f.next("ListObjectsV2"); err != nil {
		return nil, err
	}
	return &s3.ListObjectsV2Output{Contents: []types.Object{{Key: aws.String(Key(0))}}}, nil
}

func (f *fake) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if err := f.next("GetObject"); err != nil {
		return nil, err
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(f.body)}, nil
}

// TestErrorMapping runs every operation of the store against an API that
// fails one call, for each error: the mapping holds on every path, not just
// in convertError.
func TestErrorMapping(t *testing.T) {
	ctx := t.Context()
	sd := seal(t, 1)[0]
	ops := []struct {
		call string
		run  func(s *Store) error
	}{
		{"PutObject", func(s *Store) error { return s.Put(ctx, sd) }},
		{"ListObjectsV2", func(s *Store) error { _, err := s.Latest(ctx); return err }},
		{"GetObject", func(s *Store) error { _, err := s.Latest(ctx); return err }},
		{"ListObjectsV2", func(s *Store) error { _, err := s.Range(ctx, time.Time{}, time.Time{}); return err }},
		{"GetObject", func(s *Store) error { _, err := s.Range(ctx, time.Time{}, time.Time{}); return err }},
		{"GetObject", func(s *Store) error { _, err := s.Range(ctx, sd.From, time.Time{}); return err }},
	}
	for _, tc := range errorCases {
		for _, op := range ops {
			s := New(&fake{fail: op.call, errs: []error{sdkErr(op.call, tc.status, tc.err)}}, "b")
			if got := escrow.ErrorCode(op.run(s)); got != tc.want {
				t.Errorf("%s via %s: code %q, want %q", tc.name, op.call, got, tc.want)
			}
		}
	}
}

// TestBrokenBody: a body that breaks off (or fails the SDK's checksum check)
// is a transport failure, not a malformed digest.
func TestBrokenBody(t *testing.T) {
	s := New(&fake{body: iotest.ErrReader(io.ErrUnexpectedEOF)}, "b")
	if _, err := s.Latest(t.Context()); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Latest with a broken body = %v, want ErrUnavailable", err)
	}
}

// TestPutRequest: Put is a conditional write with an integrity checksum,
// and sets no Object Lock of its own (the bucket's default applies).
func TestPutRequest(t *testing.T) {
	f := &fake{}
	sd := seal(t, 1)[0]
	if err := New(f, "bucket").Put(t.Context(), sd); err != nil {
		t.Fatal(err)
	}
	if len(f.puts) != 1 {
		t.Fatalf("%d PutObject calls, want 1", len(f.puts))
	}
	in := f.puts[0]
	want, _ := sd.Marshal()
	body, _ := io.ReadAll(in.Body)
	switch {
	case aws.ToString(in.Bucket) != "bucket" || aws.ToString(in.Key) != Key(sd.Seq):
		t.Errorf("put to %s/%s, want bucket/%s", aws.ToString(in.Bucket), aws.ToString(in.Key), Key(sd.Seq))
	case aws.ToString(in.IfNoneMatch) != "*":
		t.Errorf("IfNoneMatch %q, want *", aws.ToString(in.IfNoneMatch))
	case in.ChecksumAlgorithm != types.ChecksumAlgorithmSha256:
		t.Errorf("ChecksumAlgorithm %q, want SHA256", in.ChecksumAlgorithm)
	case in.ObjectLockMode != "" || in.ObjectLockRetainUntilDate != nil || in.ObjectLockLegalHoldStatus != "":
		t.Errorf("Put sets its own Object Lock: %q, %v, %q", in.ObjectLockMode, in.ObjectLockRetainUntilDate, in.ObjectLockLegalHoldStatus)
	case string(body) != string(want):
		t.Errorf("body %q, want the digest's Marshal", body)
	}
}

// TestPutRetriesConditionalConflict: a 409 (another write of the key in
// flight) is retried, so it ends as the 412 or the success that follows it,
// and reads as a conflict only when it persists.
func TestPutRetriesConditionalConflict(t *testing.T) {
	sd := seal(t, 1)[0]
	conflict409 := sdkErr("PutObject", 409, apiErr("ConditionalRequestConflict"))
	exists412 := sdkErr("PutObject", 412, apiErr("PreconditionFailed"))
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		want      escrow.Code
	}{
		{"412", []error{exists412}, 1, escrow.CodeConflict},
		{"409 then 412", []error{conflict409, exists412}, 2, escrow.CodeConflict},
		{"409 then stored", []error{conflict409, nil}, 2, ""},
		{"409 persists", []error{conflict409}, putAttempts, escrow.CodeConflict},
		{"503 is not retried here (the SDK retries it)", []error{sdkErr("PutObject", 503, apiErr("SlowDown"))}, 1, escrow.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{fail: "PutObject", errs: tt.errs}
			err := New(f, "b").Put(t.Context(), sd)
			if got := escrow.ErrorCode(err); got != tt.want {
				t.Errorf("Put = %v, want code %q", err, tt.want)
			}
			if len(f.puts) != tt.wantCalls {
				t.Errorf("%d PutObject calls, want %d", len(f.puts), tt.wantCalls)
			}
		})
	}
}
