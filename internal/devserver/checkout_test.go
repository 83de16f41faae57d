package devserver

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// pgSecret stores a PostgreSQL role's credentials at /ops/<role> under a
// checkout policy of the given interval, with its rotation set, over HTTP.
func pgSecret(t *testing.T, s *Server, pg *pgtest.Server, role string, interval time.Duration) string {
	t.Helper()
	pg.CreateRole(t, role, "Initial-"+role+"-1", false)
	adm := devClient{t, s, "admin"}
	pol := `{"path":"/ops","policy":{"checkout":{"interval":"` + interval.String() + `"}}}`
	if code := adm.call("PUT", "/v1/folders/policy", pol, nil); code != 200 {
		t.Fatalf("folder policy: %d", code)
	}
	if code := adm.call("PUT", "/v1/folders", `{"path":"/ops","acl":[{"principal":"group:engineering","permission":"view"}]}`, nil); code != 200 {
		t.Fatalf("folder acl: %d", code)
	}
	var sec escrow.Secret
	body, _ := json.Marshal(map[string]any{"name": role, "folder": "/ops", "type": "password",
		"value": map[string]string{"username": role, "password": "Initial-" + role + "-1", "host": pg.Host, "port": pg.Port, "database": "postgres"}})
	if code := adm.call("POST", "/v1/secrets", string(body), &sec); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code := adm.call("PUT", "/v1/secrets/"+sec.ID+"/rotation", `{"rotation":{"target":"postgres","options":{"tls":"disable"}}}`, nil); code != 200 {
		t.Fatalf("rotation: %d", code)
	}
	return sec.ID
}

// waitReleased polls the slot until the workflow released it.
func waitReleased(t *testing.T, c devClient, id string, limit time.Duration) *escrow.Checkout {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var st escrow.Checkout
		if code := c.call("GET", "/v1/secrets/"+id+"/checkout", "", &st); code != 200 {
			t.Fatalf("status: %d", code)
		}
		if st.Status == escrow.CheckoutReleased {
			return &st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the checkout is still %s after %s (%s)", st.Status, limit, st.RotationError)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) currentPassword(t *testing.T, id string) (string, int) {
	t.Helper()
	var rv struct {
		Version int
		Value   escrow.SecretValue
	}
	if code := (devClient{t, s, "admin"}).call("GET", "/v1/secrets/"+id+"/value", "", &rv); code != 200 {
		t.Fatalf("admin reveal: %d", code)
	}
	return rv.Value["password"], rv.Version
}

// TestAutoCheckinRotatesOnPostgres: nobody checks in; the 2 s checkout
// expires and the checkout workflow, in the embedded runner, rotates the
// password on a real PostgreSQL and releases the secret.
func TestAutoCheckinRotatesOnPostgres(t *testing.T) {
	pg := pgtest.StartShared(t)
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := pgSecret(t, s, pg, "app_autocheckin", 2*time.Second)
	alice := devClient{t, s, "alice"}
	var co checkout.Result
	start := time.Now()
	if code := alice.call("POST", "/v1/secrets/"+id+"/checkout", `{"comment":"deploy"}`, &co); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	seen := co.Value["password"]
	if err := pg.CanLogin(context.Background(), "app_autocheckin", seen); err != nil {
		t.Fatalf("checked-out password: %v", err)
	}
	if code := (devClient{t, s, "carol"}).call("POST", "/v1/secrets/"+id+"/checkout", "", nil); code != 409 {
		t.Fatalf("carol's checkout while alice holds it: %d, want 409", code)
	}
	st := waitReleased(t, alice, id, 20*time.Second)
	t.Logf("expired, rotated and released %.1fs after the checkout", time.Since(start).Seconds())
	if st.EndReason != "expired" || st.EndedBy != checkout.Workflow {
		t.Fatalf("slot: %+v", st)
	}
	if time.Since(start) < 2*time.Second {
		t.Fatal("released before the checkout's expiry")
	}
	if pg.CanLogin(context.Background(), "app_autocheckin", seen) == nil {
		t.Fatal("the password alice saw still logs in")
	}
	nw, v := s.currentPassword(t, id)
	if v != 2 || nw == seen {
		t.Fatalf("current version %d", v)
	}
	if err := pg.CanLogin(context.Background(), "app_autocheckin", nw); err != nil {
		t.Fatalf("the rotated password: %v", err)
	}
	for _, a := range []string{escrow.ActionCheckoutExpire, escrow.ActionRotationPromote, escrow.ActionCheckoutRelease} {
		waitForSecretAudit(t, s, id, a)
	}
}

// TestForceCheckinAndRotateNowOnPostgres: an admin ends alice's checkout,
// which rotates; then rotates again on demand.
func TestForceCheckinAndRotateNowOnPostgres(t *testing.T) {
	pg := pgtest.StartShared(t)
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := pgSecret(t, s, pg, "app_force", time.Hour)
	alice, adm := devClient{t, s, "alice"}, devClient{t, s, "admin"}
	var co checkout.Result
	if code := alice.call("POST", "/v1/secrets/"+id+"/checkout", "", &co); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	if code := (devClient{t, s, "carol"}).call("POST", "/v1/secrets/"+id+"/force-checkin", `{"comment":"mine"}`, nil); code != 403 {
		t.Fatalf("carol forcing: %d, want 403", code)
	}
	if code := adm.call("POST", "/v1/secrets/"+id+"/force-checkin", `{"comment":"INC0001 on call"}`, nil); code != 200 {
		t.Fatalf("admin forcing: %d", code)
	}
	waitReleased(t, alice, id, 20*time.Second)
	if pg.CanLogin(context.Background(), "app_force", co.Value["password"]) == nil {
		t.Fatal("alice's password survived the forced check-in")
	}
	rec := waitForSecretAudit(t, s, id, escrow.ActionForceCheckin)
	if rec.Actor.Subject != "admin" || rec.Details["holder"] != "alice" || rec.Comment != "INC0001 on call" {
		t.Fatalf("force check-in record: %+v", rec)
	}
	before, _ := s.currentPassword(t, id)
	if code := adm.call("POST", "/v1/secrets/"+id+"/rotate", "", nil); code != 202 {
		t.Fatalf("rotate now: %d", code)
	}
	waitReleased(t, alice, id, 20*time.Second)
	after, v := s.currentPassword(t, id)
	if after == before || v != 3 || pg.CanLogin(context.Background(), "app_force", after) != nil {
		t.Fatalf("rotate-now: version %d", v)
	}
}

// waitForSecretAudit waits for a successful record of action on secret id.
func waitForSecretAudit(t *testing.T, s *Server, id, action string) *escrow.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err := s.store.QueryAudit(context.Background(), escrow.AuditQuery{SecretID: id, Action: action})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if r.Outcome == escrow.OutcomeSuccess {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful %s record", action)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
