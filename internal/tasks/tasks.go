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

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Payload is a task's input, as the state machine builds it.
type Payload struct {
	Task      string `json:"task"`
	RequestID string `json:"requestId,omitempty"`
	GrantID   string `json:"grantId,omitempty"`
	Token     string `json:"token,omitempty"`
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

// Handler dispatches tasks to the access service.
type Handler struct {
	Access *access.Service
}

// Handle runs one task.
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, &Error{Name: "Escrow.BadPayload", Cause: "payload is not a task"}
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
		// A coded error keeps its code as the error name, so Retry can tell
		// a conflict (retry) from a bug; the message is client-safe.
		return nil, &Error{Name: "Escrow." + string(escrow.ErrorCode(err)), Cause: escrow.ErrorMessage(err)}
	}
	return json.Marshal(res)
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
