// Package tasks serves the Task states of the state machines: one typed
// handler per task name, dispatched from the payload's "task" field. The
// tasks Lambda and the embedded ASL runner of -dev call the same Handle, so
// a workflow behaves the same in both.
//
// Handlers are idempotent (Step Functions runs a task at least once) and
// hold no logic of their own: it is in package access.
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Payload is a task's input, as the state machine builds it.
type Payload struct {
	Task      string `json:"task"`
	RequestID string `json:"requestId,omitempty"`
	GrantID   string `json:"grantId,omitempty"`
	Token     string `json:"token,omitempty"`
	// Checkout tasks.
	SecretID   string              `json:"secretId,omitempty"`
	CheckoutID string              `json:"checkoutId,omitempty"`
	Outcome    string              `json:"outcome,omitempty"`
	Error      *checkout.TaskError `json:"error,omitempty"`
}

// Result is a task's output.
type Result struct {
	Status escrow.RequestStatus `json:"status,omitempty"`
}

// Error is a task failure with a name the state machine's Retry and Catch
// can match (Lambda reports it as errorType).
type Error struct {
	Name, Cause string
}

func (e *Error) Error() string { return e.Name + ": " + e.Cause }

// ErrorName is the Lambda error type (aws-lambda-go reports the Go type's
// name unless the error says otherwise).
func (e *Error) ErrorName() string { return e.Name }

// Handler dispatches tasks to the access and checkout services. A
// function wires only the services whose tasks it runs (the rotate
// function: Checkout with a rotator); a task whose service is missing
// fails as Escrow.UnknownTask.
type Handler struct {
	Access   *access.Service
	Checkout *checkout.Service
}

// Handle runs one task.
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, &Error{Name: "Escrow.BadPayload", Cause: "payload is not a task"}
	}
	if out, err, ok := h.checkoutTask(ctx, p); ok {
		return out, err
	}
	if h.Access == nil {
		return nil, &Error{Name: "Escrow.UnknownTask", Cause: fmt.Sprintf("task %q does not run in this function", p.Task)}
	}
	var res Result
	var err error
	switch p.Task {
	case "await-decision":
		if p.RequestID == "" || p.Token == "" {
			return nil, &Error{Name: "Escrow.BadPayload", Cause: "await-decision needs requestId and token"}
		}
		err = h.Access.AwaitDecision(ctx, p.RequestID, p.Token)
	case "timeout":
		res.Status, err = h.Access.TimeOutRequest(ctx, p.RequestID)
	case "activate":
		res.Status, err = h.Access.ActivateGrant(ctx, p.GrantID)
	case "expire":
		res.Status, err = h.Access.ExpireGrant(ctx, p.GrantID)
	default:
		return nil, &Error{Name: "Escrow.UnknownTask", Cause: fmt.Sprintf("no task %q", p.Task)}
	}
	if err != nil {
		return nil, taskErr(err)
	}
	return json.Marshal(res)
}

// taskErr names a failed task after its error code, so Retry can tell a
// conflict (retry) from a bug; the cause is the client-safe message.
func taskErr(err error) error {
	return &Error{Name: "Escrow." + string(escrow.ErrorCode(err)), Cause: escrow.ErrorMessage(err)}
}

// checkoutTask runs the tasks of statemachines/checkout.asl.json; ok is
// false for any other task.
func (h *Handler) checkoutTask(ctx context.Context, p Payload) (out json.RawMessage, err error, ok bool) {
	var step checkout.Step
	switch p.Task {
	case "checkout-await", "checkout-timeout", "rotate", "rotation-failed", "post-hooks", "release":
	default:
		return nil, nil, false
	}
	if h.Checkout == nil {
		return nil, &Error{Name: "Escrow.UnknownTask", Cause: fmt.Sprintf("task %q does not run in this function", p.Task)}, true
	}
	if p.SecretID == "" || p.CheckoutID == "" {
		return nil, &Error{Name: "Escrow.BadPayload", Cause: p.Task + " needs secretId and checkoutId"}, true
	}
	switch p.Task {
	case "checkout-await":
		if p.Token == "" {
			return nil, &Error{Name: "Escrow.BadPayload", Cause: "checkout-await needs a token"}, true
		}
		err = h.Checkout.AwaitCheckin(ctx, p.SecretID, p.CheckoutID, p.Token)
	case "checkout-timeout":
		step, err = h.Checkout.CheckExpiry(ctx, p.SecretID, p.CheckoutID)
	case "rotate":
		step, err = h.Checkout.Rotate(ctx, p.SecretID, p.CheckoutID)
	case "rotation-failed":
		var te checkout.TaskError
		if p.Error != nil {
			te = *p.Error
		}
		step, err = h.Checkout.RotationFailed(ctx, p.SecretID, p.CheckoutID, te)
	case "post-hooks":
		err = h.Checkout.PostHooks(ctx, p.SecretID, p.CheckoutID, p.Outcome)
	case "release":
		err = h.Checkout.Release(ctx, p.SecretID, p.CheckoutID)
	}
	if err != nil {
		return nil, taskErr(err), true
	}
	out, err = json.Marshal(step)
	return out, err, true
}

// ForLambda adapts Handle to a Lambda handler: a task's error name becomes
// the Step Functions error that Retry and Catch match (otherwise the
// runtime reports the Go type).
func (h *Handler) ForLambda() func(context.Context, json.RawMessage) (json.RawMessage, error) {
	return func(ctx context.Context, payload json.RawMessage) (json.RawMessage, error) {
		out, err := h.Handle(ctx, payload)
		var te *Error
		if errors.As(err, &te) {
			return nil, messages.InvokeResponse_Error{Type: te.Name, Message: te.Cause}
		}
		return out, err
	}
}

// ForRunner adapts Handle to the embedded ASL runner, carrying error names
// over as the runner's TaskError so Retry and Catch match them as they do
// in Step Functions.
func (h *Handler) ForRunner() asl.Handler {
	return func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		out, err := h.Handle(ctx, in)
		var te *Error
		if errors.As(err, &te) {
			return nil, &asl.TaskError{Name: te.Name, Cause: te.Cause}
		}
		return out, err
	}
}
