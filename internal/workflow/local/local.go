// Package local is the Workflow port on the embedded ASL runner
// (internal/asl): what `escrow server -dev` uses in place of Step
// Functions, running the same statemachines/*.asl.json. It must never log a
// task token.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Workflow starts executions of one machine on a Runner. It is bound to
// the runner after construction (Bind), because the runner's task handlers
// need the service that holds this Workflow.
type Workflow struct {
	machine string
	runner  atomic.Pointer[asl.Runner]
}

var (
	_ escrow.Workflow         = (*Workflow)(nil)
	_ escrow.CheckoutWorkflow = (*Workflow)(nil)
)

// New returns a Workflow for the named machine.
func New(machine string) *Workflow { return &Workflow{machine: machine} }

// Bind sets the runner.
func (w *Workflow) Bind(r *asl.Runner) { w.runner.Store(r) }

func (w *Workflow) get() (*asl.Runner, error) {
	r := w.runner.Load()
	if r == nil {
		return nil, escrow.Wrap(escrow.CodeUnavailable, errors.New("runner not bound"), "the workflow engine is not running")
	}
	return r, nil
}

// StartRequest starts the execution named "request-<id>".
func (w *Workflow) StartRequest(ctx context.Context, requestID string, pending time.Duration) error {
	r, err := w.get()
	if err != nil {
		return err
	}
	in, err := json.Marshal(escrow.NewRequestWorkflowInput(requestID, pending))
	if err != nil {
		return err
	}
	if _, err := r.Start(ctx, w.machine, "request-"+requestID, in); err != nil {
		return fmt.Errorf("start execution: %w", err)
	}
	return nil
}

// StartCheckout starts the execution named "checkout-<checkout id>".
func (w *Workflow) StartCheckout(ctx context.Context, in escrow.CheckoutWorkflowInput) error {
	r, err := w.get()
	if err != nil {
		return err
	}
	in.WaitSeconds = max(1, in.WaitSeconds)
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if _, err := r.Start(ctx, w.machine, "checkout-"+in.CheckoutID, b); err != nil {
		return fmt.Errorf("start execution: %w", err)
	}
	return nil
}

// SendTaskSuccess answers a task token.
func (w *Workflow) SendTaskSuccess(ctx context.Context, token string, output any) error {
	r, err := w.get()
	if err != nil {
		return err
	}
	out, err := json.Marshal(output)
	if err != nil {
		return fmt.Errorf("encode task output: %w", err)
	}
	if err := r.SendTaskSuccess(ctx, token, out); err != nil {
		return fmt.Errorf("send task success: %w", err)
	}
	return nil
}
