package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Client-safe messages. The SDK error stays in the chain as the internal
// cause, for the log.
const (
	msgConflict    = "the item changed or already exists; reload and retry"
	msgUnavailable = "the store is unavailable; retry later"
)

// convertError translates an SDK error of operation op into an escrow error,
// in this one place:
//   - a failed condition (alone or inside a transaction), a transaction
//     conflict, a reused idempotency token -> ErrConflict;
//   - throttling, limits, 5xx, network failures, a cancelled context ->
//     ErrUnavailable;
//   - a missing table or index -> ErrUnavailable too (to the caller the store
//     is down), with "misconfigured" in the cause so the log says why;
//   - a ValidationException, and anything unknown -> internal (a bug here).
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
	if code := classify(err); code != "" {
		switch code {
		case escrow.CodeConflict:
			return escrow.Wrap(code, cause, msgConflict)
		case escrow.CodeUnavailable:
			var rnf *types.ResourceNotFoundException
			if errors.As(err, &rnf) {
				cause = fmt.Errorf("%s: store misconfigured (table or index missing): %w", op, err)
			}
			return escrow.Wrap(code, cause, msgUnavailable)
		}
		return escrow.Wrap(code, cause, "")
	}
	return escrow.Wrap(escrow.CodeInternal, cause, "")
}

// classify returns the escrow code of an SDK error, or "" if unknown.
func classify(err error) escrow.Code {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return escrow.CodeUnavailable
	}
	var (
		ccf *types.ConditionalCheckFailedException
		tce *types.TransactionCanceledException
		tcx *types.TransactionConflictException
		ipm *types.IdempotentParameterMismatchException
		rnf *types.ResourceNotFoundException
		pte *types.ProvisionedThroughputExceededException
		rle *types.RequestLimitExceeded
		thr *types.ThrottlingException
		ise *types.InternalServerError
		lim *types.LimitExceededException
		tip *types.TransactionInProgressException
	)
	switch {
	case errors.As(err, &ccf), errors.As(err, &tcx), errors.As(err, &ipm):
		return escrow.CodeConflict
	case errors.As(err, &tce):
		return classifyCancel(tce.CancellationReasons)
	case errors.As(err, &rnf), errors.As(err, &pte), errors.As(err, &rle), errors.As(err, &thr),
		errors.As(err, &ise), errors.As(err, &lim), errors.As(err, &tip):
		return escrow.CodeUnavailable
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ValidationException", "SerializationException":
			return escrow.CodeInternal
		case "ConditionalCheckFailedException", "TransactionConflictException":
			return escrow.CodeConflict
		case "ThrottlingException", "Throttling", "RequestThrottled", "RequestLimitExceeded",
			"ProvisionedThroughputExceededException", "ServiceUnavailable", "InternalFailure",
			"InternalServerError":
			return escrow.CodeUnavailable
		}
		if api.ErrorFault() == smithy.FaultServer {
			return escrow.CodeUnavailable
		}
	}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		return escrow.CodeUnavailable
	}
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &send) || errors.As(err, &netErr) {
		return escrow.CodeUnavailable
	}
	return ""
}

// classifyCancel maps the reasons of a cancelled transaction. DynamoDB gives
// one reason per item, "None" for those that were fine. A validation error
// is our bug and wins; then a failed condition or a racing transaction is a
// conflict; then throttling is unavailability.
func classifyCancel(reasons []types.CancellationReason) escrow.Code {
	var conflict, throttled bool
	for _, r := range reasons {
		switch aws.ToString(r.Code) {
		case "ValidationError":
			return escrow.CodeInternal
		case "ConditionalCheckFailed", "TransactionConflict", "DuplicateItem":
			conflict = true
		case "ProvisionedThroughputExceeded", "ThrottlingError", "RequestLimitExceeded":
			throttled = true
		}
	}
	switch {
	case conflict:
		return escrow.CodeConflict
	case throttled:
		return escrow.CodeUnavailable
	}
	return escrow.CodeInternal
}

// nothingToDelete reports whether err, from commit, is a transaction
// cancelled because its item i, a Delete whose condition asked for
// ReturnValuesOnConditionCheckFailure ALL_OLD, failed its condition with
// no old item: DynamoDB returns the old item of a failed condition only if
// there is one, so the item was missing (ErrNotFound) rather than changed
// (ErrConflict). Errors that convertError did not make a conflict are left
// alone.
func nothingToDelete(err error, i int) bool {
	var tce *types.TransactionCanceledException
	if escrow.ErrorCode(err) != escrow.CodeConflict || !errors.As(err, &tce) || i >= len(tce.CancellationReasons) {
		return false
	}
	r := tce.CancellationReasons[i]
	return aws.ToString(r.Code) == "ConditionalCheckFailed" && len(r.Item) == 0
}
