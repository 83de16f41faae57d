package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// These tests run the real bootstrap binary as Lambda would, with the
// checkout machine's Rotate payloads as events: the Runtime API is emulated
// by package lambdatest, DynamoDB and KMS are moto, the target is a real
// PostgreSQL.

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

var (
	admin = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}
	alice = &escrow.Principal{Subject: "alice", Groups: []string{"ops"}}
)

func as(p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(context.Background(), p), escrow.RequestInfo{RequestID: "t-" + p.Subject})
}

// TestBootstrapRotatesOnPostgres: alice checked a secret out and in (on
// moto's DynamoDB, with KMS keys); the function's rotate task changes the
// password on PostgreSQL; the one she saw is dead, the new one works.
func TestBootstrapRotatesOnPostgres(t *testing.T) {
	pg := pgtest.StartShared(t)
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(t.Context(), dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	key, err := awskms.NewFromConfig(cfg).CreateKey(t.Context(), &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	keys := kms.New(awskms.NewFromConfig(cfg), *key.KeyMetadata.KeyId)
	sec := secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Checkouts: store})
	co := checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys})

	pg.CreateRole(t, "app_lambda", "Initial-lambda-pw-1", false)
	if _, err := sec.SetFolderACL(as(admin), "/ops", []escrow.ACE{{Principal: "group:ops", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sec.SetFolderPolicy(as(admin), "/ops", &escrow.Policy{Checkout: &escrow.CheckoutRule{}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := sec.Create(as(admin), secrets.CreateInput{Name: "app", Folder: "/ops", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "app_lambda", "password": "Initial-lambda-pw-1", "host": pg.Host, "port": pg.Port}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := co.SetRotation(as(admin), s.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres, Options: map[string]string{"tls": "disable"}}); err != nil {
		t.Fatal(err)
	}
	res, err := co.Checkout(as(alice), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	c, err := co.Checkin(as(alice), s.ID, "")
	if err != nil {
		t.Fatal(err)
	}

	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	env := append(rt.Env(), "AWS_ENDPOINT_URL="+m.Endpoint, "TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit,
		"KMS_KEY_ID="+*key.KeyMetadata.KeyId)
	fn := lambdatest.Start(t, bin, env)

	out := rt.Invoke(t, fn, []byte(`{"task":"rotate","secretId":"`+s.ID+`"}`))
	if !out.Failed || out.ErrorType != "Escrow.BadPayload" {
		t.Errorf("rotate without a checkout id: %+v", out)
	}
	payload, _ := json.Marshal(map[string]string{"task": "rotate", "secretId": s.ID, "checkoutId": c.ID})
	out = rt.Invoke(t, fn, payload)
	if out.Failed {
		t.Fatalf("rotate: %s: %s", out.ErrorType, out.ErrorMessage)
	}
	var step checkout.Step
	if err := json.Unmarshal(out.Body, &step); err != nil || step.Status != "rotated" || step.Version != 2 {
		t.Fatalf("rotate answered %s", out.Body)
	}
	seen := res.Value["password"]
	if pg.CanLogin(t.Context(), "app_lambda", seen) == nil {
		t.Fatal("the password alice saw still logs in")
	}
	v, err := store.GetVersion(t.Context(), s.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	val, err := envelope.Open(t.Context(), keys, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.CanLogin(t.Context(), "app_lambda", val["password"]); err != nil {
		t.Fatalf("the rotated password does not log in: %v", err)
	}
	// The machine's next state in the same function: no hooks configured,
	// so nothing to call, and no error.
	if out := rt.Invoke(t, fn, []byte(`{"task":"post-hooks","secretId":"`+s.ID+`","checkoutId":"`+c.ID+`","outcome":"rotated"}`)); out.Failed {
		t.Fatalf("post-hooks: %s %s", out.ErrorType, out.ErrorMessage)
	}
	log := string(fn.Stderr(t))
	for _, pw := range []string{seen, val["password"]} {
		if strings.Contains(log, pw) {
			t.Fatal("a password appears in the function log")
		}
	}
}

// TestBootstrapFailsWithoutConfig: a misconfigured function exits naming
// what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	fn := lambdatest.Start(t, bin, append(rt.Env(), "TABLE_NAME=t", "AUDIT_TABLE_NAME=a"))
	if code := fn.ExitCode(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if stderr := string(fn.Stderr(t)); !strings.Contains(stderr, "KMS_KEY_ID") {
		t.Errorf("stderr does not name KMS_KEY_ID:\n%s", stderr)
	}
	if n := rt.NextCalls(); n != 0 {
		t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
	}
}

// TestDeployBinaryIsStaticARM64 builds the binary as `make build` does and
// reports its size.
func TestDeployBinaryIsStaticARM64(t *testing.T) {
	size := lambdatest.AssertDeployBinary(t, lambdatest.BuildARM64(t, "."))
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
}
