package s3store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Client-safe messages. The SDK error stays in the chain as the internal
// cause, for the log.
const (
	msgConflict     = "the audit digest exists"
	msgNotFound     = "audit digest not found"
	msgUnavailable  = "the digest store is unavailable; retry later"
	msgAccessDenied = "the digest store refused access; check the IAM and bucket policies"
)

// S3 error codes of a conditional write. S3 errors without a modeled type
// reach the SDK as a smithy.GenericAPIError holding the code.
const (
	codeConditionalRequestConflict = "ConditionalRequestConflict"
	codePreconditionFailed         = "PreconditionFailed"
)

// convertError translates an SDK error of operation op into an escrow error,
// in this one place:
//   - 412 PreconditionFailed (If-None-Match found the key) and 409
//     ConditionalRequestConflict (a racing write of the key) -> ErrConflict;
//   - NoSuchKey, NotFound -> ErrNotFound;
//   - access denied, bad or expired credentials -> ErrUnavailable, with
//     "access denied" in the cause and msgAccessDenied for the caller;
//   - a missing bucket -> ErrUnavailable, with "misconfigured" in the cause;
//   - throttling (SlowDown), 5xx, timeouts, network failures, a cancelled
//     context, an archived object -> ErrUnavailable;
//   - a malformed request (InvalidRequest, InvalidArgument, ...) and anything
//     unknown -> internal (a bug here).
//
// Errors that already carry an escrow code keep it.
func convertError(op string, err error) error {
	if err == nil {
		return nil
	}
	cause := fmt.Errorf("%s: %w", op, err)
	var ee *escrow.Error
	if errors.As(err, &ee) {
		return cause
	}
	switch classify(err) {
	case kindConflict:
		return escrow.Wrap(escrow.CodeConflict, cause, msgConflict)
	case kindNotFound:
		return escrow.Wrap(escrow.CodeNotFound, cause, msgNotFound)
	case kindAccessDenied:
		cause = fmt.Errorf("%s: access denied to the digest bucket (does the role have s3:PutObject, s3:GetObject and s3:ListBucket on it, and does no bucket policy or KMS key policy deny it?): %w", op, err)
		return escrow.Wrap(escrow.CodeUnavailable, cause, msgAccessDenied)
	case kindMisconfigured:
		cause = fmt.Errorf("%s: digest store misconfigured (bucket missing): %w", op, err)
		return escrow.Wrap(escrow.CodeUnavailable, cause, msgUnavailable)
	case kindUnavailable:
		return escrow.Wrap(escrow.CodeUnavailable, cause, msgUnavailable)
	}
	return escrow.Wrap(escrow.CodeInternal, cause, "")
}

type kind int

const (
	kindUnknown kind = iota
	kindConflict
	kindNotFound
	kindAccessDenied
	kindMisconfigured
	kindUnavailable
)

// classify sorts an SDK error by what the caller can do about it.
func classify(err error) kind {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return kindUnavailable
	}
	var (
		nsk *types.NoSuchKey
		nf  *types.NotFound
		nsb *types.NoSuchBucket
		ad  *types.AccessDenied
		ios *types.InvalidObjectState
	)
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf):
		return kindNotFound
	case errors.As(err, &nsb):
		return kindMisconfigured
	case errors.As(err, &ad):
		return kindAccessDenied
	case errors.As(err, &ios):
		// An object moved to an archive storage class needs a restore.
		return kindUnavailable
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case codePreconditionFailed, codeConditionalRequestConflict:
			return kindConflict
		case "NoSuchKey", "NotFound":
			return kindNotFound
		case "NoSuchBucket":
			return kindMisconfigured
		case "AccessDenied", "Forbidden", "AllAccessDisabled", "AccountProblem",
			"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
			"TokenRefreshRequired", "KMS.AccessDeniedException":
			return kindAccessDenied
		case "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
			"ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
			"OperationAborted", "BadDigest", "XAmzContentSHA256Mismatch", "InvalidObjectState":
			// BadDigest and XAmzContentSHA256Mismatch: the body changed in
			// transit, so a retry may succeed.
			return kindUnavailable
		}
		if api.ErrorFault() == smithy.FaultServer {
			return kindUnavailable
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) {
		switch code := resp.HTTPStatusCode(); {
		case code == http.StatusPreconditionFailed:
			return kindConflict
		case code == http.StatusForbidden:
			return kindAccessDenied
		case code == http.StatusTooManyRequests, code >= 500:
			return kindUnavailable
		}
	}
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &send) || errors.As(err, &netErr) {
		return kindUnavailable
	}
	return kindUnknown
}

// isCode reports whether err is an S3 API error with code.
func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}
