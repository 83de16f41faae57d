package devserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

type devClient struct {
	t    *testing.T
	s    *Server
	user string
}

func (c devClient) call(method, path, body string, out any) int {
	c.t.Helper()
	tok, err := c.s.Token(c.user)
	if err != nil {
		c.t.Fatal(err)
	}
	req, _ := http.NewRequest(method, c.s.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// approvedGrant files a request for /prod/root/aws-root lasting d as alice
// and has bob and carol approve it.
func approvedGrant(t *testing.T, s *Server, d time.Duration) (secretID, requestID string, g *escrow.Grant) {
	t.Helper()
	sec, err := s.store.GetSecretByPath(context.Background(), "/prod/root", "aws-root")
	if err != nil {
		t.Fatal(err)
	}
	var r escrow.Request
	body := `{"duration":"` + d.String() + `","comment":"CHG0012345"}`
	if code := (devClient{t, s, "alice"}).call("POST", "/v1/secrets/"+sec.ID+"/requests", body, &r); code != 201 {
		t.Fatalf("request: %d", code)
	}
	var dec struct{ Grant *escrow.Grant }
	for _, u := range []string{"bob", "carol"} {
		if code := (devClient{t, s, u}).call("POST", "/v1/requests/"+r.ID+"/decision", `{"decision":"approve"}`, &dec); code != 200 {
			t.Fatalf("%s approves: %d", u, code)
		}
	}
	if dec.Grant == nil {
		t.Fatal("no grant after two approvals")
	}
	return sec.ID, r.ID, dec.Grant
}

// waitForAudit polls the audit log for action on grant g by actor.
func waitForAudit(t *testing.T, s *Server, action, grantID string, limit time.Duration) *escrow.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		page, err := s.store.QueryAudit(context.Background(), escrow.AuditQuery{Action: action, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if r.Details["grant"] == grantID {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// TestWorkflowExpiresGrant: with the sweeper out of the way, the embedded
// runner executing statemachines/access-request.asl.json waits for the
// decision, then until the grant's end, and expires it (audited).
func TestWorkflowExpiresGrant(t *testing.T) {
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Seed: true, SweepInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	secretID, _, g := approvedGrant(t, s, 2*time.Second)
	if code := (devClient{t, s, "alice"}).call("GET", "/v1/secrets/"+secretID+"/value", "", nil); code != 200 {
		t.Fatalf("reveal within the window: %d", code)
	}
	rec := waitForAudit(t, s, "grant.expire", g.ID, 15*time.Second)
	if rec == nil {
		t.Fatal("the workflow did not expire the grant")
	}
	if rec.Actor.Subject != "escrow-workflow" {
		t.Fatalf("grant expired by %q, want the workflow", rec.Actor.Subject)
	}
	// Never before the end (how soon after is measured by make bench).
	if rec.Time.Before(g.End) {
		t.Fatalf("expired at %v, before the end %v", rec.Time, g.End)
	}
	if code := (devClient{t, s, "alice"}).call("GET", "/v1/secrets/"+secretID+"/value", "", nil); code != 403 {
		t.Fatalf("reveal after the window: %d", code)
	}
}

// TestRestartMidWaitExpiresOnTime: the dev server stops while the workflow
// waits for a grant's end; a new server on the same data resumes the
// execution and expires the grant, not before its end.
func TestRestartMidWaitExpiresOnTime(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Seed: true, SweepInterval: time.Hour}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, _, g := approvedGrant(t, s, 3*time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rec := waitForAudit(t, s2, "grant.expire", g.ID, 20*time.Second)
	if rec == nil || rec.Actor.Subject != "escrow-workflow" {
		t.Fatalf("after a restart the workflow did not expire the grant: %+v", rec)
	}
	// Never before the end (how soon after is measured by make bench).
	if rec.Time.Before(g.End) {
		t.Fatalf("expired at %v, before the end %v", rec.Time, g.End)
	}
}
