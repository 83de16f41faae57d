package asl_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/asl/asltest"
	"github.com/escrow-pam/escrow/internal/escrow"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type env struct {
	t     *testing.T
	r     *asl.Runner
	clock *asltest.Clock
	store asl.Store
	res   map[string]asl.Handler
	m     map[string]*asl.Machine
}

func newEnv(t *testing.T, def string, res map[string]asl.Handler) *env {
	t.Helper()
	m, err := asl.Parse([]byte(def), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	e := &env{t: t, clock: asltest.NewClock(t0), store: asl.NewMemoryStore(), res: res, m: map[string]*asl.Machine{"m": m}}
	e.restart()
	return e
}

// restart replaces the runner with a new one on the same store, as a
// restarted server would.
func (e *env) restart() {
	e.t.Helper()
	r, err := asl.New(asl.Config{Store: e.store, Clock: e.clock, Resources: e.res}, e.m)
	if err != nil {
		e.t.Fatalf("new: %v", err)
	}
	e.r = r
}

func (e *env) start(input string) string {
	e.t.Helper()
	id, err := e.r.Start(context.Background(), "m", "", json.RawMessage(input))
	if err != nil {
		e.t.Fatalf("start: %v", err)
	}
	e.settle()
	return id
}

func (e *env) settle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.r.Settle(ctx); err != nil {
		e.t.Fatalf("settle: %v", err)
	}
}

func (e *env) advance(d time.Duration) {
	e.t.Helper()
	e.clock.Add(d)
	if err := e.r.Tick(context.Background()); err != nil {
		e.t.Fatalf("tick: %v", err)
	}
	e.settle()
}

func (e *env) describe(id string) *asl.Execution {
	e.t.Helper()
	d, err := e.r.Describe(context.Background(), id)
	if err != nil {
		e.t.Fatalf("describe: %v", err)
	}
	return d
}

func (e *env) wantStatus(id string, want asl.Status) *asl.Execution {
	e.t.Helper()
	d := e.describe(id)
	if d.Status != want {
		e.t.Fatalf("status %s (error %q cause %q), want %s", d.Status, d.Error, d.Cause, want)
	}
	return d
}

func wantJSON(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	if !asltest.JSONEqual(got, json.RawMessage(want)) {
		t.Fatalf("output %s, want %s", got, want)
	}
}

// tokens records the tokens callback handlers receive.
type tokens struct {
	mu  sync.Mutex
	got []string
}

func (tk *tokens) handler(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
	var p struct{ Token string }
	if err := json.Unmarshal(in, &p); err != nil {
		return nil, err
	}
	tk.mu.Lock()
	tk.got = append(tk.got, p.Token)
	tk.mu.Unlock()
	return nil, nil
}

func (tk *tokens) last(t *testing.T) string {
	t.Helper()
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if len(tk.got) == 0 {
		t.Fatal("no task token received")
	}
	return tk.got[len(tk.got)-1]
}

const callbackDef = `{
  "StartAt": "Ask",
  "States": {
    "Ask": {
      "Type": "Task",
      "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
      "Parameters": {"FunctionName": "fn", "Payload": {"Token.$": "$$.Task.Token", "who.$": "$.who"}},
      "TimeoutSeconds": 60,
      "HeartbeatSeconds": 10,
      "ResultPath": "$.answer",
      "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.err", "Next": "Late"}],
      "Next": "Done"
    },
    "Late": {"Type": "Pass", "End": true},
    "Done": {"Type": "Succeed"}
  }
}`

func TestCallbackSuccessAndTokens(t *testing.T) {
	tk := &tokens{}
	e := newEnv(t, callbackDef, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{"who":"bob"}`)
	e.wantStatus(id, asl.Running)
	tok := tk.last(t)
	if len(tok) < 43 || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q is not 32+ random bytes in base64url", tok)
	}
	// A second execution gets a different token.
	e.start(`{"who":"carol"}`)
	if tk.last(t) == tok {
		t.Fatal("two executions got the same token")
	}
	ctx := context.Background()
	if err := e.r.SendTaskSuccess(ctx, tok, json.RawMessage(`not json`)); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("bad output: %v, want ErrInvalid", err)
	}
	if err := e.r.SendTaskSuccess(ctx, "guess", json.RawMessage(`{}`)); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("unknown token: %v, want ErrNotFound", err)
	}
	if err := e.r.SendTaskSuccess(ctx, tok, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatalf("SendTaskSuccess: %v", err)
	}
	e.settle()
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"who":"bob","answer":{"ok":true}}`)
	if err := e.r.SendTaskSuccess(ctx, tok, json.RawMessage(`{}`)); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("token used twice: %v, want ErrNotFound", err)
	}
}

func TestCallbackHeartbeat(t *testing.T) {
	tk := &tokens{}
	e := newEnv(t, callbackDef, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{"who":"bob"}`)
	tok := tk.last(t)
	e.advance(8 * time.Second)
	if err := e.r.SendTaskHeartbeat(context.Background(), tok); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	e.advance(8 * time.Second) // 16s after start, 8s after the heartbeat
	e.wantStatus(id, asl.Running)
	e.advance(3 * time.Second)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"who":"bob","err":{"Error":"States.HeartbeatTimeout","Cause":""}}`)
}

func TestCallbackTimeoutNotCaughtByTaskFailed(t *testing.T) {
	tk := &tokens{}
	def := `{"StartAt":"Ask","States":{"Ask":{"Type":"Task",
	  "Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
	  "Parameters":{"FunctionName":"fn","Payload":{"Token.$":"$$.Task.Token"}},
	  "TimeoutSeconds":5,
	  "Catch":[{"ErrorEquals":["States.TaskFailed"],"Next":"Caught"}],
	  "End":true},
	  "Caught":{"Type":"Succeed"}}}`
	e := newEnv(t, def, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{}`)
	e.advance(4 * time.Second)
	e.wantStatus(id, asl.Running)
	e.advance(time.Second)
	d := e.wantStatus(id, asl.Failed)
	if d.Error != "States.Timeout" {
		t.Fatalf("error %q, want States.Timeout", d.Error)
	}
	if err := e.r.SendTaskSuccess(context.Background(), tk.last(t), json.RawMessage(`{}`)); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("token after timeout: %v, want ErrNotFound", err)
	}
}

func TestCallbackFailureAndHandlerError(t *testing.T) {
	tk := &tokens{}
	def := `{"StartAt":"Ask","States":{"Ask":{"Type":"Task",
	  "Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
	  "Parameters":{"FunctionName":"fn","Payload":{"Token.$":"$$.Task.Token","fail.$":"$.fail"}},
	  "Catch":[{"ErrorEquals":["Denied"],"ResultPath":"$.denied","Next":"Caught"}],
	  "End":true},
	  "Caught":{"Type":"Succeed"}}}`
	h := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		if strings.Contains(string(in), `"fail":true`) {
			return nil, &asl.TaskError{Name: "MailDown", Cause: "smtp"}
		}
		return tk.handler(ctx, in)
	}
	e := newEnv(t, def, map[string]asl.Handler{"fn": h})
	id := e.start(`{"fail":false}`)
	if err := e.r.SendTaskFailure(context.Background(), tk.last(t), "Denied", "no"); err != nil {
		t.Fatal(err)
	}
	e.settle()
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"fail":false,"denied":{"Error":"Denied","Cause":"no"}}`)

	id = e.start(`{"fail":true}`)
	d = e.wantStatus(id, asl.Failed)
	if d.Error != "MailDown" || d.Cause != "smtp" {
		t.Fatalf("handler error on a callback task: %q %q", d.Error, d.Cause)
	}
}

func TestSyncTaskTimeout(t *testing.T) {
	def := `{"StartAt":"Slow","States":{"Slow":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:slow",
	  "TimeoutSeconds":1,"Catch":[{"ErrorEquals":["States.Timeout"],"ResultPath":"$.e","Next":"Done"}],"End":true},
	  "Done":{"Type":"Succeed"}}}`
	slow := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	e := newEnv(t, def, map[string]asl.Handler{"arn:aws:lambda:us-east-1:1:function:slow": slow})
	id := e.start(`{}`)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"e":{"Error":"States.Timeout","Cause":"task timed out"}}`)
}

func TestPlainResourceAndLambdaWrapping(t *testing.T) {
	def := `{"StartAt":"Plain","States":{
	  "Plain":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f","Parameters":{"x.$":"$.x"},"ResultPath":"$.plain","Next":"Wrapped"},
	  "Wrapped":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"f","Payload.$":"$.plain"},"ResultPath":"$.wrapped","End":true}}}`
	double := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		var p struct{ X int }
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]int{"x": p.X * 2})
	}
	e := newEnv(t, def, map[string]asl.Handler{"arn:aws:lambda:us-east-1:1:function:f": double, "f": double})
	id := e.start(`{"x":3}`)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"x":3,"plain":{"x":6},"wrapped":{"Payload":{"x":12},"StatusCode":200,"ExecutedVersion":"$LATEST"}}`)
}

func TestRetryBackoffAndUnnamedErrors(t *testing.T) {
	def := `{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"r",
	  "Retry":[{"ErrorEquals":["States.TaskFailed"],"IntervalSeconds":2,"MaxAttempts":2,"BackoffRate":3}],
	  "End":true}}}`
	var calls atomic.Int32
	h := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		calls.Add(1)
		return nil, errors.New("plain failure")
	}
	e := newEnv(t, def, map[string]asl.Handler{"r": h})
	id := e.start(`{}`)
	steps := []struct {
		after time.Duration
		calls int32
	}{{0, 1}, {time.Second, 1}, {time.Second, 2}, {5 * time.Second, 2}, {time.Second, 3}}
	for i, s := range steps {
		if s.after > 0 {
			e.advance(s.after)
		}
		if got := calls.Load(); got != s.calls {
			t.Fatalf("step %d: %d calls, want %d", i, got, s.calls)
		}
	}
	d := e.wantStatus(id, asl.Failed)
	if d.Error != "States.TaskFailed" || d.Cause != "plain failure" {
		t.Fatalf("error %q cause %q", d.Error, d.Cause)
	}
	entered := 0
	for _, ev := range d.History {
		if ev.Type == "TaskStateEntered" {
			entered++
		}
	}
	if entered != 1 {
		t.Fatalf("a retried task was entered %d times, want 1 (retries do not re-enter)", entered)
	}
}

func TestParallelRetryAndRuntimeErrors(t *testing.T) {
	def := `{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,
	  "Retry":[{"ErrorEquals":["Oops"],"MaxAttempts":1}],
	  "Branches":[{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"r","End":true}}},
	              {"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":5,"End":true}}}]}}}`
	var calls atomic.Int32
	h := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		if calls.Add(1) == 1 {
			return nil, &asl.TaskError{Name: "Oops"}
		}
		return json.RawMessage(`"ok"`), nil
	}
	e := newEnv(t, def, map[string]asl.Handler{"r": h})
	id := e.start(`{}`)
	e.advance(time.Second) // the retry
	if calls.Load() != 2 {
		t.Fatalf("calls %d, want 2 (branches re-run)", calls.Load())
	}
	e.advance(4 * time.Second)
	e.wantStatus(id, asl.Running) // the Wait restarted with the retry
	e.advance(time.Second)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `["ok",{}]`)

	// A missing path is States.Runtime, which no Catch takes.
	def2 := `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.nope","StringEquals":"x","Next":"D"}],"Default":"D"},"D":{"Type":"Succeed"}}}`
	e2 := newEnv(t, def2, nil)
	d = e2.wantStatus(e2.start(`{}`), asl.Failed)
	if d.Error != "States.Runtime" {
		t.Fatalf("missing Variable: %q", d.Error)
	}
	def3 := `{"StartAt":"P","States":{"P":{"Type":"Pass","Result":1,"ResultPath":"$.a.b",
	  "End":true}}}`
	e3 := newEnv(t, def3, nil)
	d = e3.wantStatus(e3.start(`{"a":"string"}`), asl.Failed)
	if d.Error != "States.ResultPathMatchFailure" {
		t.Fatalf("ResultPath into a string: %q", d.Error)
	}
	def4 := `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.n","NumericEquals":1,"Next":"D"}]},"D":{"Type":"Succeed"}}}`
	e4 := newEnv(t, def4, nil)
	d = e4.wantStatus(e4.start(`{"n":"1"}`), asl.Failed)
	if d.Error != "States.NoChoiceMatched" {
		t.Fatalf("type mismatch in Choice must not match: %q", d.Error)
	}
}

func TestContextObject(t *testing.T) {
	def := `{"StartAt":"W","States":{
	  "W":{"Type":"Wait","Seconds":3,"Next":"P"},
	  "P":{"Type":"Pass","Parameters":{"id.$":"$$.Execution.Id","name.$":"$$.Execution.Name","start.$":"$$.Execution.StartTime",
	    "input.$":"$$.Execution.Input","state.$":"$$.State.Name","entered.$":"$$.State.EnteredTime"},"End":true}}}`
	e := newEnv(t, def, nil)
	id, err := e.r.Start(context.Background(), "m", "run-1", json.RawMessage(`{"a":[1]}`))
	if err != nil {
		t.Fatal(err)
	}
	e.settle()
	e.advance(3 * time.Second)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"id":"`+id+`","name":"run-1","start":"2026-11-22T12:00:00.000Z","input":{"a":[1]},
	  "state":"P","entered":"2026-11-22T12:00:03.000Z"}`)
	if !strings.HasSuffix(id, ":m:run-1") {
		t.Fatalf("execution id %q", id)
	}
}

func TestStartStopDescribe(t *testing.T) {
	tk := &tokens{}
	e := newEnv(t, callbackDef, map[string]asl.Handler{"fn": tk.handler})
	ctx := context.Background()
	id, err := e.r.Start(ctx, "m", "same", json.RawMessage(`{"who":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := e.r.Start(ctx, "m", "same", json.RawMessage(`{"who":"a"}`)); err != nil || again != id {
		t.Fatalf("same name and input: %q %v, want %q", again, err, id)
	}
	if _, err := e.r.Start(ctx, "m", "same", json.RawMessage(`{"who":"b"}`)); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("same name, other input: %v, want ErrConflict", err)
	}
	if _, err := e.r.Start(ctx, "nope", "", nil); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("unknown machine: %v", err)
	}
	if _, err := e.r.Start(ctx, "m", "bad name!", nil); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := e.r.Start(ctx, "m", "", json.RawMessage(`{`)); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("bad input: %v", err)
	}
	e.settle()
	if err := e.r.Stop(ctx, id, "withdrawn"); err != nil {
		t.Fatalf("stop: %v", err)
	}
	d := e.wantStatus(id, asl.Aborted)
	if d.Cause != "withdrawn" || d.StopTime.IsZero() {
		t.Fatalf("aborted execution: %+v", d)
	}
	if err := e.r.SendTaskSuccess(ctx, tk.last(t), json.RawMessage(`{}`)); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("token of a stopped execution: %v", err)
	}
	if err := e.r.Stop(ctx, id, "again"); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("stop twice: %v", err)
	}
	if _, err := e.r.Describe(ctx, "missing"); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("describe missing: %v", err)
	}
	if due, _ := e.store.DueTimers(ctx, t0.Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("a stopped execution kept timers: %+v", due)
	}
	var types []string
	for _, ev := range d.History {
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, ","); got != "ExecutionStarted,TaskStateEntered,TaskScheduled,ExecutionAborted" {
		t.Fatalf("history %s", got)
	}
}

func TestMemoryStoreConformance(t *testing.T) {
	asltest.RunStoreSuite(t, func(t *testing.T) asl.Store { return asl.NewMemoryStore() })
}

func TestTimeoutSecondsPath(t *testing.T) {
	tk := &tokens{}
	def := `{"StartAt":"Ask","States":{"Ask":{"Type":"Task",
	  "Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
	  "Parameters":{"FunctionName":"fn","Payload":{"Token.$":"$$.Task.Token"}},
	  "InputPath":"$.req","TimeoutSecondsPath":"$.timeout","HeartbeatSecondsPath":"$.hb",
	  "Catch":[{"ErrorEquals":["States.Timeout","States.HeartbeatTimeout"],"Next":"Caught"}],
	  "End":true},
	  "Caught":{"Type":"Pass","End":true}}}`
	e := newEnv(t, def, map[string]asl.Handler{"fn": tk.handler})
	id := e.start(`{"req":{"timeout":30,"hb":20}}`)
	e.advance(19 * time.Second)
	if err := e.r.SendTaskHeartbeat(context.Background(), tk.last(t)); err != nil {
		t.Fatal(err)
	}
	e.advance(10 * time.Second)
	e.wantStatus(id, asl.Running)
	e.advance(time.Second)
	d := e.wantStatus(id, asl.Succeeded)
	wantJSON(t, d.Output, `{"Error":"States.Timeout","Cause":""}`)

	d = e.wantStatus(e.start(`{"req":{"timeout":"soon","hb":1}}`), asl.Failed)
	if d.Error != "States.Runtime" || !strings.Contains(d.Cause, "TimeoutSecondsPath") {
		t.Fatalf("bad TimeoutSecondsPath value: %q %q", d.Error, d.Cause)
	}
}

func TestMapConcurrency(t *testing.T) {
	def := `{"StartAt":"M","States":{"M":{"Type":"Map","MaxConcurrency":%d,"End":true,
	  "ItemProcessor":{"StartAt":"Ask","States":{"Ask":{"Type":"Task",
	    "Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
	    "Parameters":{"FunctionName":"fn","Payload":{"Token.$":"$$.Task.Token","n.$":"$"}},"End":true}}}}}}`
	for _, c := range []struct {
		max  int
		want []int // tokens outstanding after each round of answers
	}{{0, []int{4}}, {2, []int{2, 2}}, {1, []int{1, 1, 1, 1}}} {
		tk := &tokens{}
		e := newEnv(t, strings.Replace(def, "%d", strconv.Itoa(c.max), 1), map[string]asl.Handler{"fn": tk.handler})
		id := e.start(`[1,2,3,4]`)
		for round, want := range c.want {
			tk.mu.Lock()
			got := tk.got
			tk.got = nil
			tk.mu.Unlock()
			if len(got) != want {
				t.Fatalf("MaxConcurrency %d round %d: %d tasks waiting, want %d", c.max, round, len(got), want)
			}
			for _, tok := range got {
				if err := e.r.SendTaskSuccess(context.Background(), tok, json.RawMessage(`"done"`)); err != nil {
					t.Fatal(err)
				}
			}
			e.settle()
		}
		d := e.wantStatus(id, asl.Succeeded)
		wantJSON(t, d.Output, `["done","done","done","done"]`)
	}
	e := newEnv(t, strings.Replace(def, "%d", "0", 1), map[string]asl.Handler{"fn": (&tokens{}).handler})
	d := e.wantStatus(e.start(`{"not":"an array"}`), asl.Failed)
	if d.Error != "States.Runtime" {
		t.Fatalf("Map over an object: %q", d.Error)
	}
}

func TestEndlessLoopHitsHistoryLimit(t *testing.T) {
	def := `{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Choice","Choices":[{"Variable":"$.stop","IsPresent":true,"Next":"C"}],"Default":"A"},"C":{"Type":"Succeed"}}}`
	e := newEnv(t, def, nil)
	d := e.wantStatus(e.start(`{}`), asl.Failed)
	if d.Error != "States.Runtime" || !strings.Contains(d.Cause, "history") {
		t.Fatalf("endless loop: %q %q", d.Error, d.Cause)
	}
}
