package asl_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
)

const restartDef = `{
  "StartAt": "Ask",
  "States": {
    "Ask": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
      "Parameters": {"FunctionName": "fn", "Payload": {"Token.$": "$$.Task.Token"}},
      "TimeoutSeconds": 3600,
      "ResultPath": "$.answer",
      "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "Done"}],
      "Next": "Hold"
    },
    "Hold": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
    "Done": {"Type": "Pass", "End": true}
  }
}`

// TestRestartResumesWaits drops the runner while an execution waits for a
// task token, answers the token through a new runner on the same store,
// drops that one during the Wait, and lets a third one, started after the
// timer was due, fire it at once from Run.
func TestRestartResumesWaits(t *testing.T) {
	tk := &tokens{}
	e := newEnv(t, restartDef, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{"n":1}`)
	tok := tk.last(t)

	e.restart()
	ctx := context.Background()
	if err := e.r.SendTaskSuccess(ctx, tok, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
	e.settle()
	e.wantStatus(id, asl.Running)

	e.restart()
	e.clock.Add(2 * time.Minute) // the Wait is overdue when the server comes back
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.r.Run(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for e.describe(id).Status == asl.Running {
		if time.Now().After(deadline) {
			t.Fatal("the overdue Wait did not fire after restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.settle()
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"n":1,"answer":{"ok":true}}`)
}

// TestRestartFiresOverdueTokenTimeout restarts after a callback's timeout
// passed: the first tick times the task out.
func TestRestartFiresOverdueTokenTimeout(t *testing.T) {
	tk := &tokens{}
	e := newEnv(t, restartDef, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{}`)
	e.restart()
	e.clock.Add(2 * time.Hour)
	if err := e.r.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.advance(0)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"timeout":{"Error":"States.Timeout","Cause":""}}`)
}

// TestRestartReRunsInFlightTask: a task whose handler was running when the
// server died runs again after restart (at least once, as in Step
// Functions), and the abandoned call's late result is ignored.
func TestRestartReRunsInFlightTask(t *testing.T) {
	def := `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"r","End":true}}}`
	release := make(chan struct{})
	var calls atomic.Int32
	h := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		n := calls.Add(1)
		if n == 1 {
			<-release // the "crashed" process's call hangs
			return json.RawMessage(`"stale"`), nil
		}
		return json.RawMessage(`"fresh"`), nil
	}
	e := newEnv(t, def, map[string]asl.Handler{"r": h})
	old := e.r
	id, err := old.Start(context.Background(), "m", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	e.restart()
	if err := e.r.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.settle()
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `"fresh"`)
	close(release)
	if err := old.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	d = e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `"fresh"`)
	if calls.Load() != 2 {
		t.Fatalf("handler calls %d, want 2", calls.Load())
	}
}
