package asltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/escrow-pam/escrow/internal/asl"
)

// Case is one state machine run, the same in both interpreters.
type Case struct {
	// Name is the execution name in both interpreters ($$.Execution.Name).
	Name string
	// Definition is the ASL text with its ${Name} placeholders.
	Definition    []byte
	Substitutions map[string]string
	Input         json.RawMessage
	// Handlers returns fresh handlers for one run, keyed like
	// asl.Config.Resources (so stateful handlers start over per run).
	Handlers func() map[string]asl.Handler
	// Respond answers a .waitForTaskToken task from its payload: an
	// output, an error (a *asl.TaskError keeps its name), or answer=false
	// to leave it unanswered (it then times out).
	Respond func(payload json.RawMessage) (output json.RawMessage, err error, answer bool)
	// TokenField is the Payload field that carries $$.Task.Token
	// (default "token").
	TokenField string
}

func (c *Case) tokenField() string {
	if c.TokenField == "" {
		return "token"
	}
	return c.TokenField
}

// Result is what both interpreters are compared on.
type Result struct {
	Status  string
	Output  json.RawMessage
	Error   string
	Cause   string
	Entered []string // names of the states entered, in order
}

// Clock is a settable escrow.Clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now implements escrow.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock forward.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// RunLocal runs c in the embedded runner on a settable clock, answering
// callbacks after each settle and moving the clock a second at a time
// while the execution only waits.
func RunLocal(t *testing.T, c Case) Result {
	t.Helper()
	ctx := context.Background()
	m, err := asl.Parse(c.Definition, c.Substitutions)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	type pending struct {
		token   string
		payload json.RawMessage
	}
	var mu sync.Mutex
	var queue []pending
	handlers := map[string]asl.Handler{}
	for k, h := range c.Handlers() {
		handlers[k] = func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
			out, err := h(ctx, in)
			var p map[string]any
			if json.Unmarshal(in, &p) == nil {
				if tok, ok := p[c.tokenField()].(string); ok {
					mu.Lock()
					queue = append(queue, pending{tok, in})
					mu.Unlock()
				}
			}
			return out, err
		}
	}
	clock := NewClock(time.Now().UTC().Truncate(time.Second))
	r, err := asl.New(asl.Config{Store: asl.NewMemoryStore(), Clock: clock, Resources: handlers}, map[string]*asl.Machine{"m": m})
	if err != nil {
		t.Fatalf("new runner: %v", err)
	}
	id, err := r.Start(ctx, "m", c.Name, c.Input)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatalf("execution %s did not finish", id)
		}
		if err := r.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		d, err := r.Describe(ctx, id)
		if err != nil {
			t.Fatalf("describe: %v", err)
		}
		if d.Status != asl.Running {
			res := Result{Status: string(d.Status), Output: d.Output, Error: d.Error, Cause: d.Cause}
			for _, e := range d.History {
				if strings.HasSuffix(e.Type, "StateEntered") {
					res.Entered = append(res.Entered, e.StateName)
				}
			}
			return res
		}
		mu.Lock()
		q := queue
		queue = nil
		mu.Unlock()
		if len(q) == 0 {
			clock.Add(time.Second)
			if err := r.Tick(ctx); err != nil {
				t.Fatalf("tick: %v", err)
			}
			continue
		}
		for _, p := range q {
			out, rerr, answer := c.Respond(p.payload)
			switch {
			case !answer:
			case rerr != nil:
				name, cause := errorOf(rerr)
				err = r.SendTaskFailure(ctx, p.token, name, cause)
			default:
				err = r.SendTaskSuccess(ctx, p.token, out)
			}
			if err != nil {
				t.Fatalf("answer task: %v", err)
			}
		}
	}
}

func errorOf(err error) (string, string) {
	var te *asl.TaskError
	if errors.As(err, &te) {
		return te.Name, te.Cause
	}
	return "States.TaskFailed", err.Error()
}

const rewrittenMark = "asl_rewritten"

var substRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// ForMoto returns the definition moto runs: substitutions applied, and
// every lambda:invoke task turned into a .waitForTaskToken callback whose
// Payload carries the token (moto never runs Lambda code; the harness
// answers with the same Go handler).
func ForMoto(def []byte, subs map[string]string, tokenField string) ([]byte, error) {
	def = substRE.ReplaceAllFunc(def, func(m []byte) []byte {
		v, ok := subs[string(m[2:len(m)-1])]
		if !ok {
			return m
		}
		b, _ := json.Marshal(v)
		return b[1 : len(b)-1]
	})
	var doc map[string]any
	if err := json.Unmarshal(def, &doc); err != nil {
		return nil, err
	}
	if err := rewrite(doc, tokenField); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

func rewrite(machine map[string]any, tokenField string) error {
	states, _ := machine["States"].(map[string]any)
	for name, sv := range states {
		s, _ := sv.(map[string]any)
		if bs, ok := s["Branches"].([]any); ok {
			for _, b := range bs {
				bm, _ := b.(map[string]any)
				if err := rewrite(bm, tokenField); err != nil {
					return err
				}
			}
		}
		for _, k := range []string{"ItemProcessor", "Iterator"} {
			if proc, ok := s[k].(map[string]any); ok {
				if err := rewrite(proc, tokenField); err != nil {
					return err
				}
			}
		}
		if s["Type"] != "Task" || s["Resource"] != asl.LambdaInvoke {
			continue
		}
		params, _ := s["Parameters"].(map[string]any)
		payload, ok := params["Payload"].(map[string]any)
		if !ok {
			return fmt.Errorf("state %q: only an object Payload can be rewritten", name)
		}
		payload[tokenField+".$"] = "$$.Task.Token"
		payload[rewrittenMark] = true
		s["Resource"] = asl.LambdaInvokeCallback
	}
	return nil
}

// RunMoto runs c in moto's Step Functions through client, answering the
// callbacks (rewritten Lambda tasks and native ones) as they are scheduled.
func RunMoto(t *testing.T, client *sfn.Client, c Case) Result {
	t.Helper()
	ctx := context.Background()
	def, err := ForMoto(c.Definition, c.Substitutions, c.tokenField())
	if err != nil {
		t.Fatalf("rewrite for moto: %v", err)
	}
	sm, err := client.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String(fmt.Sprintf("m-%s-%d", c.Name, time.Now().UnixNano())),
		Definition: aws.String(string(def)),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/x"),
	})
	if err != nil {
		t.Fatalf("create state machine: %v", err)
	}
	ex, err := client.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: sm.StateMachineArn, Name: aws.String(c.Name), Input: aws.String(string(c.Input)),
	})
	if err != nil {
		t.Fatalf("start execution: %v", err)
	}
	handlers := c.Handlers()
	seen := map[string]int{} // answered TaskScheduled events, by parameters
	deadline := time.Now().Add(90 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("moto execution %s did not finish", *ex.ExecutionArn)
		}
		events := history(t, client, *ex.ExecutionArn)
		// Each TaskScheduled event is answered once. Events are matched by
		// their parameters and their rank among equal ones, not by id:
		// moto's event ids are not stable across polls, and a retry may
		// schedule the same parameters again (answering one task twice
		// would run a stateful handler twice).
		rank := map[string]int{}
		for _, e := range events {
			if e.Type != sfntypes.HistoryEventTypeTaskScheduled {
				continue
			}
			params := aws.ToString(e.TaskScheduledEventDetails.Parameters)
			rank[params]++
			if rank[params] <= seen[params] {
				continue
			}
			seen[params]++
			answerMoto(t, client, c, handlers, params)
		}
		d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: ex.ExecutionArn})
		if err != nil {
			t.Fatalf("describe execution: %v", err)
		}
		if d.Status != sfntypes.ExecutionStatusRunning {
			res := Result{Status: string(d.Status), Error: aws.ToString(d.Error), Cause: aws.ToString(d.Cause)}
			if d.Output != nil {
				res.Output = json.RawMessage(*d.Output)
			}
			for _, e := range history(t, client, *ex.ExecutionArn) {
				if e.StateEnteredEventDetails != nil {
					res.Entered = append(res.Entered, aws.ToString(e.StateEnteredEventDetails.Name))
				}
			}
			return res
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func history(t *testing.T, client *sfn.Client, arn string) []sfntypes.HistoryEvent {
	t.Helper()
	var out []sfntypes.HistoryEvent
	p := sfn.NewGetExecutionHistoryPaginator(client, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), MaxResults: 1000})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("get execution history: %v", err)
		}
		out = append(out, page.Events...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func answerMoto(t *testing.T, client *sfn.Client, c Case, handlers map[string]asl.Handler, params string) {
	t.Helper()
	ctx := context.Background()
	var p struct {
		FunctionName string
		Payload      map[string]any
	}
	if err := json.Unmarshal([]byte(params), &p); err != nil {
		t.Fatalf("TaskScheduled parameters %q: %v", params, err)
	}
	token, _ := p.Payload[c.tokenField()].(string)
	if token == "" {
		t.Fatalf("TaskScheduled payload has no %s", c.tokenField())
	}
	h := handlers[p.FunctionName]
	if h == nil {
		t.Fatalf("no handler for %s", p.FunctionName)
	}
	rewritten := p.Payload[rewrittenMark] == true
	delete(p.Payload, rewrittenMark)
	if rewritten {
		delete(p.Payload, c.tokenField())
	}
	in, _ := json.Marshal(p.Payload)
	out, herr := h(ctx, in)
	var err error
	switch {
	case herr != nil:
		name, cause := errorOf(herr)
		_, err = client.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: &token, Error: &name, Cause: &cause})
	case rewritten:
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		wrapped, _ := json.Marshal(map[string]any{"Payload": out, "StatusCode": 200, "ExecutedVersion": "$LATEST"})
		_, err = client.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: &token, Output: aws.String(string(wrapped))})
	default:
		rout, rerr, answer := c.Respond(in)
		switch {
		case !answer:
		case rerr != nil:
			name, cause := errorOf(rerr)
			_, err = client.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: &token, Error: &name, Cause: &cause})
		default:
			_, err = client.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: &token, Output: aws.String(string(rout))})
		}
	}
	if err != nil {
		t.Fatalf("answer moto task: %v", err)
	}
}

// Scopes maps each state name of m to its scope: "" for the top level,
// "Parallel/0" for the first branch of the Parallel state named Parallel.
func Scopes(m *asl.Machine) map[string]string {
	out := map[string]string{}
	var walk func(m *asl.Machine, scope string)
	walk = func(m *asl.Machine, scope string) {
		for name, s := range m.States {
			out[name] = scope
			for i, b := range s.Branches {
				walk(b, fmt.Sprintf("%s/%d", name, i))
			}
		}
	}
	walk(m, "")
	return out
}

// Compare fails t unless both results have the same status, error, cause,
// JSON-equal output and, scope by scope, the same sequence of states
// entered (branches of a Parallel run concurrently in Step Functions, so
// only the order within one branch is defined).
func Compare(t *testing.T, m *asl.Machine, local, moto Result) {
	t.Helper()
	if local.Status != moto.Status {
		t.Errorf("status: local %s, moto %s", local.Status, moto.Status)
	}
	if local.Error != moto.Error || local.Cause != moto.Cause {
		t.Errorf("error: local %q (%s), moto %q (%s)", local.Error, local.Cause, moto.Error, moto.Cause)
	}
	if local.Status == "SUCCEEDED" && !JSONEqual(local.Output, moto.Output) {
		t.Errorf("output:\nlocal %s\nmoto  %s", local.Output, moto.Output)
	}
	scopes := Scopes(m)
	by := func(names []string) map[string][]string {
		out := map[string][]string{}
		for _, n := range names {
			out[scopes[n]] = append(out[scopes[n]], n)
		}
		return out
	}
	if l, r := by(local.Entered), by(moto.Entered); !reflect.DeepEqual(l, r) {
		t.Errorf("states entered:\nlocal %v\nmoto  %v", local.Entered, moto.Entered)
	}
}

// JSONEqual reports whether a and b hold equal JSON values.
func JSONEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
