// Package sfn is the Workflow port on AWS Step Functions: it starts an
// access request's execution and answers task tokens. It must never log a
// task token (a capability) nor put one in an error.
package sfn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// API is the part of the Step Functions client this adapter uses.
type API interface {
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, opts ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	SendTaskSuccess(ctx context.Context, in *sfn.SendTaskSuccessInput, opts ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
}

// Workflow starts executions of one state machine.
type Workflow struct {
	client  API
	machine string // state machine ARN
}

var (
	_ escrow.Workflow         = (*Workflow)(nil)
	_ escrow.CheckoutWorkflow = (*Workflow)(nil)
)

// New returns a Workflow for a state machine's ARN: the access-request
// machine's for StartRequest, the checkout machine's for StartCheckout.
func New(client API, stateMachineARN string) *Workflow {
	return &Workflow{client: client, machine: stateMachineARN}
}

// StartRequest starts the execution named "request-<id>".
func (w *Workflow) StartRequest(ctx context.Context, requestID string, pending time.Duration) error {
	in, err := json.Marshal(escrow.NewRequestWorkflowInput(requestID, pending))
	if err != nil {
		return err
	}
	_, err = w.client.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(w.machine),
		Name:            aws.String("request-" + requestID),
		Input:           aws.String(string(in)),
	})
	return convertError("start execution", err)
}

// StartCheckout starts the execution named "checkout-<checkout id>".
func (w *Workflow) StartCheckout(ctx context.Context, in escrow.CheckoutWorkflowInput) error {
	in.WaitSeconds = max(1, in.WaitSeconds)
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	_, err = w.client.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(w.machine),
		Name:            aws.String("checkout-" + in.CheckoutID),
		Input:           aws.String(string(b)),
	})
	return convertError("start execution", err)
}

// SendTaskSuccess answers a task token.
func (w *Workflow) SendTaskSuccess(ctx context.Context, token string, output any) error {
	out, err := json.Marshal(output)
	if err != nil {
		return fmt.Errorf("encode task output: %w", err)
	}
	_, err = w.client.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(string(out))})
	return convertError("send task success", redact(err))
}

// redact keeps an error's type (for the mapping) but drops its message,
// which may quote the task token, a capability that must not be logged.
func redact(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		var (
			gone     *types.TaskDoesNotExist
			timedOut *types.TaskTimedOut
			badToken *types.InvalidToken
		)
		switch {
		case errors.As(err, &gone):
			return &types.TaskDoesNotExist{}
		case errors.As(err, &timedOut):
			return &types.TaskTimedOut{}
		case errors.As(err, &badToken):
			return &types.InvalidToken{}
		}
		return &smithy.GenericAPIError{Code: api.ErrorCode(), Fault: api.ErrorFault()}
	}
	return errors.New("request failed before an answer (network or timeout)")
}

// convertError maps Step Functions errors to escrow codes.
func convertError(op string, err error) error {
	if err == nil {
		return nil
	}
	var (
		gone     *types.TaskDoesNotExist
		timedOut *types.TaskTimedOut
		badToken *types.InvalidToken
		exists   *types.ExecutionAlreadyExists
		missing  *types.StateMachineDoesNotExist
	)
	switch {
	case errors.As(err, &gone), errors.As(err, &timedOut), errors.As(err, &badToken):
		return escrow.Wrap(escrow.CodeNotFound, fmt.Errorf("%s: %w", op, err), "the workflow no longer waits on this task")
	case errors.As(err, &exists):
		return escrow.Wrap(escrow.CodeConflict, fmt.Errorf("%s: %w", op, err), "the workflow of this request has already started")
	case errors.As(err, &missing):
		return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("%s: %w", op, err), "the workflow engine is misconfigured")
	}
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorFault() == smithy.FaultClient {
		return escrow.Wrap(escrow.CodeInternal, fmt.Errorf("%s: %w", op, err), "workflow request refused")
	}
	return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("%s: %w", op, err), "the workflow engine is unavailable")
}
