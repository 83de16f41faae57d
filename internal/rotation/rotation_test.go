package rotation

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
	"github.com/escrow-pam/escrow/internal/rotate/postgres"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

var admin = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}

func as(p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(context.Background(), p), escrow.RequestInfo{RequestID: "r-" + p.Subject})
}

type env struct {
	t     *testing.T
	pg    *pgtest.Server
	store *sqlite.Store
	keys  escrow.Keys
	sec   *secrets.Service
	rot   *Rotator
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pg := pgtest.StartShared(t)
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := local.New(master)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, pg: pg, store: store, keys: keys,
		sec: secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys}),
		rot: New(Config{Store: store, Audit: store, Keys: keys,
			Targets: map[string]escrow.RotationTarget{escrow.TargetPostgres: postgres.New()}})}
}

var roles atomic.Int64

// account makes a PostgreSQL role and the Escrow secret that holds it,
// rotated by the role itself (privileged "") or by the secret privileged.
func (e *env) account(privileged string) (*escrow.Secret, string, string) {
	e.t.Helper()
	role := fmt.Sprintf("app_%d_%d", roles.Add(1), len(e.t.Name()))
	pw := "Initial-" + role + "-pw1"
	e.pg.CreateRole(e.t, role, pw, false)
	s, err := e.sec.Create(as(admin), secrets.CreateInput{Name: role, Folder: "/prod/db", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": role, "password": pw, "host": e.pg.Host, "port": e.pg.Port, "database": "postgres"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.setRotation(s, privileged), role, pw
}

func (e *env) setRotation(s *escrow.Secret, privileged string) *escrow.Secret {
	e.t.Helper()
	next := *s
	next.Rotation = &escrow.RotationConfig{Target: escrow.TargetPostgres, Privileged: privileged,
		Password: escrow.PasswordPolicy{Length: 20}, Options: map[string]string{"tls": "disable"}}
	if privileged != "" {
		next.Rotation.Pinned = escrow.PinAccount(e.value(s.ID, s.CurrentVersion))
	}
	next.Revision++
	rec := escrow.NewAuditRecord(as(admin), next.UpdatedAt, escrow.ActionRotationSet, escrow.SecretTarget(s.ID))
	rec.SecretID = s.ID
	if err := e.store.UpdateSecret(context.Background(), &next, s.Revision, nil, rec); err != nil {
		e.t.Fatal(err)
	}
	return &next
}

func (e *env) password(id string, version int) string {
	e.t.Helper()
	return e.value(id, version)["password"]
}

func (e *env) value(id string, version int) escrow.SecretValue {
	e.t.Helper()
	v, err := e.store.GetVersion(context.Background(), id, version)
	if err != nil {
		e.t.Fatal(err)
	}
	val, err := envelope.Open(context.Background(), e.keys, v)
	if err != nil {
		e.t.Fatal(err)
	}
	return val
}

func (e *env) get(id string) *escrow.Secret {
	e.t.Helper()
	s, err := e.store.GetSecret(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) canLogin(role, pw string) bool {
	return e.pg.CanLogin(context.Background(), role, pw) == nil
}

// actions returns the audit actions on secret id, oldest first, and fails
// if any record holds one of the passwords.
func (e *env) actions(id string, passwords ...string) []string {
	e.t.Helper()
	page, err := e.store.QueryAudit(context.Background(), escrow.AuditQuery{SecretID: id, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for i := len(page.Records) - 1; i >= 0; i-- {
		r := page.Records[i]
		b, _ := json.Marshal(r)
		for _, pw := range passwords {
			if pw != "" && strings.Contains(string(b), pw) {
				e.t.Fatalf("audit record %s holds a password", r.Action)
			}
		}
		out = append(out, r.Action+":"+string(r.Outcome))
	}
	return out
}

// TestRotateOnPostgres: the four steps on a real server. Afterwards the old
// password no longer logs in, the new one (held only by Escrow) does, and
// the old version is kept.
func TestRotateOnPostgres(t *testing.T) {
	e := newEnv(t)
	s, role, old := e.account("")
	res, err := e.rot.Rotate(as(admin), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Previous != 1 || res.Resumed {
		t.Fatalf("result %+v", res)
	}
	got := e.get(s.ID)
	if got.CurrentVersion != 2 || got.PendingVersion != 0 {
		t.Fatalf("current %d pending %d", got.CurrentVersion, got.PendingVersion)
	}
	nw := e.password(s.ID, 2)
	if nw == old || len(nw) != 20 {
		t.Fatalf("new password not generated under the policy")
	}
	if e.canLogin(role, old) {
		t.Fatal("the old password still logs in")
	}
	if !e.canLogin(role, nw) {
		t.Fatal("the new password does not log in")
	}
	if e.password(s.ID, 1) != old {
		t.Fatal("the previous version was not kept")
	}
	want := []string{"secret.create:success", "secret.rotation.set:success", "secret.rotation.pending:success",
		"secret.rotation.target:success", "secret.rotation.test:success", "secret.rotation.promote:success"}
	if got := e.actions(s.ID, old, nw); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("audit trail\n got %v\nwant %v", got, want)
	}
	// And again: each rotation makes a fresh password.
	if res, err = e.rot.Rotate(as(admin), s.ID); err != nil || res.Version != 3 {
		t.Fatalf("second rotation: %+v %v", res, err)
	}
	if third := e.password(s.ID, 3); third == nw || !e.canLogin(role, third) || e.canLogin(role, nw) {
		t.Fatal("the second rotation did not replace the password")
	}
}

// TestRotateWithPrivilegedAccount: a superuser secret changes the role's
// password; the role's own password is never used.
func TestRotateWithPrivilegedAccount(t *testing.T) {
	e := newEnv(t)
	adm, err := e.sec.Create(as(admin), secrets.CreateInput{Name: "pg-admin-" + t.Name(), Folder: "/prod/db", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": e.pg.User, "password": e.pg.Password}})
	if err != nil {
		t.Fatal(err)
	}
	s, role, old := e.account(adm.ID)
	// The role's stored password is wrong: only the privileged login can
	// change it.
	if _, err := e.pg.Conn(t).Exec(context.Background(), "ALTER ROLE "+role+" PASSWORD 'changed-outside-escrow'"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rot.Rotate(as(admin), s.ID); err != nil {
		t.Fatal(err)
	}
	nw := e.password(s.ID, 2)
	if !e.canLogin(role, nw) || e.canLogin(role, old) || e.canLogin(role, "changed-outside-escrow") {
		t.Fatal("the privileged rotation did not take")
	}
	if got := strings.Join(e.actions(s.ID, old, nw, e.pg.Password), " "); !strings.Contains(got, "secret.rotation.privileged:success") {
		t.Fatalf("no audit record of the privileged read: %s", got)
	}
}

// TestKilledAtEachCutPointIsCompleted kills a rotation after each durable
// step. After the kill the target's password is always one Escrow holds
// (current or pending, exactly one of them), and the next run finishes
// with the same pending password.
func TestKilledAtEachCutPointIsCompleted(t *testing.T) {
	for _, cut := range []string{"pending", "set", "test"} {
		t.Run(cut, func(t *testing.T) {
			e := newEnv(t)
			s, role, old := e.account("")
			killed := errors.New("killed at " + cut)
			e.rot.afterStep = func(step string) error {
				if step == cut {
					return killed
				}
				return nil
			}
			if _, err := e.rot.Rotate(as(admin), s.ID); !errors.Is(err, killed) {
				t.Fatalf("Rotate: %v, want the kill", err)
			}
			mid := e.get(s.ID)
			if mid.CurrentVersion != 1 || mid.PendingVersion != 2 {
				t.Fatalf("after the kill: current %d pending %d", mid.CurrentVersion, mid.PendingVersion)
			}
			pending := e.password(s.ID, 2)
			cur, pend := e.canLogin(role, old), e.canLogin(role, pending)
			if cur == pend {
				t.Fatalf("after the kill: current logs in %v, pending logs in %v; want exactly one", cur, pend)
			}
			if wantPending := cut != "pending"; pend != wantPending {
				t.Fatalf("after a kill at %s the pending password logs in: %v", cut, pend)
			}

			e.rot.afterStep = nil
			res, err := e.rot.Rotate(as(admin), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Resumed || res.Version != 2 {
				t.Fatalf("resumed run: %+v", res)
			}
			done := e.get(s.ID)
			if done.CurrentVersion != 2 || done.PendingVersion != 0 {
				t.Fatalf("after the resumed run: current %d pending %d", done.CurrentVersion, done.PendingVersion)
			}
			if e.password(s.ID, 2) != pending || !e.canLogin(role, pending) || e.canLogin(role, old) {
				t.Fatal("the resumed run did not finish with the pending password")
			}
			if e.password(s.ID, 1) != old {
				t.Fatal("the previous version was lost")
			}
			trail := strings.Join(e.actions(s.ID, old, pending), " ")
			if strings.Count(trail, "secret.rotation.pending:success") != 1 {
				t.Fatalf("a second pending version was made: %s", trail)
			}
		})
	}
}

// TestRefusedRotationKeepsEverything: when the target refuses the login,
// the rotation fails with a conflict naming the step, the current version
// stays current, and the pending one is kept for the next attempt.
func TestRefusedRotationKeepsEverything(t *testing.T) {
	e := newEnv(t)
	s, role, old := e.account("")
	if _, err := e.pg.Conn(t).Exec(context.Background(), "ALTER ROLE "+role+" PASSWORD 'changed-outside-escrow'"); err != nil {
		t.Fatal(err)
	}
	_, err := e.rot.Rotate(as(admin), s.ID)
	if !errors.Is(err, escrow.ErrLoginRefused) || escrow.ErrorCode(err) == escrow.CodeInternal {
		t.Fatalf("Rotate: %v, want a refused login", err)
	}
	if msg := escrow.ErrorMessage(err); !strings.Contains(msg, "set the new password") || strings.Contains(msg, old) {
		t.Fatalf("message %q", msg)
	}
	got := e.get(s.ID)
	if got.CurrentVersion != 1 || got.PendingVersion != 2 {
		t.Fatalf("current %d pending %d", got.CurrentVersion, got.PendingVersion)
	}
	if !e.canLogin(role, "changed-outside-escrow") {
		t.Fatal("the target changed although the rotation failed")
	}
	if trail := strings.Join(e.actions(s.ID, old, e.password(s.ID, 2)), " "); !strings.Contains(trail, "secret.rotation.target:failed") {
		t.Fatalf("the failure was not audited: %s", trail)
	}
}

func TestRotateRefusesWithoutConfiguration(t *testing.T) {
	e := newEnv(t)
	s, err := e.sec.Create(as(admin), secrets.CreateInput{Name: "plain", Folder: "/x", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"password": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rot.Rotate(as(admin), s.ID); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("no rotation: %v", err)
	}
	s = e.setRotation(s, "")
	e.rot.targets = map[string]escrow.RotationTarget{}
	if _, err := e.rot.Rotate(as(admin), s.ID); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("missing target: %v", err)
	}
}

// TestPrivilegedLoginGoesOnlyWherePinned: once an editor points the
// secret at another host, the privileged account is not used (it would log
// in there), until an owner sets the rotation again.
func TestPrivilegedLoginGoesOnlyWherePinned(t *testing.T) {
	e := newEnv(t)
	adm, err := e.sec.Create(as(admin), secrets.CreateInput{Name: "pg-admin-pin", Folder: "/prod/db", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": e.pg.User, "password": e.pg.Password}})
	if err != nil {
		t.Fatal(err)
	}
	s, role, old := e.account(adm.ID)
	moved := e.value(s.ID, 1)
	moved["host"] = "127.0.0.2"
	if _, err := e.sec.Update(as(admin), s.ID, secrets.UpdateInput{Value: moved}); err != nil {
		t.Fatal(err)
	}
	_, err = e.rot.Rotate(as(admin), s.ID)
	if escrow.ErrorCode(err) != escrow.CodeInvalid || !strings.Contains(escrow.ErrorMessage(err), "host changed") {
		t.Fatalf("rotation after the host moved: %v", err)
	}
	if !e.canLogin(role, old) {
		t.Fatal("the target changed")
	}
	trail := strings.Join(e.actions(s.ID, old, e.pg.Password), " ")
	if strings.Contains(trail, "secret.rotation.privileged") {
		t.Fatalf("the privileged account was read: %s", trail)
	}
}

// TestRepairAfterRefusedRotation: the stored password went stale (changed
// outside Escrow), so rotation fails and leaves its pending version. An
// owner stores the real password: the pending version is set aside (kept
// in the history) and the next rotation starts from the stored value.
func TestRepairAfterRefusedRotation(t *testing.T) {
	e := newEnv(t)
	s, role, _ := e.account("")
	if _, err := e.pg.Conn(t).Exec(context.Background(), "ALTER ROLE "+role+" PASSWORD 'changed-outside-escrow'"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rot.Rotate(as(admin), s.ID); err == nil {
		t.Fatal("rotation with a stale password succeeded")
	}
	fixed := e.value(s.ID, 1)
	fixed["password"] = "changed-outside-escrow"
	if _, err := e.sec.Update(as(admin), s.ID, secrets.UpdateInput{Value: fixed}); err != nil {
		t.Fatal(err)
	}
	got := e.get(s.ID)
	if got.CurrentVersion != 3 || got.PendingVersion != 0 {
		t.Fatalf("after the repair: current %d pending %d, want 3 and 0", got.CurrentVersion, got.PendingVersion)
	}
	if _, err := e.store.GetVersion(context.Background(), s.ID, 2); err != nil {
		t.Fatalf("the set-aside pending version is gone: %v", err)
	}
	res, err := e.rot.Rotate(as(admin), s.ID)
	if err != nil || res.Version != 4 || res.Resumed {
		t.Fatalf("rotation after the repair: %+v %v", res, err)
	}
	if !e.canLogin(role, e.password(s.ID, 4)) || e.canLogin(role, "changed-outside-escrow") {
		t.Fatal("the rotation after the repair did not take")
	}
}
