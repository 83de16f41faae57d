package devserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/secrets"
)

type seededSecret struct {
	ID, Path string
}

// demoFolders grants the demo users their access: alice and carol
// (engineering) may reveal database secrets, carol (oncall) the payment key,
// bob (approvers) may list production, and engineering may create under /dev.
var demoFolders = []escrow.Folder{
	{Path: "/prod", ACL: []escrow.ACE{{Principal: "group:approvers", Permission: escrow.PermList}}},
	{Path: "/prod/db", ACL: []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}},
	{Path: "/prod/payments", ACL: []escrow.ACE{{Principal: "group:oncall", Permission: escrow.PermView}}},
	{Path: "/dev", ACL: []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermEdit}}},
	// /prod/root holds what nobody reads without a reason and two approvals.
	{Path: "/prod/root", ACL: []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, Policy: &escrow.Policy{
		Approval: &escrow.ApprovalRule{
			For:            []escrow.AccessKind{escrow.AccessView},
			Steps:          []escrow.ApprovalStep{{Name: "approvers", Approvers: []string{"group:approvers", "user:carol"}, Quorum: 2}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour),
			AllowFutureStart: true, ClockStarts: escrow.ClockAtApproval,
		},
		Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Change or incident number",
			Pattern: `^(CHG|INC)[0-9]{7}$`, PatternMessage: "Enter the change or incident number, e.g. CHG0012345"},
		Notice: "Access to production root credentials is reviewed weekly by security.",
	}},
	// /prod/breakglass must be checked out to be read: one holder at a
	// time, with a reason, for 15 minutes (one extension).
	{Path: "/prod/breakglass", ACL: []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView},
		{Principal: "group:approvers", Permission: escrow.PermList}}, Policy: &escrow.Policy{
		Checkout: &escrow.CheckoutRule{Required: true, Interval: escrow.Duration(15 * time.Minute), MaxExtensions: 1},
		Comment:  escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Why do you need the break-glass account?", MinLength: 10},
		Notice:   "Break-glass checkouts are reviewed by security the next working day.",
	}},
}

// seed creates the demo folders and secrets, through the service (so they
// are audited like anything else), unless they exist. Values are random.
func seed(ctx context.Context, svc *secrets.Service, store escrow.Store) ([]seededSecret, error) {
	ctx = escrow.NewContext(ctx, &escrow.Principal{Subject: "escrow-dev-seed", Roles: []string{escrow.RoleAdmin}})
	ctx = escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: "seed", UserAgent: "escrow server -dev"})
	for _, f := range demoFolders {
		fs, err := store.GetFolders(ctx, []string{f.Path})
		if err != nil {
			return nil, err
		}
		if len(fs) > 0 {
			continue
		}
		if _, err := svc.SetFolderACL(ctx, f.Path, f.ACL, nil); err != nil {
			return nil, err
		}
		if f.Policy != nil {
			if _, err := svc.SetFolderPolicy(ctx, f.Path, f.Policy, nil); err != nil {
				return nil, err
			}
		}
	}
	sshKey, err := newSSHKey()
	if err != nil {
		return nil, err
	}
	demo := []secrets.CreateInput{
		{Name: "postgres-admin", Folder: "/prod/db", Type: escrow.TypePassword, Description: "Superuser of the orders database",
			Tags:  map[string]string{"env": "prod", "system": "orders-db"},
			Value: escrow.SecretValue{"username": "postgres", "password": randomPassword(24), "host": "orders-db.internal", "port": "5432"}},
		{Name: "stripe-api-key", Folder: "/prod/payments", Type: escrow.TypeAPIKey, Description: "Payments provider live key",
			Tags:  map[string]string{"env": "prod"},
			Value: escrow.SecretValue{"key": "sk_live_" + randomPassword(32)}},
		{Name: "deploy-key", Folder: "/dev/ssh", Type: escrow.TypeSSHKey, Description: "CI deploy key",
			Value: escrow.SecretValue{"private_key": sshKey.private, "public_key": sshKey.public, "username": "deploy"}},
		{Name: "app-password", Folder: "/dev/db", Type: escrow.TypePassword,
			Value: escrow.SecretValue{"username": "app", "password": randomPassword(20)}},
		{Name: "db-breakglass", Folder: "/prod/breakglass", Type: escrow.TypePassword,
			Description: "Emergency DBA account (check out to use; one holder at a time)",
			Value:       escrow.SecretValue{"username": "breakglass", "password": randomPassword(24), "host": "orders-db.internal", "port": "5432"}},
		{Name: "aws-root", Folder: "/prod/root", Type: escrow.TypePassword, Description: "AWS root account (needs a change number and two approvals)",
			Value: escrow.SecretValue{"username": "root@example.com", "password": randomPassword(28)}},
	}
	var out []seededSecret
	for _, in := range demo {
		sec, err := store.GetSecretByPath(ctx, in.Folder, in.Name)
		if errors.Is(err, escrow.ErrNotFound) {
			sec, err = svc.Create(ctx, in)
		}
		if err != nil {
			return nil, fmt.Errorf("seed %s/%s: %w", in.Folder, in.Name, err)
		}
		out = append(out, seededSecret{ID: sec.ID, Path: sec.Path()})
	}
	return out, nil
}

const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!"

// randomPassword returns n characters from crypto/rand without modulo bias.
func randomPassword(n int) string {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < n {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		if int(buf[0]) < 256-256%len(passwordAlphabet) {
			b.WriteByte(passwordAlphabet[int(buf[0])%len(passwordAlphabet)])
		}
	}
	return b.String()
}

type sshPair struct{ private, public string }

func newSSHKey() (sshPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return sshPair{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "deploy@escrow-demo")
	if err != nil {
		return sshPair{}, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return sshPair{}, err
	}
	return sshPair{private: string(pem.EncodeToMemory(block)), public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}, nil
}
