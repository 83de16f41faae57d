package ses

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

// fakeSend fakes the one call SES makes, recording its inputs.
type fakeSend struct {
	API
	err error
	in  []*sesv2.SendEmailInput
}

func (f *fakeSend) SendEmail(ctx context.Context, in *sesv2.SendEmailInput, _ ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	f.in = append(f.in, in)
	if f.err != nil {
		return nil, f.err
	}
	return &sesv2.SendEmailOutput{MessageId: aws.String("ses-1")}, nil
}

// opErr wraps e as the SDK does: an OperationError around an HTTP response
// error around the service error.
func opErr(e error, status int) error {
	return &smithy.OperationError{ServiceID: "SESv2", OperationName: "SendEmail", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: e},
		RequestID:     "req-1",
	}}
}

func message() notify.Message {
	return notify.Message{
		ID:      "01JDX9V7M3Q8K2ZB4W6Y5T0R1S",
		To:      []string{"bob@example.com"},
		Subject: "Approval requested",
		Text:    "Decide: https://escrow.example.com/decide/SECRET-LINK-ID",
		Kind:    "approval.request",
		Ref:     "REQ1",
		Time:    time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
}

func TestConvertError(t *testing.T) {
	const (
		unavailable  = "mail service unavailable"
		misconfig    = "mail service misconfigured"
		serviceError = "mail service error"
	)
	for _, tc := range []struct {
		name string
		err  error
		want escrow.Code
		msg  string
	}{
		{"too many requests", opErr(&types.TooManyRequestsException{}, 429), escrow.CodeUnavailable, unavailable},
		{"throttling", opErr(&smithy.GenericAPIError{Code: "ThrottlingException"}, 400), escrow.CodeUnavailable, unavailable},
		{"sending quota", opErr(&types.LimitExceededException{}, 400), escrow.CodeUnavailable, unavailable},
		{"account suspended", opErr(&types.AccountSuspendedException{}, 400), escrow.CodeUnavailable, unavailable},
		{"sending paused", opErr(&types.SendingPausedException{}, 400), escrow.CodeUnavailable, unavailable},
		{"internal service error", opErr(&types.InternalServiceErrorException{}, 500), escrow.CodeUnavailable, unavailable},
		{"unknown 503", opErr(&smithy.GenericAPIError{Code: "UnknownError"}, 503), escrow.CodeUnavailable, unavailable},
		{"unknown 429", opErr(&smithy.GenericAPIError{Code: "SlowDown"}, 429), escrow.CodeUnavailable, unavailable},
		{"network", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}, escrow.CodeUnavailable, unavailable},
		{"deadline", &smithy.OperationError{Err: context.DeadlineExceeded}, escrow.CodeUnavailable, unavailable},
		{"bad request", opErr(&types.BadRequestException{}, 400), escrow.CodeInvalid, "mail refused as malformed"},
		{"message rejected", opErr(&types.MessageRejected{Message: aws.String("Email address is not verified.")}, 400), escrow.CodeInternal, misconfig},
		{"mail from not verified", opErr(&types.MailFromDomainNotVerifiedException{}, 400), escrow.CodeInternal, misconfig},
		{"no configuration set", opErr(&types.NotFoundException{}, 404), escrow.CodeInternal, misconfig},
		{"access denied", opErr(&smithy.GenericAPIError{Code: "AccessDeniedException"}, 403), escrow.CodeInternal, serviceError},
		{"invalid params", &smithy.OperationError{Err: smithy.InvalidParamsError{Context: "SendEmailInput"}}, escrow.CodeInternal, serviceError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSend{err: tc.err}
			err := New(f, "escrow@example.com", "").Send(context.Background(), message())
			if len(f.in) != 1 {
				t.Fatalf("SendEmail called %d times, want 1", len(f.in))
			}
			if got := escrow.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q (%v), want %q", got, err, tc.want)
			}
			var e *escrow.Error
			if !errors.As(err, &e) || e.Message != tc.msg {
				t.Fatalf("message of %v, want %q", err, tc.msg)
			}
			if errors.Is(err, escrow.ErrUnavailable) != (tc.want == escrow.CodeUnavailable) {
				t.Fatalf("errors.Is(%v, ErrUnavailable) is wrong", err)
			}
			if errors.Is(err, escrow.ErrInvalid) != (tc.want == escrow.CodeInvalid) {
				t.Fatalf("errors.Is(%v, ErrInvalid) is wrong", err)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("%v does not keep the SDK error as its cause", err)
			}
			if strings.Contains(err.Error(), "SECRET-LINK-ID") {
				t.Fatalf("error %v holds the body", err)
			}
		})
	}
	if convertError(nil) != nil {
		t.Fatal("convertError(nil) != nil")
	}
}

// TestInput checks what moto cannot show: both bodies, the charsets, the
// kind header and tags, and the configuration set.
func TestInput(t *testing.T) {
	f := &fakeSend{}
	m := message()
	m.To = []string{"bob@example.com", "Jörg Müller <joerg@example.com>"}
	m.HTML = "<p>Decide</p>"
	if err := New(f, "Escrow <escrow@example.com>", "escrow-mail").Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	in := f.in[0]
	if got := aws.ToString(in.FromEmailAddress); got != `"Escrow" <escrow@example.com>` {
		t.Errorf("from = %q", got)
	}
	if got := in.Destination.ToAddresses; len(got) != 2 || got[0] != "bob@example.com" || got[1] != "=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>" {
		t.Errorf("to = %q: want the bare address kept and the display name encoded", got)
	}
	if len(in.Destination.CcAddresses)+len(in.Destination.BccAddresses) != 0 {
		t.Errorf("cc/bcc set: %+v", in.Destination)
	}
	if aws.ToString(in.ConfigurationSetName) != "escrow-mail" {
		t.Errorf("configuration set = %q", aws.ToString(in.ConfigurationSetName))
	}
	if in.Content.Raw != nil || in.Content.Template != nil || in.Content.Simple == nil {
		t.Fatalf("content is not Simple: %+v", in.Content)
	}
	s := in.Content.Simple
	for _, c := range []struct {
		name string
		got  *types.Content
		want string
	}{{"subject", s.Subject, m.Subject}, {"text", s.Body.Text, m.Text}, {"html", s.Body.Html, m.HTML}} {
		if c.got == nil || aws.ToString(c.got.Data) != c.want || aws.ToString(c.got.Charset) != "UTF-8" {
			t.Errorf("%s = %+v, want %q in UTF-8", c.name, c.got, c.want)
		}
	}
	headers := map[string]string{}
	for _, h := range s.Headers {
		headers[aws.ToString(h.Name)] = aws.ToString(h.Value)
	}
	if headers[HeaderKind] != "approval.request" || headers[HeaderRef] != "REQ1" || len(headers) != 2 {
		t.Errorf("headers = %v", headers)
	}
	tags := map[string]string{}
	for _, tg := range in.EmailTags {
		tags[aws.ToString(tg.Name)] = aws.ToString(tg.Value)
	}
	if tags[TagKind] != "approval_request" || tags[TagID] != m.ID || len(tags) != 2 {
		t.Errorf("tags = %v: want kind (with '.' as '_') and id", tags)
	}
}

// TestInputMinimal: no HTML, no ref, no configuration set means none sent.
func TestInputMinimal(t *testing.T) {
	f := &fakeSend{}
	m := message()
	m.Ref = ""
	if err := New(f, "escrow@example.com", "").Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	in := f.in[0]
	if in.Content.Simple.Body.Html != nil {
		t.Error("an HTML part was sent for a text-only message")
	}
	if in.ConfigurationSetName != nil {
		t.Errorf("configuration set = %q, want none", aws.ToString(in.ConfigurationSetName))
	}
	if aws.ToString(in.FromEmailAddress) != "escrow@example.com" {
		t.Errorf("from = %q", aws.ToString(in.FromEmailAddress))
	}
	if len(in.Content.Simple.Headers) != 1 {
		t.Errorf("headers = %+v, want the kind only", in.Content.Simple.Headers)
	}
}

// Nothing reaches SES for an invalid message or a bad sender.
func TestRefusedBeforeSES(t *testing.T) {
	f := &fakeSend{}
	bad := message()
	bad.Subject = "hi\r\nBcc: evil@example.com"
	if err := New(f, "escrow@example.com", "").Send(context.Background(), bad); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("Send of a header injection = %v, want ErrInvalid", err)
	}
	for _, from := range []string{"", "not-an-address", "escrow@example.com\r\nBcc: evil@example.com"} {
		err := New(f, from, "").Send(context.Background(), message())
		if code := escrow.ErrorCode(err); code != escrow.CodeInternal {
			t.Fatalf("Send from %q = %v, want code %q", from, err, escrow.CodeInternal)
		}
	}
	if len(f.in) != 0 {
		t.Fatalf("SendEmail called %d times, want 0", len(f.in))
	}
}
