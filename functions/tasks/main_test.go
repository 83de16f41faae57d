package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/lambdatest/seed"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// These tests run the real bootstrap binary as Lambda would, with Step
// Functions' Task payloads as events: the Runtime API is emulated by
// package lambdatest, AWS is moto.

// TestBootstrapServesTasks invokes the function as the state machine does
// and checks both its answers and what it wrote: task errors must reach
// Step Functions under the names Retry and Catch match.
func TestBootstrapServesTasks(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(t.Context(), dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	g := seed.ExpiredGrant(t, cfg, tables)

	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	env := append(rt.Env(), "AWS_ENDPOINT_URL="+m.Endpoint, "TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit)
	fn := lambdatest.Start(t, bin, env)

	// A task name no handler knows is a bug in the state machine: its own
	// error name, so that no Retry hides it.
	out := rt.Invoke(t, fn, []byte(`{"task":"frobnicate"}`))
	assertTaskError(t, "unknown task", out, "Escrow.UnknownTask")
	if !strings.Contains(out.ErrorMessage, "frobnicate") {
		t.Errorf("unknown task: errorMessage %q does not name the task", out.ErrorMessage)
	}

	// access.ExpireGrant returns the store's escrow.ErrNotFound as is; the
	// handler names it after its code.
	out = rt.Invoke(t, fn, []byte(`{"task":"expire","grantId":"nope"}`))
	assertTaskError(t, "unknown grant", out, "Escrow."+string(escrow.CodeNotFound))

	expire := mustJSON(t, map[string]string{"task": "expire", "grantId": g.ID})
	if got := taskResult(t, "expire", rt.Invoke(t, fn, expire)); got != `{"status":"expired"}` {
		t.Errorf("expire: result %s, want {\"status\":\"expired\"}", got)
	}
	q := escrow.AuditQuery{Actor: access.Workflow, Action: access.ActionGrantExpire}
	recs := expireRecords(t, cfg, tables, q, g.ID)
	if len(recs) != 1 {
		t.Fatalf("grant.expire records by %s for grant %s: %d, want 1", access.Workflow, g.ID, len(recs))
	}
	if r := recs[0]; r.Outcome != escrow.OutcomeSuccess || r.SecretID != g.SecretID || r.Details["request"] != g.RequestID {
		t.Errorf("audit record = %+v, want a success naming secret %s and request %s", r, g.SecretID, g.RequestID)
	}

	// Step Functions runs a task at least once: a second run is a no-op.
	if got := taskResult(t, "expire again", rt.Invoke(t, fn, expire)); got != `{"status":"expired"}` {
		t.Errorf("expire again: result %s, want {\"status\":\"expired\"}", got)
	}
	if n := len(expireRecords(t, cfg, tables, q, g.ID)); n != 1 {
		t.Errorf("after a second expire: %d grant.expire records, want still 1", n)
	}

	if log := string(fn.Stderr(t)); strings.Contains(log, seed.Canary) {
		t.Error("the secret value appears in the function log")
	}
}

// TestBootstrapFailsWithoutConfig checks that a misconfigured function exits
// with a message naming what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	for _, tc := range []struct {
		name    string
		env     []string
		missing string
	}{
		{"no tables", nil, "TABLE_NAME"},
		{"no audit table", []string{"TABLE_NAME=escrow-main"}, "AUDIT_TABLE_NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := lambdatest.NewRuntime(t)
			fn := lambdatest.Start(t, bin, append(rt.Env(), tc.env...))
			if code := fn.ExitCode(t); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if stderr := string(fn.Stderr(t)); !strings.Contains(stderr, tc.missing) {
				t.Errorf("stderr does not name %s:\n%s", tc.missing, stderr)
			}
			if n := rt.NextCalls(); n != 0 {
				t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
			}
		})
	}
}

// TestDeployBinaryIsStaticARM64 builds the binary as `make build` does for
// deployment, checks it is a static stripped linux/arm64 executable and
// reports its size.
func TestDeployBinaryIsStaticARM64(t *testing.T) {
	size := lambdatest.AssertDeployBinary(t, lambdatest.BuildARM64(t, "."))
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
}

func assertTaskError(t *testing.T, what string, out lambdatest.Outcome, name string) {
	t.Helper()
	if !out.Failed || out.ErrorType != name || out.ErrorMessage == "" {
		t.Errorf("%s: failed=%v errorType %q errorMessage %q (body %s), want a function error %s with a message",
			what, out.Failed, out.ErrorType, out.ErrorMessage, out.Body, name)
	}
}

func taskResult(t *testing.T, what string, out lambdatest.Outcome) string {
	t.Helper()
	if out.Failed {
		t.Fatalf("%s: function error %s: %s", what, out.ErrorType, out.ErrorMessage)
	}
	return string(out.Body)
}

func expireRecords(t *testing.T, cfg aws.Config, tables dynamo.Tables, q escrow.AuditQuery, grantID string) []*escrow.AuditRecord {
	t.Helper()
	var recs []*escrow.AuditRecord
	for _, r := range seed.AuditRecords(t, cfg, tables, q) {
		if r.Target == "grant:"+grantID {
			recs = append(recs, r)
		}
	}
	return recs
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
