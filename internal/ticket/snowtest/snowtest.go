// Package snowtest is a ServiceNow-shaped Table API server for tests: the
// CLI's testscripts and the browser test validate change tickets against
// it as they would against a real instance.
//
// It knows two change requests:
//
//   - CHG0012345, state Implement, group engineering, "Orders DB index
//     migration", assigned to alice, planned from an hour ago to 8 hours on;
//   - CHG0099999, state Closed, group approvers, "Old change".
//
// Work notes written back are kept, and GET /test/notes (which is not
// ServiceNow's) returns them as {"notes": ["<path>: <text>", ...]}.
//
// It must never be imported by non-test code.
package snowtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// ticket is one ticket the server knows.
type ticket struct {
	number, state, summary, assignee, email, group, ci string
	start, end                                         time.Time
}

// New serves the Table API as ServiceNow documents it
// (sysparm_display_value=all: every field a {display_value, value} pair,
// dates in UTC "2006-01-02 15:04:05"). It refuses requests without the
// expected basic credentials. The caller closes it.
func New(user, password string) *httptest.Server {
	now := time.Now().UTC()
	tickets := map[string]ticket{
		"CHG0012345": {"CHG0012345", "Implement", "Orders DB index migration", "Alice Smith", "alice@example.com", "engineering", "orders-db", now.Add(-time.Hour), now.Add(8 * time.Hour)},
		"CHG0099999": {"CHG0099999", "Closed", "Old change", "Bob Jones", "bob@example.com", "approvers", "orders-db", now.Add(-72 * time.Hour), now.Add(-48 * time.Hour)},
	}
	field := func(display, value string) map[string]string {
		return map[string]string{"display_value": display, "value": value}
	}
	date := func(t time.Time) map[string]string {
		v := t.Format("2006-01-02 15:04:05")
		return field(v, v)
	}
	var mu sync.Mutex
	var notes []string // work notes written back, for the tests to read
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/test/notes" { // not ServiceNow: the tests' window into what was written
			mu.Lock()
			json.NewEncoder(w).Encode(map[string]any{"notes": notes})
			mu.Unlock()
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}`))
			return
		}
		if r.Method == http.MethodPatch {
			var body struct {
				WorkNotes string `json:"work_notes"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			mu.Lock()
			notes = append(notes, r.URL.Path+": "+body.WorkNotes)
			mu.Unlock()
			id := sysID("CHG0012345")
			json.NewEncoder(w).Encode(map[string]any{"result": map[string]any{"sys_id": field(id, id)}})
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/api/now/table/") || r.URL.Query().Get("sysparm_display_value") != "all" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":{"message":"bad request"},"status":"failure"}`))
			return
		}
		number := strings.TrimPrefix(r.URL.Query().Get("sysparm_query"), "number=")
		t, ok := tickets[number]
		if !ok || !strings.HasSuffix(r.URL.Path, "/change_request") {
			w.Write([]byte(`{"result":[]}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"result": []map[string]any{{
			"sys_id":                field(sysID(t.number), sysID(t.number)),
			"number":                field(t.number, t.number),
			"state":                 field(t.state, "-1"),
			"short_description":     field(t.summary, t.summary),
			"assigned_to":           field(t.assignee, "u1"),
			"assigned_to.user_name": field(strings.Split(t.email, "@")[0], strings.Split(t.email, "@")[0]),
			"assigned_to.email":     field(t.email, t.email),
			"assignment_group":      field(t.group, "g1"),
			"start_date":            date(t.start),
			"end_date":              date(t.end),
			"cmdb_ci":               field(t.ci, "ci1"),
		}}})
	}))
}

// sysID is the ServiceNow-shaped sys_id (32 hex digits) the server gives a
// ticket number: a PATCH answers with CHG0012345's whatever its path.
func sysID(number string) string {
	sum := sha256.Sum256([]byte(number))
	return hex.EncodeToString(sum[:16])
}
