package report_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/report"
)

// tokenAuth takes the bearer token as the subject; "auditor" and "admin"
// get their roles.
type tokenAuth struct{}

func (tokenAuth) Verify(_ context.Context, tok string) (*escrow.Principal, error) {
	p := &escrow.Principal{Subject: tok}
	if tok == escrow.RoleAuditor || tok == escrow.RoleAdmin {
		p.Roles = []string{tok}
	}
	return p, nil
}

// breakingLog fails every audit query after the first few.
type breakingLog struct {
	escrow.AuditLog
	n, after atomic.Int64
}

func (b *breakingLog) QueryAudit(ctx context.Context, q escrow.AuditQuery) (escrow.AuditPage, error) {
	if b.n.Add(1) > b.after.Load() {
		return escrow.AuditPage{}, errors.New("the disk went away")
	}
	return b.AuditLog.QueryAudit(ctx, q)
}

func get(t *testing.T, base, path, token string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestHTTP runs reports through the API handler: streamed CSV with a file
// name, JSON by default, refusals as error bodies, and a report that fails
// once its rows are on the wire cut off rather than ended cleanly.
func TestHTTP(t *testing.T) {
	st := openSQLite(t)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := range 3000 {
		rec := escrow.NewAuditRecord(as(alice), base.Add(time.Duration(i)*time.Millisecond), escrow.ActionSecretReveal, "secret:S1")
		rec.SecretID, rec.Comment = "S1", "a comment long enough that a few pages fill the buffers on the way out"
		if err := st.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(log escrow.AuditLog) string {
		svc := report.New(report.Config{Store: st, Requests: st, Audit: log, PageSize: 100})
		srv := httptest.NewServer(httpapi.New(httpapi.Config{Reports: svc, Auth: tokenAuth{}}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	url := serve(st)

	resp, body, err := get(t, url, "/v1/reports/access-by-user?user=alice&format=csv", "auditor")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8; header=present" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="escrow-access-by-user-`) ||
		strings.Count(string(body), "\r\n") != 3001 {
		t.Fatalf("csv: %d %v %d lines %v", resp.StatusCode, resp.Header, strings.Count(string(body), "\r\n"), err)
	}

	resp, body, err = get(t, url, "/v1/reports/access-by-user?user=alice&from="+base.Add(time.Second).Format(time.RFC3339), "admin")
	var rows []map[string]any
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &rows) != nil ||
		len(rows) != 2000 || rows[0]["actor"] != "alice" || resp.Header.Get("Content-Disposition") != "" {
		t.Fatalf("json: %d %v %d rows %v", resp.StatusCode, resp.Header, len(rows), err)
	}

	resp, body, _ = get(t, url, "/v1/reports", "bob")
	var cat struct{ Reports []report.Info }
	if resp.StatusCode != 200 || json.Unmarshal(body, &cat) != nil || len(cat.Reports) != len(report.Catalog()) {
		t.Errorf("catalogue: %d %s", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		path, token string
		status      int
		code        string
	}{
		{"/v1/reports/activity", "alice", 403, "forbidden"},
		{"/v1/reports/activity?limit=5", "auditor", 400, "invalid"},
		{"/v1/reports/activity?format=xml", "auditor", 400, "invalid"},
		{"/v1/reports/activity?from=yesterday", "auditor", 400, "invalid"},
		{"/v1/reports/nothing", "auditor", 404, "not_found"},
	} {
		resp, body, _ := get(t, url, tc.path, tc.token)
		var e struct{ Error struct{ Code string } }
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Error.Code != tc.code ||
			resp.Header.Get("Content-Disposition") != "" {
			t.Errorf("%s as %s: %d %s", tc.path, tc.token, resp.StatusCode, body)
		}
	}

	// A failure before any byte went out is still an error answer.
	early := &breakingLog{AuditLog: st}
	early.after.Store(2)
	resp, body, _ = get(t, serve(early), "/v1/reports/access-by-user?user=alice&format=csv", "auditor")
	if resp.StatusCode != 500 || !strings.Contains(string(body), `"code":"internal"`) || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("early failure: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// A failure once rows are on the wire cuts the transfer.
	late := &breakingLog{AuditLog: st}
	late.after.Store(20)
	resp, body, err = get(t, serve(late), "/v1/reports/access-by-user?user=alice&format=csv", "auditor")
	if resp.StatusCode != 200 || err == nil || len(body) == 0 {
		t.Errorf("late failure: %d, %d bytes, read error %v; want a cut transfer", resp.StatusCode, len(body), err)
	}
}
