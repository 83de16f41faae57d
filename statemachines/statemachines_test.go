package statemachines_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/asl/asltest"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/statemachines"
)

// scenario is one path through access-request.asl.json: how the decision
// task is answered (nil: never, so it times out).
type scenario struct {
	name     string
	pending  int
	decision map[string]any
	entered  []string
}

var scenarios = []scenario{
	{"active", 60, map[string]any{"status": "active", "grantId": "g1", "grantStart": "2020-01-01T00:00:00Z", "grantEnd": "2020-01-01T01:00:00Z"},
		[]string{"AwaitDecision", "Decided", "WaitForEnd", "Expire", "Done"}},
	{"booked", 60, map[string]any{"status": "approved", "grantId": "g2", "grantStart": "2020-01-01T00:00:00Z", "grantEnd": "2020-01-01T01:00:00Z"},
		[]string{"AwaitDecision", "Decided", "WaitForStart", "Activate", "WaitForEnd", "Expire", "Done"}},
	{"denied", 60, map[string]any{"status": "denied"}, []string{"AwaitDecision", "Decided", "Done"}},
	{"cancelled", 60, map[string]any{"status": "cancelled"}, []string{"AwaitDecision", "Decided", "Done"}},
	{"timeout", 1, nil, []string{"AwaitDecision", "TimeOut", "Done"}},
}

// handlers stand in for the tasks function with its answers' shapes (the
// real handlers are exercised end to end by the dev server's tests).
func handlers() map[string]asl.Handler {
	return map[string]asl.Handler{statemachines.TasksFunction: func(_ context.Context, in json.RawMessage) (json.RawMessage, error) {
		var p struct{ Task string }
		json.Unmarshal(in, &p)
		status := map[string]string{"timeout": "timed_out", "activate": "active", "expire": "expired"}[p.Task]
		return json.Marshal(map[string]string{"status": status})
	}}
}

func (s scenario) kase(t *testing.T) asltest.Case {
	def, err := statemachines.Files.ReadFile(statemachines.AccessRequest + ".asl.json")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(map[string]any{"requestId": "req-" + s.name, "pendingSeconds": s.pending})
	return asltest.Case{
		Name: "access-" + s.name, Definition: def, Input: in, Handlers: handlers,
		Substitutions: map[string]string{"TasksFunctionArn": statemachines.TasksFunction},
		Respond: func(json.RawMessage) (json.RawMessage, error, bool) {
			if s.decision == nil {
				return nil, nil, false
			}
			out, _ := json.Marshal(s.decision)
			return out, nil, true
		},
	}
}

// TestAccessRequestBothInterpreters runs every path of the access-request
// machine in the embedded runner and in moto's Step Functions and compares
// the states entered and the final output.
func TestAccessRequestBothInterpreters(t *testing.T) {
	def, _ := statemachines.Files.ReadFile(statemachines.AccessRequest + ".asl.json")
	m, err := asl.Parse(def, map[string]string{"TasksFunctionArn": statemachines.TasksFunction})
	if err != nil {
		t.Fatal(err)
	}
	moto := awstest.Start(t)
	client := sfn.NewFromConfig(moto.MustConfig(t))
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			c := s.kase(t)
			local := asltest.RunLocal(t, c)
			if got, want := local.Entered, s.entered; !equal(got, want) {
				t.Fatalf("embedded runner entered %v, want %v", got, want)
			}
			remote := asltest.RunMoto(t, client, c)
			asltest.Compare(t, m, local, remote)
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
