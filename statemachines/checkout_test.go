package statemachines_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/asl/asltest"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/statemachines"
)

// checkoutScenario is one path through checkout.asl.json.
type checkoutScenario struct {
	name      string
	rotateNow bool
	// answers are the successive answers to the wait for check-in; past
	// the last one the wait times out.
	answers []map[string]any
	// expiry is what CheckExpiry answers, in turn (then "ended").
	expiry []map[string]any
	// rotateFails is how many times Rotate fails before it succeeds.
	rotateFails int
	entered     []string
}

var checkoutScenarios = []checkoutScenario{
	{name: "checkin", answers: []map[string]any{{"status": "ended", "waitSeconds": 0}},
		entered: []string{"Begin", "AwaitCheckin", "AfterCheckin", "Rotate", "PostHooks", "Release", "Done"}},
	{name: "expiry",
		entered: []string{"Begin", "AwaitCheckin", "CheckExpiry", "AfterCheckin", "Rotate", "PostHooks", "Release", "Done"}},
	{name: "extended-then-expired", answers: []map[string]any{{"status": "extended", "waitSeconds": 1}},
		entered: []string{"Begin", "AwaitCheckin", "AfterCheckin", "Rearm", "AwaitCheckin", "CheckExpiry", "AfterCheckin", "Rotate", "PostHooks", "Release", "Done"}},
	{name: "rearmed-by-expiry-check", expiry: []map[string]any{{"status": "extended", "waitSeconds": 1}},
		entered: []string{"Begin", "AwaitCheckin", "CheckExpiry", "AfterCheckin", "Rearm", "AwaitCheckin", "CheckExpiry", "AfterCheckin", "Rotate", "PostHooks", "Release", "Done"}},
	{name: "rotation-fails-once", answers: []map[string]any{{"status": "ended", "waitSeconds": 0}}, rotateFails: 1,
		entered: []string{"Begin", "AwaitCheckin", "AfterCheckin", "Rotate", "RotationFailed", "StillOurs", "Backoff", "Rotate", "PostHooks", "Release", "Done"}},
	{name: "rotate-now", rotateNow: true,
		entered: []string{"Begin", "Rotate", "PostHooks", "Release", "Done"}},
}

// handlers stand in for the tasks and rotate functions with their answers'
// shapes; the real handlers run end to end in the dev server's tests.
func (s checkoutScenario) handlers() map[string]asl.Handler {
	var rotations, expiries atomic.Int32
	answer := func(v any) (json.RawMessage, error) { return json.Marshal(v) }
	h := func(_ context.Context, in json.RawMessage) (json.RawMessage, error) {
		var p struct{ Task string }
		json.Unmarshal(in, &p)
		switch p.Task {
		case "checkout-timeout":
			if n := int(expiries.Add(1)); n <= len(s.expiry) {
				return answer(s.expiry[n-1])
			}
			return answer(map[string]any{"status": "ended", "waitSeconds": 0})
		case "rotate":
			if int(rotations.Add(1)) <= s.rotateFails {
				return nil, &asl.TaskError{Name: "Escrow.unavailable", Cause: "cannot reach PostgreSQL"}
			}
			return answer(map[string]any{"status": "rotated", "waitSeconds": 0, "version": 2})
		case "rotation-failed":
			return answer(map[string]any{"status": "failed", "waitSeconds": 1})
		}
		return answer(map[string]any{})
	}
	return map[string]asl.Handler{statemachines.TasksFunction: h, statemachines.RotateFunction: h}
}

func (s checkoutScenario) kase(t *testing.T) asltest.Case {
	def, err := statemachines.Files.ReadFile(statemachines.Checkout + ".asl.json")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(map[string]any{"secretId": "s-" + s.name, "checkoutId": "c-" + s.name, "waitSeconds": 1, "rotateNow": s.rotateNow})
	var answered atomic.Int32
	return asltest.Case{
		Name: "checkout-" + s.name, Definition: def, Input: in, Handlers: s.handlers,
		Substitutions: checkoutSubs,
		Respond: func(json.RawMessage) (json.RawMessage, error, bool) {
			n := int(answered.Add(1))
			if n > len(s.answers) {
				return nil, nil, false
			}
			out, _ := json.Marshal(s.answers[n-1])
			return out, nil, true
		},
	}
}

var checkoutSubs = map[string]string{"TasksFunctionArn": statemachines.TasksFunction, "RotateFunctionArn": statemachines.RotateFunction}

// TestCheckoutBothInterpreters runs every path of the checkout machine in
// the embedded runner and in moto's Step Functions and compares the states
// entered and the final output.
func TestCheckoutBothInterpreters(t *testing.T) {
	def, _ := statemachines.Files.ReadFile(statemachines.Checkout + ".asl.json")
	m, err := asl.Parse(def, checkoutSubs)
	if err != nil {
		t.Fatal(err)
	}
	moto := awstest.Start(t)
	client := sfn.NewFromConfig(moto.MustConfig(t))
	for _, s := range checkoutScenarios {
		t.Run(s.name, func(t *testing.T) {
			local := asltest.RunLocal(t, s.kase(t))
			if got, want := local.Entered, s.entered; !equal(got, want) {
				t.Fatalf("embedded runner entered %v, want %v", got, want)
			}
			if local.Status != "SUCCEEDED" {
				t.Fatalf("embedded runner: %s %s %s", local.Status, local.Error, local.Cause)
			}
			remote := asltest.RunMoto(t, client, s.kase(t))
			asltest.Compare(t, m, local, remote)
		})
	}
}
