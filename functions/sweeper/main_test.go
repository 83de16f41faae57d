package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/lambdatest/seed"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// These tests run the real bootstrap binary as Lambda would, with the
// scheduler's events: the Runtime API is emulated by package lambdatest,
// AWS is moto.

// TestBootstrapSweeps invokes the function as its schedule does on tables
// holding one grant past its end, and checks the sweep's count and what it
// wrote; a second run finds nothing left to do.
func TestBootstrapSweeps(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(t.Context(), dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	g := seed.ExpiredGrant(t, cfg, tables)
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	expiredCheckout(t, store, g.SecretID)

	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	env := append(rt.Env(), "AWS_ENDPOINT_URL="+m.Endpoint, "TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit)
	fn := lambdatest.Start(t, bin, env)

	if got := sweep(t, "first sweep", rt.Invoke(t, fn, []byte(`{}`))); got != (Result{SweepResult: access.SweepResult{Expired: 1},
		Checkouts: checkout.SweepResult{Expired: 1}}) {
		t.Errorf("first sweep = %+v, want exactly one grant and one checkout expired", got)
	}
	if c, err := store.GetCheckout(t.Context(), g.SecretID); err != nil || c.Status != escrow.CheckoutReleased || c.EndReason != "expired" {
		t.Errorf("checkout after the sweep: %+v, %v; want released as expired", c, err)
	}
	stored, err := dynamo.New(dynamodb.NewFromConfig(cfg), tables).GetGrant(t.Context(), g.ID)
	if err != nil || stored.Status != escrow.StatusExpired {
		t.Errorf("stored grant after the sweep: %v, %v; want status expired", stored, err)
	}
	var recs []*escrow.AuditRecord
	for _, r := range seed.AuditRecords(t, cfg, tables, escrow.AuditQuery{Actor: access.Sweeper, Action: access.ActionGrantExpire}) {
		if r.Target == "grant:"+g.ID {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 || recs[0].Outcome != escrow.OutcomeSuccess || recs[0].SecretID != g.SecretID {
		t.Errorf("grant.expire records by %s for grant %s: %+v, want one success naming secret %s", access.Sweeper, g.ID, recs, g.SecretID)
	}

	// What the schedule really sends; the handler ignores it.
	event := fixture(t, "scheduled-event.json")
	if got := sweep(t, "second sweep", rt.Invoke(t, fn, event)); got != (Result{}) {
		t.Errorf("second sweep = %+v, want nothing changed", got)
	}

	if log := string(fn.Stderr(t)); strings.Contains(log, seed.Canary) {
		t.Error("the secret value appears in the function log")
	}
}

// TestBootstrapFailsWithoutConfig checks that a misconfigured function exits
// with a message naming what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	fn := lambdatest.Start(t, bin, rt.Env())
	if code := fn.ExitCode(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	stderr := string(fn.Stderr(t))
	for _, name := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME"} {
		if !strings.Contains(stderr, name) {
			t.Errorf("stderr does not name %s:\n%s", name, stderr)
		}
	}
	if n := rt.NextCalls(); n != 0 {
		t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
	}
}

// TestDeployBinaryIsStaticARM64 builds the binary as `make build` does for
// deployment, checks it is a static stripped linux/arm64 executable and
// reports its size.
func TestDeployBinaryIsStaticARM64(t *testing.T) {
	size := lambdatest.AssertDeployBinary(t, lambdatest.BuildARM64(t, "."))
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
}

// TestEventFixtureRoundTrip checks that the fixture is an EventBridge event
// as the aws-lambda-go type knows it: no field the type does not know.
func TestEventFixtureRoundTrip(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader(fixture(t, "scheduled-event.json")))
	dec.DisallowUnknownFields()
	var ev events.EventBridgeEvent
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ev.DetailType != "Scheduled Event" || ev.Source != "aws.scheduler" || len(ev.Resources) != 1 {
		t.Errorf("event = %+v, want a scheduled event from aws.scheduler naming its schedule", ev)
	}
}

// sweep decodes the function's answer, refusing fields SweepResult lacks.
func sweep(t *testing.T, what string, out lambdatest.Outcome) Result {
	t.Helper()
	if out.Failed {
		t.Fatalf("%s: function error %s: %s", what, out.ErrorType, out.ErrorMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(out.Body))
	dec.DisallowUnknownFields()
	var res Result
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("%s: decode %s: %v", what, out.Body, err)
	}
	return res
}

// expiredCheckout stores a checkout slot of secretID whose expiry passed an
// hour ago and that nothing ended (its workflow died).
func expiredCheckout(t *testing.T, store *dynamo.Store, secretID string) {
	t.Helper()
	now := time.Now().UTC()
	c := &escrow.Checkout{SecretID: secretID, ID: escrow.NewID(now), Status: escrow.CheckoutActive,
		Holder: escrow.Actor{Subject: "dave"}, Start: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour),
		Interval: escrow.Duration(time.Hour), Revision: 1, UpdatedAt: now.Add(-2 * time.Hour)}
	rec := escrow.NewAuditRecord(t.Context(), now, escrow.ActionCheckout, escrow.SecretTarget(secretID))
	rec.SecretID = secretID
	if err := store.PutCheckout(t.Context(), c, 0, rec); err != nil {
		t.Fatalf("seed checkout: %v", err)
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
