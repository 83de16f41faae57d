package snowtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/ticket/snowtest"
)

// get calls the server as ServiceNow's Table API is called, with the given
// credentials, and returns the status and body.
func get(t *testing.T, base, path, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	srv := snowtest.New("escrow", "pw")
	defer srv.Close()
	q := func(number string) string {
		return "/api/now/table/change_request?" + url.Values{"sysparm_query": {"number=" + number}, "sysparm_display_value": {"all"}}.Encode()
	}

	if code, body := get(t, srv.URL, q("CHG0012345"), "escrow", "wrong"); code != http.StatusUnauthorized || !strings.Contains(body, "User Not Authenticated") {
		t.Errorf("wrong password: %d %s, want 401 User Not Authenticated", code, body)
	}
	if code, _ := get(t, srv.URL, q("CHG0012345"), "", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}

	code, body := get(t, srv.URL, q("CHG0012345"), "escrow", "pw")
	if code != http.StatusOK {
		t.Fatalf("CHG0012345: %d %s", code, body)
	}
	var out struct {
		Result []map[string]struct {
			Display string `json:"display_value"`
			Value   string `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Result) != 1 {
		t.Fatalf("CHG0012345: %v %s", err, body)
	}
	for name, want := range map[string]string{"number": "CHG0012345", "state": "Implement",
		"short_description": "Orders DB index migration", "assignment_group": "engineering", "assigned_to.email": "alice@example.com"} {
		if got := out.Result[0][name].Display; got != want {
			t.Errorf("CHG0012345 %s = %q, want %q", name, got, want)
		}
	}
	if id := out.Result[0]["sys_id"].Value; len(id) != 32 {
		t.Errorf("sys_id %q is not 32 hex digits", id)
	}

	if code, body := get(t, srv.URL, q("CHG0000404"), "escrow", "pw"); code != http.StatusOK || body != `{"result":[]}` {
		t.Errorf("unknown ticket: %d %s, want 200 and no result", code, body)
	}
	if code, _ := get(t, srv.URL, "/api/now/table/change_request?sysparm_query=number%3DCHG0012345", "escrow", "pw"); code != http.StatusBadRequest {
		t.Errorf("without sysparm_display_value=all: %d, want 400", code)
	}

	// A work note written back is what /test/notes shows.
	req, err := http.NewRequest(http.MethodPatch, srv.URL+"/api/now/table/change_request/abc", strings.NewReader(`{"work_notes":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("escrow", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := get(t, srv.URL, "/test/notes", "", ""); code != http.StatusOK || !strings.Contains(body, `"/api/now/table/change_request/abc: hello"`) {
		t.Errorf("/test/notes: %d %s", code, body)
	}
}
