package lambdatest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/lambdatest"
)

// TestRuntimeDrivesAFunction runs a real aws-lambda-go function (testdata/
// echo) through the emulation: a cold-start event queued before the process
// starts, a response, a function error, then an exit.
func TestRuntimeDrivesAFunction(t *testing.T) {
	bin := lambdatest.Build(t, "./testdata/echo")
	rt := lambdatest.NewRuntime(t)
	first := rt.Enqueue(t, []byte(`{"n":1}`))
	fn := lambdatest.Start(t, bin, rt.Env())

	out := rt.Wait(t, fn, first)
	if out.Failed || string(out.Body) != `{"n":1}` || out.At.Before(fn.Started) {
		t.Errorf("first = %+v (body %s), want the event echoed after the start", out, out.Body)
	}
	out = rt.Invoke(t, fn, []byte(`{"fail":"as asked"}`))
	if !out.Failed || out.ErrorType != "Echo.Failed" || out.ErrorMessage != "as asked" {
		t.Errorf("failing event: %+v (body %s), want a function error Echo.Failed: as asked", out, out.Body)
	}
	out = rt.Invoke(t, fn, []byte(`{"n":2}`))
	if out.Failed || string(out.Body) != `{"n":2}` {
		t.Errorf("after the error: %+v (body %s), want the event echoed", out, out.Body)
	}
	if n := rt.NextCalls(); n < 3 {
		t.Errorf("NextCalls = %d, want at least the 3 answered", n)
	}

	rt.Enqueue(t, []byte(`{"exit":3}`))
	if code := fn.ExitCode(t); code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	fn.Kill() // a no-op once exited, as in a benchmark's deferred Kill
}

// TestRuntimeRejectsUnknownInvocations checks that an answer to no pending
// invocation is refused as the real Runtime API refuses it, and that Close
// ends a waiting /next.
func TestRuntimeRejectsUnknownInvocations(t *testing.T) {
	rt := lambdatest.NewRuntime(t)
	base := "http://" + rt.Addr() + "/2018-06-01/runtime/invocation/"
	resp, err := http.Post(base+"no-such-id/response", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("answer to an unknown id: status %d, want 400", resp.StatusCode)
	}

	done := make(chan error, 1)
	var code int
	go func() {
		resp, err := http.Get(base + "next")
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		done <- err
	}()
	for rt.NextCalls() == 0 {
		time.Sleep(time.Millisecond) // until /next blocks in the emulation
	}
	rt.Close()
	rt.Close() // idempotent: NewRuntime's cleanup closes it again
	if err := <-done; err != nil || code != http.StatusGone {
		t.Errorf("pending /next after Close: status %d, %v; want 410", code, err)
	}
}
