package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// TestBootstrapMailsDueReports runs the real bootstrap on moto: an hourly
// schedule of denied attempts, due, is run over DynamoDB and
// mailed through SESv2 with its CSV attached; a second tick sends nothing.
func TestBootstrapMailsDueReports(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(t.Context(), dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatal(err)
	}
	if _, err := sesv2.NewFromConfig(cfg).CreateEmailIdentity(t.Context(), &sesv2.CreateEmailIdentityInput{EmailIdentity: aws.String("escrow@example.com")}); err != nil {
		t.Fatal(err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	now := time.Now().UTC()
	end := now.Truncate(time.Hour)
	denied := &escrow.AuditRecord{ID: escrow.NewID(end.Add(-30 * time.Minute)), Time: end.Add(-30 * time.Minute), Actor: escrow.Actor{Subject: "mallory"},
		Action: escrow.ActionSecretReveal, SecretID: "s1", Target: "secret:s1", Outcome: escrow.OutcomeDenied, ErrorCode: escrow.CodeForbidden}
	if err := store.Append(t.Context(), denied); err != nil {
		t.Fatal(err)
	}
	sc := &escrow.ReportSchedule{Name: "soc-hourly", Report: "denied", Every: "hourly", Recipients: []string{"soc@example.com"},
		CreatedBy: "admin", CreatedAt: now, LastRun: end.Add(-time.Hour), Revision: 1}
	rec := escrow.NewAuditRecord(t.Context(), now, reportsched.ActionPut, "report-schedule:soc-hourly")
	if err := store.PutReportSchedule(t.Context(), sc, 0, rec); err != nil {
		t.Fatal(err)
	}

	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	env := append(rt.Env(), "AWS_ENDPOINT_URL="+m.Endpoint, "TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit, "MAIL_FROM=escrow@example.com")
	fn := lambdatest.Start(t, bin, env)
	event := []byte(`{"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler","detail":{}}`)
	out := rt.Invoke(t, fn, event)
	if out.Failed || string(out.Body) != `{"sent":1}` {
		t.Fatalf("first tick: %s %s %s", out.Body, out.ErrorType, out.ErrorMessage)
	}
	if out := rt.Invoke(t, fn, event); out.Failed || string(out.Body) != `{"sent":0}` {
		t.Fatalf("second tick: %s %s", out.Body, out.ErrorMessage)
	}
	resp, err := http.Get(m.Endpoint + "/moto-api/data.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var data struct {
		SES struct {
			RawMessage []struct {
				RawData string `json:"raw_data"`
			} `json:"RawMessage"`
		} `json:"ses"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	if len(data.SES.RawMessage) != 1 {
		t.Fatalf("%d raw mails sent, want 1", len(data.SES.RawMessage))
	}
	raw := data.SES.RawMessage[0].RawData
	for _, want := range []string{"soc@example.com", "Content-Disposition: attachment; filename=soc-hourly-", ".csv", "multipart/mixed"} {
		if !strings.Contains(raw, want) {
			t.Errorf("the mail lacks %q", want)
		}
	}
}

// TestBootstrapFailsWithoutConfig: it exits naming what is missing.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	fn := lambdatest.Start(t, bin, append(rt.Env(), "TABLE_NAME=t", "AUDIT_TABLE_NAME=a"))
	if code := fn.ExitCode(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if stderr := string(fn.Stderr(t)); !strings.Contains(stderr, "MAIL_FROM") {
		t.Errorf("stderr does not name MAIL_FROM:\n%s", stderr)
	}
}
