package access_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// TestAccessOnAWSAdapters runs request → two approvals → reveal → expiry →
// sweep on DynamoDB and KMS (moto): the same code the api and sweeper
// functions run.
func TestAccessOnAWSAdapters(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	ctx := context.Background()
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(ctx, dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatal(err)
	}
	kc := kmssdk.NewFromConfig(cfg)
	key, err := kc.CreateKey(ctx, &kmssdk.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	sec := secrets.New(secrets.Config{Store: store, Audit: store, Grants: store, Keys: kms.New(kc, *key.KeyMetadata.KeyId), Clock: c})
	acc := access.New(access.Config{Store: store, Requests: store, Audit: store, Clock: c})
	s, err := sec.Create(as(admin), secrets.CreateInput{Name: "root", Folder: "/prod", Type: escrow.TypePassword, Value: escrow.SecretValue{"password": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sec.SetFolderACL(as(admin), "/prod", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	pol := &escrow.Policy{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
		Steps:          []escrow.ApprovalStep{{Approvers: []string{"group:approvers"}, Quorum: 2}},
		PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(time.Hour)}}
	if _, err := sec.SetFolderPolicy(as(admin), "/prod", pol, nil); err != nil {
		t.Fatal(err)
	}
	r, err := acc.Request(as(dave), access.RequestInput{SecretID: s.ID, Access: escrow.AccessView, Duration: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := acc.Decide(as(dave), r.ID, true, ""); err == nil {
		t.Fatal("dave approved his own request")
	}
	acc.Decide(as(bob), r.ID, true, "")
	_, g, err := acc.Decide(as(carol), r.ID, true, "")
	if err != nil || g == nil {
		t.Fatalf("approvals: %v", err)
	}
	if _, err := sec.Reveal(as(dave), s.ID, 0); err != nil {
		t.Fatalf("reveal under the grant: %v", err)
	}
	c.Add(10 * time.Minute)
	if _, err := sec.Reveal(as(dave), s.ID, 0); err == nil {
		t.Fatal("reveal after the window")
	}
	res, err := acc.Sweep(ctx)
	if err != nil || res.Expired != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	if got, err := acc.Get(as(dave), r.ID); err != nil || got.Status != escrow.StatusExpired {
		t.Fatalf("request after sweep: %v %v", got.Status, err)
	}
}
