package checkout_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/rotate/ldap"
	"github.com/escrow-pam/escrow/internal/rotate/ldaptest"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
	"github.com/escrow-pam/escrow/internal/rotate/postgres"
	"github.com/escrow-pam/escrow/internal/rotation"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	admin = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}
	alice = &escrow.Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"ops"}}
	bob   = &escrow.Principal{Subject: "bob", Email: "bob@example.com", Groups: []string{"ops"}}
	eve   = &escrow.Principal{Subject: "eve", Groups: []string{"visitors"}}
)

func as(p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(context.Background(), p), escrow.RequestInfo{RequestID: "r-" + p.Subject})
}

type env struct {
	t       testing.TB
	clock   *clock
	store   *sqlite.Store
	secrets *secrets.Service
	co      *checkout.Service
	rule    *escrow.CheckoutRule
}

// newEnv: /ops (view for group ops, list for visitors) under rule.
func newEnv(t testing.TB, rule *escrow.CheckoutRule) *env {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	keys, _ := local.New(master)
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	rot := rotation.New(rotation.Config{Store: store, Audit: store, Keys: keys, Clock: c,
		Targets: map[string]escrow.RotationTarget{escrow.TargetPostgres: postgres.New(), escrow.TargetLDAP: ldap.New()}})
	e := &env{t: t, clock: c, store: store, rule: rule,
		secrets: secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Grants: store, Checkouts: store, Clock: c}),
		co: checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys, Grants: store,
			Hooks: hook.New(nil, c.Now), Rotator: rot, Clock: c})}
	if _, err := e.secrets.SetFolderACL(as(admin), "/ops", []escrow.ACE{
		{Principal: "group:ops", Permission: escrow.PermView}, {Principal: "group:visitors", Permission: escrow.PermList}}, nil); err != nil {
		t.Fatal(err)
	}
	e.setRule(rule)
	return e
}

func (e *env) setRule(rule *escrow.CheckoutRule) {
	e.t.Helper()
	f, err := e.secrets.GetFolder(as(admin), "/ops")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.secrets.SetFolderPolicy(as(admin), "/ops", &escrow.Policy{Checkout: rule}, &f.Revision); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) secret(name string, value escrow.SecretValue) *escrow.Secret {
	e.t.Helper()
	s, err := e.secrets.Create(as(admin), secrets.CreateInput{Name: name, Folder: "/ops", Type: escrow.TypePassword, Value: value})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// records returns the audit records of action on secret id.
func (e *env) records(id, action string) []*escrow.AuditRecord {
	e.t.Helper()
	page, err := e.store.QueryAudit(context.Background(), escrow.AuditQuery{SecretID: id, Action: action, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Records
}

func successes(recs []*escrow.AuditRecord) int {
	n := 0
	for _, r := range recs {
		if r.Outcome == escrow.OutcomeSuccess {
			n++
		}
	}
	return n
}

// finish runs what the state machine runs after a checkout ends.
func (e *env) finish(id, checkoutID string) checkout.Step {
	e.t.Helper()
	step, err := e.co.Rotate(context.Background(), id, checkoutID)
	if err != nil {
		e.t.Fatalf("Rotate task: %v", err)
	}
	if err := e.co.PostHooks(context.Background(), id, checkoutID, step.Status); err != nil {
		e.t.Fatalf("PostHooks task: %v", err)
	}
	if err := e.co.Release(context.Background(), id, checkoutID); err != nil {
		e.t.Fatalf("Release task: %v", err)
	}
	return step
}

// TestRaceExactlyOneWins: 64 clients race to check one secret out. Exactly
// one wins, the other 63 get a conflict naming the winner, and there is
// exactly one successful checkout audit record.
func TestRaceExactlyOneWins(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	s := e.secret("shared", escrow.SecretValue{"password": "p4ss"})
	const n = 64
	var wg sync.WaitGroup
	var wins atomic.Int32
	var winner atomic.Value
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			p := &escrow.Principal{Subject: fmt.Sprintf("user%02d", i), Groups: []string{"ops"}}
			<-start
			res, err := e.co.Checkout(as(p), checkout.Input{SecretID: s.ID})
			errs[i] = err
			if err == nil {
				wins.Add(1)
				winner.Store(res.Checkout.Holder.Subject)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d winners, want exactly 1", wins.Load())
	}
	w := winner.Load().(string)
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, escrow.ErrConflict) {
			t.Fatalf("a loser got %v, want a conflict", err)
		}
		if msg := escrow.ErrorMessage(err); !strings.Contains(msg, w) && !strings.Contains(msg, "same moment") {
			t.Fatalf("a loser was told %q, which names neither %s nor the race", msg, w)
		}
	}
	recs := e.records(s.ID, escrow.ActionCheckout)
	if got := successes(recs); got != 1 {
		t.Fatalf("%d successful checkout audit records, want 1", got)
	}
	if len(recs) != n {
		t.Fatalf("%d checkout audit records, want one per attempt (%d)", len(recs), n)
	}
}

// TestExclusiveThenRotatedOnPostgres is the one-time password story on a
// real PostgreSQL: alice checks out and logs in with the value; nobody
// else may reveal or check out meanwhile; she checks in; the password she
// saw no longer logs in, and the new one, held only by Escrow, does.
func TestExclusiveThenRotatedOnPostgres(t *testing.T) {
	pg := pgtest.StartShared(t)
	e := newEnv(t, &escrow.CheckoutRule{Required: true, Interval: escrow.Duration(time.Hour)})
	pg.CreateRole(t, "app_exclusive", "Initial-pw-123", false)
	s := e.secret("app", escrow.SecretValue{"username": "app_exclusive", "password": "Initial-pw-123",
		"host": pg.Host, "port": pg.Port, "database": "postgres"})
	if _, err := e.co.SetRotation(as(admin), s.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres,
		Options: map[string]string{"tls": "disable"}}); err != nil {
		t.Fatal(err)
	}
	// Required: no reveal without a checkout.
	if _, err := e.secrets.Reveal(as(alice), s.ID, 0); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("reveal before checkout: %v", err)
	}
	res, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID, Comment: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	seen := res.Value["password"]
	if err := pg.CanLogin(context.Background(), "app_exclusive", seen); err != nil {
		t.Fatalf("the checked-out password does not log in: %v", err)
	}
	if !res.Checkout.Expires.Equal(e.clock.Now().Add(time.Hour)) || !res.Checkout.Rotate {
		t.Fatalf("checkout %+v", res.Checkout)
	}
	// The holder may reveal; nobody else may reveal or check out.
	if _, err := e.secrets.Reveal(as(alice), s.ID, 0); err != nil {
		t.Fatalf("holder's reveal: %v", err)
	}
	for _, try := range []func() error{
		func() error { _, err := e.secrets.Reveal(as(bob), s.ID, 0); return err },
		func() error { _, err := e.co.Checkout(as(bob), checkout.Input{SecretID: s.ID}); return err },
	} {
		err := try()
		if !errors.Is(err, escrow.ErrConflict) || !strings.Contains(escrow.ErrorMessage(err), "checked out by alice") {
			t.Fatalf("bob: %v, want a conflict naming alice", err)
		}
	}
	// eve may only list: she learns it is taken, not by whom.
	st, err := e.co.Status(as(eve), s.ID)
	if err != nil || st.Status != escrow.CheckoutActive || st.Holder.Subject != "" {
		t.Fatalf("eve's status: %+v %v", st, err)
	}
	if _, err := e.co.Checkin(as(bob), s.ID, ""); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob checking in alice's checkout: %v", err)
	}
	c, err := e.co.Checkin(as(alice), s.ID, "done")
	if err != nil || c.Status != escrow.CheckoutRotating {
		t.Fatalf("checkin: %+v %v", c, err)
	}
	// While the rotation runs, nobody gets the secret, not even alice.
	if _, err := e.co.Checkout(as(bob), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("checkout during rotation: %v", err)
	}
	if _, err := e.secrets.Reveal(as(alice), s.ID, 0); err == nil {
		t.Fatal("alice revealed after her check-in")
	}
	if step := e.finish(s.ID, c.ID); step.Status != "rotated" || step.Version != 2 {
		t.Fatalf("rotation step %+v", step)
	}
	if err := pg.CanLogin(context.Background(), "app_exclusive", seen); err == nil {
		t.Fatal("the password alice saw still logs in")
	}
	res2, err := e.co.Checkout(as(bob), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatalf("bob after release: %v", err)
	}
	if res2.Value["password"] == seen || res2.Version != 2 {
		t.Fatal("bob got the old password")
	}
	if err := pg.CanLogin(context.Background(), "app_exclusive", res2.Value["password"]); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	for _, a := range []string{escrow.ActionCheckout, escrow.ActionCheckin, escrow.ActionRotationPromote, escrow.ActionCheckoutRelease} {
		if successes(e.records(s.ID, a)) == 0 {
			t.Errorf("no successful %s audit record", a)
		}
	}
	assertNoValueInAudit(t, e, s.ID, seen, res2.Value["password"])
}

func assertNoValueInAudit(t *testing.T, e *env, id string, values ...string) {
	t.Helper()
	for _, r := range e.records(id, "") {
		b, _ := json.Marshal(r)
		for _, v := range values {
			if strings.Contains(string(b), v) {
				t.Fatalf("audit record %s holds a secret value", r.Action)
			}
		}
	}
}

// TestCheckoutRotatesOnLDAP: the same on a real OpenLDAP, where the
// account's DN is its username.
func TestCheckoutRotatesOnLDAP(t *testing.T) {
	srv := ldaptest.Start(t)
	dn := srv.AddUser(t, "svc-backup", "Initial-ldap-pw-1")
	e := newEnv(t, &escrow.CheckoutRule{})
	s := e.secret("ldap", escrow.SecretValue{"username": dn, "password": "Initial-ldap-pw-1", "host": srv.Host, "port": srv.Port})
	if _, err := e.co.SetRotation(as(admin), s.ID, &escrow.RotationConfig{Target: escrow.TargetLDAP,
		Options: map[string]string{"tls": "starttls", "ca": srv.CAPEM}}); err != nil {
		t.Fatal(err)
	}
	res, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	seen := res.Value["password"]
	if err := srv.CanBind(dn, seen); err != nil {
		t.Fatalf("the checked-out password does not bind: %v", err)
	}
	c, err := e.co.Checkin(as(alice), s.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	e.finish(s.ID, c.ID)
	if srv.CanBind(dn, seen) == nil {
		t.Fatal("the password alice saw still binds")
	}
	now, err := e.secrets.Reveal(as(bob), s.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CanBind(dn, now.Value["password"]); err != nil {
		t.Fatalf("the new password does not bind: %v", err)
	}
}

// TestExpiryByClock: a checkout authorizes nothing past its expiry, even
// before anything processed its end; the expiry task then ends it.
func TestExpiryByClock(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{Required: true, Interval: escrow.Duration(time.Minute), RotateOnCheckin: new(bool)})
	s := e.secret("short", escrow.SecretValue{"password": "p"})
	res, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute - time.Nanosecond)
	if _, err := e.secrets.Reveal(as(alice), s.ID, 0); err != nil {
		t.Fatalf("1ns before the expiry: %v", err)
	}
	e.clock.Add(time.Nanosecond)
	if _, err := e.secrets.Reveal(as(alice), s.ID, 0); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("at the expiry: %v, want refused", err)
	}
	if _, err := e.co.Extend(as(alice), s.ID); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("extend after expiry: %v", err)
	}
	step, err := e.co.CheckExpiry(context.Background(), s.ID, res.Checkout.ID)
	if err != nil || step.Status != "ended" {
		t.Fatalf("expiry task: %+v %v", step, err)
	}
	st, _ := e.co.Status(as(alice), s.ID)
	if st.Status != escrow.CheckoutReleased || st.EndReason != "expired" {
		t.Fatalf("after expiry (no rotation): %+v", st)
	}
	if successes(e.records(s.ID, escrow.ActionCheckoutExpire)) != 1 {
		t.Fatal("the expiry was not audited")
	}
}

func TestExtendLimits(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{Interval: escrow.Duration(10 * time.Minute), MaxExtensions: 1})
	s := e.secret("ext", escrow.SecretValue{"password": "p"})
	res, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.co.Extend(as(bob), s.ID); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob extending alice's checkout: %v", err)
	}
	c, err := e.co.Extend(as(alice), s.ID)
	if err != nil || !c.Expires.Equal(res.Checkout.Expires.Add(10*time.Minute)) || c.Extensions != 1 {
		t.Fatalf("extend: %+v %v", c, err)
	}
	// The expiry task sees the new end and says how long to wait on.
	e.clock.Add(10 * time.Minute)
	step, err := e.co.CheckExpiry(context.Background(), s.ID, res.Checkout.ID)
	if err != nil || step.Status != "extended" || step.WaitSeconds != 600 {
		t.Fatalf("expiry task after an extension: %+v %v", step, err)
	}
	if _, err := e.co.Extend(as(alice), s.ID); !errors.Is(err, escrow.ErrConflict) ||
		!strings.Contains(escrow.ErrorMessage(err), "allows 1") {
		t.Fatalf("second extension: %v", err)
	}
}

// TestForceCheckin: only an owner or admin may end someone's checkout; it
// is audited with the holder.
func TestForceCheckin(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	s := e.secret("force", escrow.SecretValue{"password": "p"})
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.co.ForceCheckin(as(bob), s.ID, "mine now"); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob forcing: %v", err)
	}
	c, err := e.co.ForceCheckin(as(admin), s.ID, "incident INC42")
	if err != nil || c.EndReason != "force-checkin" || c.EndedBy != "admin" {
		t.Fatalf("admin forcing: %+v %v", c, err)
	}
	recs := e.records(s.ID, escrow.ActionForceCheckin)
	var ok *escrow.AuditRecord
	for _, r := range recs {
		if r.Outcome == escrow.OutcomeSuccess {
			ok = r
		}
	}
	if ok == nil || ok.Actor.Subject != "admin" || ok.Details["holder"] != "alice" || ok.Comment != "incident INC42" {
		t.Fatalf("force check-in audit: %+v", ok)
	}
	if len(recs) != 2 {
		t.Fatalf("%d force check-in records, want bob's denial and admin's success", len(recs))
	}
}

// TestVetoingHookBlocks: a pre-checkout hook that says no blocks the
// checkout with its message; each call is audited; the slot stays free.
func TestVetoingHookBlocks(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	key := "hook-signing-key-0123456789"
	e.secret("hook-key", escrow.SecretValue{"password": key})
	var calls atomic.Int32
	var got atomic.Value
	rv := hook.NewReceiver([]byte(key), 0, e.clock.Now, func(_ context.Context, ev escrow.HookEvent) escrow.HookResult {
		calls.Add(1)
		got.Store(ev)
		return escrow.HookResult{Allow: false, Message: "change window CHG0042 is closed"}
	})
	srv := httptest.NewServer(rv)
	t.Cleanup(srv.Close)
	e.setRule(&escrow.CheckoutRule{PreHooks: []escrow.HookRule{{Name: "cab", URL: srv.URL, KeySecret: "/ops/hook-key", StopOnFailure: true}}})
	s := e.secret("guarded", escrow.SecretValue{"password": "p"})
	_, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID, Comment: "why"})
	if !errors.Is(err, escrow.ErrForbidden) || !strings.Contains(escrow.ErrorMessage(err), "change window CHG0042 is closed") {
		t.Fatalf("checkout: %v, want the hook's veto", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("hook called %d times", calls.Load())
	}
	if ev := got.Load().(escrow.HookEvent); ev.Event != "pre-checkout" || ev.Subject != "alice" || ev.SecretID != s.ID || ev.Comment != "why" {
		t.Fatalf("hook event %+v", ev)
	}
	hooks := e.records(s.ID, escrow.ActionHook)
	if len(hooks) != 1 || hooks[0].Outcome != escrow.OutcomeDenied || hooks[0].Details["hook"] != "cab" {
		t.Fatalf("hook audit: %+v", hooks)
	}
	if st, _ := e.co.Status(as(alice), s.ID); st.Status != escrow.CheckoutReleased {
		t.Fatalf("slot after the veto: %+v", st)
	}

	// A hook that is down blocks with stopOnFailure, and not without it.
	srv.Close()
	e.setRule(&escrow.CheckoutRule{PreHooks: []escrow.HookRule{{Name: "cab", URL: srv.URL, KeySecret: "/ops/hook-key", StopOnFailure: true}}})
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrUnavailable) ||
		!strings.Contains(escrow.ErrorMessage(err), `hook "cab" failed`) {
		t.Fatalf("down hook with stopOnFailure: %v", err)
	}
	e.setRule(&escrow.CheckoutRule{PreHooks: []escrow.HookRule{{Name: "cab", URL: srv.URL, KeySecret: "/ops/hook-key"}}})
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); err != nil {
		t.Fatalf("down hook without stopOnFailure: %v", err)
	}
	assertNoValueInAudit(t, e, s.ID, key)
}

// TestRotationFailureLocks: a failed rotation keeps the secret locked as
// rotation_failed, writes an alert record and backs off.
func TestRotationFailureLocks(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	s := e.secret("fail", escrow.SecretValue{"username": "nobody", "password": "p", "host": "127.0.0.1", "port": "1"})
	if _, err := e.co.SetRotation(as(admin), s.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres,
		Options: map[string]string{"tls": "disable"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); err != nil {
		t.Fatal(err)
	}
	c, err := e.co.Checkin(as(alice), s.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := e.co.Rotate(context.Background(), s.ID, c.ID)
	if !errors.Is(rerr, escrow.ErrUnavailable) {
		t.Fatalf("rotation against a closed port: %v", rerr)
	}
	for i, want := range []int64{5, 10, 20} {
		step, err := e.co.RotationFailed(context.Background(), s.ID, c.ID, checkout.TaskError{Error: "Escrow.unavailable", Cause: escrow.ErrorMessage(rerr)})
		if err != nil || step.WaitSeconds != want {
			t.Fatalf("attempt %d: %+v %v, want a %ds backoff", i+1, step, err, want)
		}
	}
	st, _ := e.co.Status(as(alice), s.ID)
	if st.Status != escrow.CheckoutRotationFailed || st.RotationAttempts != 3 || !strings.Contains(st.RotationError, "PostgreSQL") {
		t.Fatalf("slot: %+v", st)
	}
	if _, err := e.co.Checkout(as(bob), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrConflict) ||
		!strings.Contains(escrow.ErrorMessage(err), "rotating its password failed") {
		t.Fatalf("checkout of a failed rotation: %v", err)
	}
	alerts := e.records(s.ID, escrow.ActionRotationFailed)
	if len(alerts) != 3 || alerts[0].Details["alert"] != "true" || alerts[0].Outcome != escrow.OutcomeFailed {
		t.Fatalf("alert records: %+v", alerts)
	}
	if err := e.co.Release(context.Background(), s.ID, "someone-else"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.co.Status(as(alice), s.ID); st.Status != escrow.CheckoutRotationFailed {
		t.Fatal("a stale execution released the slot")
	}
}

func TestCheckoutNeedsPolicyAndView(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	s := e.secret("v", escrow.SecretValue{"password": "p"})
	if _, err := e.co.Checkout(as(eve), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("eve (list only): %v", err)
	}
	e.setRule(nil)
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("no checkout policy: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	for attempts, want := range map[int]int64{1: 5, 2: 10, 3: 20, 10: 2560, 11: 3600, 50: 3600} {
		if got := checkout.Backoff(attempts); got != want {
			t.Errorf("Backoff(%d) = %d, want %d", attempts, got, want)
		}
	}
}

// TestCheckoutUnderApproval: a policy that puts checkout under approval
// refuses a checkout without a grant; with one, the checkout carries the
// grant's ticket and never outlives the grant, and cannot be extended past
// it.
func TestCheckoutUnderApproval(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{Interval: escrow.Duration(time.Hour), MaxExtensions: 3})
	f, _ := e.secrets.GetFolder(as(admin), "/ops")
	pol := &escrow.Policy{Checkout: &escrow.CheckoutRule{Interval: escrow.Duration(time.Hour), MaxExtensions: 3},
		Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessCheckout},
			Steps:          []escrow.ApprovalStep{{Approvers: []string{"user:bob"}, Quorum: 1}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour)}}
	if _, err := e.secrets.SetFolderPolicy(as(admin), "/ops", pol, &f.Revision); err != nil {
		t.Fatal(err)
	}
	s := e.secret("approved", escrow.SecretValue{"password": "p"})
	if _, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrForbidden) ||
		!strings.Contains(escrow.ErrorMessage(err), "--access checkout") {
		t.Fatalf("checkout without a grant: %v", err)
	}
	acc := access.New(access.Config{Store: e.store, Requests: e.store, Audit: e.store, Clock: e.clock})
	r, err := acc.Request(as(alice), access.RequestInput{SecretID: s.ID, Access: escrow.AccessCheckout, Duration: 90 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := acc.Decide(as(alice), r.ID, true, ""); err == nil {
		t.Fatal("alice approved her own request")
	}
	_, g, err := acc.Decide(as(bob), r.ID, true, "")
	if err != nil || g == nil {
		t.Fatalf("bob approves: %v", err)
	}
	res, err := e.co.Checkout(as(alice), checkout.Input{SecretID: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkout.GrantID != g.ID || !res.Checkout.Expires.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("checkout under a grant: %+v", res.Checkout)
	}
	if _, err := e.co.Extend(as(alice), s.ID); !errors.Is(err, escrow.ErrConflict) || !strings.Contains(escrow.ErrorMessage(err), "grant") {
		t.Fatalf("extending past the grant's end: %v", err)
	}
	// bob holds no grant of his own: his checkout is refused for that, not
	// only because alice holds it.
	if _, err := e.co.Checkout(as(bob), checkout.Input{SecretID: s.ID}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob without a grant: %v", err)
	}
}

// TestPrivilegedAccountNeedsOwner: naming a privileged account lends its
// credentials to the rotation, past its own policy, so it takes owner on
// it; view is not enough. The account fields are pinned by the server,
// whatever the caller sends.
func TestPrivilegedAccountNeedsOwner(t *testing.T) {
	e := newEnv(t, &escrow.CheckoutRule{})
	priv := e.secret("dba", escrow.SecretValue{"username": "dba", "password": "dba-pw"})
	mine, err := e.secrets.Create(as(admin), secrets.CreateInput{Name: "mine", Folder: "/ops", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "app", "password": "p", "host": "db.internal"},
		ACL:   []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermOwner}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &escrow.RotationConfig{Target: escrow.TargetPostgres, Privileged: priv.ID, Pinned: map[string]string{"host": "evil.example"}}
	if _, err := e.co.SetRotation(as(alice), mine.ID, cfg); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice (view on the privileged secret): %v, want forbidden", err)
	}
	got, err := e.co.SetRotation(as(admin), mine.ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Rotation.Pinned; p["host"] != "db.internal" || p["username"] != "app" {
		t.Fatalf("pinned %v, want the secret's own account", p)
	}
	if _, err := e.co.SetRotation(as(alice), mine.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres, Privileged: mine.ID}); escrow.ErrorCode(err) != escrow.CodeInvalid {
		t.Fatalf("its own privileged account: %v", err)
	}
	if _, err := e.co.SetRotation(as(bob), mine.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob (view only) sets a rotation: %v", err)
	}
}
