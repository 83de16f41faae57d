package kms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// fakeDecrypt fakes the one call under test; any other call panics on the
// nil embedded interface.
type fakeDecrypt struct {
	API
	err error
	in  *kms.DecryptInput
}

func (f *fakeDecrypt) Decrypt(ctx context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	f.in = in
	return nil, f.err
}

// opErr wraps e as the SDK does: an OperationError around an HTTP response
// error around the service error.
func opErr(e error, status int) error {
	return &smithy.OperationError{ServiceID: "KMS", OperationName: "Decrypt", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: e},
		RequestID:     "req-1",
	}}
}

func TestConvertError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want escrow.Code
		msg  string
	}{
		{"invalid ciphertext", opErr(&types.InvalidCiphertextException{Message: aws.String("x")}, 400), escrow.CodeInternal, "decrypt data key"},
		{"incorrect key", opErr(&types.IncorrectKeyException{}, 400), escrow.CodeInternal, "decrypt data key"},
		{"kms internal", opErr(&types.KMSInternalException{}, 500), escrow.CodeUnavailable, "key service unavailable"},
		{"throttling", opErr(&smithy.GenericAPIError{Code: "ThrottlingException"}, 400), escrow.CodeUnavailable, "key service unavailable"},
		{"limit exceeded", opErr(&types.LimitExceededException{}, 400), escrow.CodeUnavailable, "key service unavailable"},
		{"disabled", opErr(&types.DisabledException{}, 400), escrow.CodeUnavailable, "key service unavailable"},
		{"key unavailable", opErr(&types.KeyUnavailableException{}, 500), escrow.CodeUnavailable, "key service unavailable"},
		{"not found", opErr(&types.NotFoundException{}, 400), escrow.CodeUnavailable, "key service unavailable"},
		{"invalid state", opErr(&types.KMSInvalidStateException{}, 400), escrow.CodeUnavailable, "key service unavailable"},
		{"dependency timeout", opErr(&types.DependencyTimeoutException{}, 500), escrow.CodeUnavailable, "key service unavailable"},
		{"unknown 503", opErr(&smithy.GenericAPIError{Code: "UnknownError"}, 503), escrow.CodeUnavailable, "key service unavailable"},
		{"network", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}, escrow.CodeUnavailable, "key service unavailable"},
		{"deadline", &smithy.OperationError{Err: context.DeadlineExceeded}, escrow.CodeUnavailable, "key service unavailable"},
		{"access denied", opErr(&smithy.GenericAPIError{Code: "AccessDeniedException"}, 400), escrow.CodeInternal, "key service error"},
		{"invalid key usage", opErr(&types.InvalidKeyUsageException{}, 400), escrow.CodeInternal, "key service error"},
		{"invalid params", &smithy.OperationError{Err: smithy.InvalidParamsError{Context: "DecryptInput"}}, escrow.CodeInternal, "key service error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDecrypt{err: tc.err}
			encCtx := map[string]string{"escrow:secret": "s"}
			_, err := New(f, "alias/escrow").Decrypt(context.Background(), []byte("blob"), encCtx)
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
			if !errors.Is(err, tc.err) {
				t.Fatalf("%v does not keep the SDK error as its cause", err)
			}
			if aws.ToString(f.in.KeyId) != "alias/escrow" || f.in.EncryptionContext["escrow:secret"] != "s" {
				t.Fatalf("Decrypt input: key %q context %v; want the key id and context passed", aws.ToString(f.in.KeyId), f.in.EncryptionContext)
			}
		})
	}
	if convertError(nil) != nil {
		t.Fatal("convertError(nil) != nil")
	}
}
