// Package seed puts escrow state on the DynamoDB tables of a function test
// (moto) through the same use-case packages the functions run, so that a
// bootstrap under test finds what production would have written.
//
// It is test support: it must never be imported by non-test code.
package seed

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// Canary is the seeded secret's password: it must appear in no function
// log, response or audit record.
const Canary = "canary-seed-Zq83-7f1c"

// The people of the seeded flow.
var (
	admin = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}
	dave  = &escrow.Principal{Subject: "dave", Email: "dave@example.com", Groups: []string{"engineering"}}
	bob   = &escrow.Principal{Subject: "bob", Email: "bob@example.com", Groups: []string{"approvers"}}
	carol = &escrow.Principal{Subject: "carol", Email: "carol@example.com", Groups: []string{"approvers"}}
)

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

func as(ctx context.Context, p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(ctx, p), escrow.RequestInfo{RequestID: "seed-" + p.Subject})
}

// ExpiredGrant stores, on the tables behind cfg, a secret under a policy
// that needs two approvers, dave's request for 10 minutes of view access,
// and its approval by bob and carol, all as of two hours ago (the services
// run on a clock set back; a function under test runs on the real one). It
// returns the grant, which ended 1h50m ago but is still stored as open:
// nothing expired it yet.
func ExpiredGrant(t testing.TB, cfg aws.Config, tables dynamo.Tables) *escrow.Grant {
	t.Helper()
	ctx := t.Context()
	key, err := awskms.NewFromConfig(cfg).CreateKey(ctx, &awskms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("create kms key: %v", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	clock := fixedClock(time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second))
	sec := secrets.New(secrets.Config{Store: store, Audit: store, Grants: store,
		Keys: kms.New(awskms.NewFromConfig(cfg), *key.KeyMetadata.KeyId), Clock: clock})
	acc := access.New(access.Config{Store: store, Requests: store, Audit: store, Clock: clock})

	s, err := sec.Create(as(ctx, admin), secrets.CreateInput{Name: "root", Folder: "/prod", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"password": Canary}})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}
	if _, err := sec.SetFolderACL(as(ctx, admin), "/prod", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatalf("set acl: %v", err)
	}
	pol := &escrow.Policy{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
		Steps:          []escrow.ApprovalStep{{Approvers: []string{"group:approvers"}, Quorum: 2}},
		PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(time.Hour)}}
	if _, err := sec.SetFolderPolicy(as(ctx, admin), "/prod", pol, nil); err != nil {
		t.Fatalf("set policy: %v", err)
	}
	r, err := acc.Request(as(ctx, dave), access.RequestInput{SecretID: s.ID, Access: escrow.AccessView, Duration: 10 * time.Minute})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if _, _, err := acc.Decide(as(ctx, bob), r.ID, true, ""); err != nil {
		t.Fatalf("first approval: %v", err)
	}
	_, g, err := acc.Decide(as(ctx, carol), r.ID, true, "")
	if err != nil || g == nil {
		t.Fatalf("second approval: grant %v, %v", g, err)
	}
	if g.Status.Terminal() || g.StatusAt(time.Now()) != escrow.StatusExpired {
		t.Fatalf("seeded grant is %s (%s by now), want open and past its end", g.Status, g.StatusAt(time.Now()))
	}
	return g
}

// AuditRecords returns the newest records (up to 100) that q matches,
// read as the functions write them.
func AuditRecords(t testing.TB, cfg aws.Config, tables dynamo.Tables, q escrow.AuditQuery) []*escrow.AuditRecord {
	t.Helper()
	page, err := dynamo.New(dynamodb.NewFromConfig(cfg), tables).QueryAudit(t.Context(), q)
	if err != nil {
		t.Fatalf("query audit %+v: %v", q, err)
	}
	return page.Records
}
