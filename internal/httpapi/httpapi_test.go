package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/devserver"
	"github.com/escrow-pam/escrow/internal/httpapi"
)

// server starts the real dev stack (SQLite, local keys, the demo issuer
// whose JWKS the verifier fetches over HTTP) on a loopback port.
func server(t *testing.T) (*devserver.Server, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := devserver.Start(context.Background(), devserver.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

type client struct {
	t     *testing.T
	base  string
	token string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

func (c client) do(method, path, body string) response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func as(t *testing.T, s *devserver.Server, user string) client {
	t.Helper()
	tok, err := s.Token(user)
	if err != nil {
		t.Fatal(err)
	}
	return client{t, s.URL, tok}
}

// errorCode checks the error body's shape and returns its code.
func errorCode(t *testing.T, r response) string {
	t.Helper()
	var b struct {
		Error struct{ Code, Message, RequestID string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Code == "" || b.Error.Message == "" || b.Error.RequestID == "" {
		t.Fatalf("error body %q is not {error:{code,message,requestId}}", r.body)
	}
	if r.header.Get("X-Request-Id") != b.Error.RequestID {
		t.Fatalf("requestId %q differs from X-Request-Id %q", b.Error.RequestID, r.header.Get("X-Request-Id"))
	}
	return b.Error.Code
}

func TestSecretLifecycleOverHTTP(t *testing.T) {
	s, _ := server(t)
	adm := as(t, s, "admin")
	r := adm.do("POST", "/v1/secrets", `{"name":"pg","folder":"/prod/db","type":"password","value":{"username":"postgres","password":"s3cret"}}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	sec := r.json(t)
	id := sec["id"].(string)
	if sec["path"] != "/prod/db/pg" || r.header.Get("Location") != "/v1/secrets/"+id {
		t.Fatalf("create answer: %s / %s", r.body, r.header.Get("Location"))
	}
	if strings.Contains(string(r.body), "s3cret") {
		t.Fatal("create answer echoes the value")
	}
	r = adm.do("GET", "/v1/secrets/"+id+"/value", "")
	if r.status != 200 || r.json(t)["value"].(map[string]any)["password"] != "s3cret" {
		t.Fatalf("reveal: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("reveal must not be cacheable: %q", r.header.Get("Cache-Control"))
	}
	r = adm.do("PUT", "/v1/secrets/"+id, `{"revision":1,"value":{"password":"two"}}`)
	if r.status != 200 || r.json(t)["currentVersion"].(float64) != 2 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	r = adm.do("PUT", "/v1/secrets/"+id, `{"revision":1,"description":"stale"}`)
	if r.status != 409 || errorCode(t, r) != "conflict" {
		t.Fatalf("stale update: %d %s", r.status, r.body)
	}
	r = adm.do("GET", "/v1/secrets/"+id+"/versions", "")
	if r.status != 200 || len(r.json(t)["versions"].([]any)) != 2 {
		t.Fatalf("versions: %d %s", r.status, r.body)
	}
	r = adm.do("GET", "/v1/secrets?path=/prod/db/pg", "")
	if r.status != 200 || len(r.json(t)["secrets"].([]any)) != 1 {
		t.Fatalf("list by path: %d %s", r.status, r.body)
	}

	// alice may not see it until a folder grant gives her view.
	alice := as(t, s, "alice")
	if r = alice.do("GET", "/v1/secrets/"+id+"/value", ""); r.status != 404 || errorCode(t, r) != "not_found" {
		t.Fatalf("alice before grant: %d %s", r.status, r.body)
	}
	if r = adm.do("PUT", "/v1/folders", `{"path":"/prod","acl":[{"principal":"group:engineering","permission":"view"}]}`); r.status != 200 {
		t.Fatalf("folder acl: %d %s", r.status, r.body)
	}
	if r = alice.do("GET", "/v1/secrets/"+id+"/value", ""); r.status != 200 {
		t.Fatalf("alice after grant: %d %s", r.status, r.body)
	}
	if r = alice.do("DELETE", "/v1/secrets/"+id, ""); r.status != 403 || errorCode(t, r) != "forbidden" {
		t.Fatalf("alice delete: %d %s", r.status, r.body)
	}
	if r = adm.do("DELETE", "/v1/secrets/"+id, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r = adm.do("GET", "/v1/secrets/"+id, ""); r.status != 200 || r.json(t)["deletedAt"] == nil {
		t.Fatalf("get deleted: %d %s", r.status, r.body)
	}

	// The audit log shows every step, to auditors only.
	if r = alice.do("GET", "/v1/audit", ""); r.status != 403 {
		t.Fatalf("alice audit: %d", r.status)
	}
	r = as(t, s, "auditor").do("GET", "/v1/audit?secret="+id+"&limit=100", "")
	if r.status != 200 {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	var page struct {
		Records []struct{ Action, Outcome, SecretID string } `json:"records"`
	}
	json.Unmarshal(r.body, &page)
	var trail []string
	for _, rec := range page.Records {
		trail = append([]string{rec.Action + ":" + rec.Outcome}, trail...)
	}
	want := "secret.create:success secret.reveal:success secret.update:success secret.update:failed secret.versions:success " +
		"secret.reveal:denied secret.reveal:success secret.delete:denied secret.delete:success secret.get:success"
	if strings.Join(trail, " ") != want {
		t.Fatalf("audit trail:\n got %s\nwant %s", strings.Join(trail, " "), want)
	}
}

func TestAuthentication(t *testing.T) {
	s, dir := server(t)
	issuerURL := s.URL + "/dev/oidc"
	own := readKey(t, filepath.Join(dir, "dev-issuer.key"))
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	kid := jwksKid(t, issuerURL)
	now := time.Now().Unix()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": issuerURL, "aud": devserver.Audience, "sub": "alice", "groups": []string{"engineering"},
			"iat": now, "nbf": now, "exp": now + 3600}
		if mod != nil {
			mod(c)
		}
		return c
	}
	valid := sign(own, kid, claims(nil))
	cases := map[string]string{
		"no token":       "",
		"garbage":        "not.a.jwt",
		"expired":        sign(own, kid, claims(func(c map[string]any) { c["exp"] = now - 3600 })),
		"not yet valid":  sign(own, kid, claims(func(c map[string]any) { c["nbf"] = now + 3600 })),
		"wrong audience": sign(own, kid, claims(func(c map[string]any) { c["aud"] = "someone-else" })),
		"wrong issuer":   sign(own, kid, claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" })),
		"no subject":     sign(own, kid, claims(func(c map[string]any) { delete(c, "sub") })),
		"other signer":   sign(other, kid, claims(nil)),
		"alg none":       unsigned(t, issuerURL),
		"swapped sig":    swapSignature(t, valid, sign(other, kid, claims(nil))),
	}
	if r := (client{t, s.URL, valid}).do("GET", "/v1/me", ""); r.status != 200 {
		t.Fatalf("the test's own valid token is refused: %d %s", r.status, r.body)
	}
	for name, tok := range cases {
		r := client{t, s.URL, tok}.do("GET", "/v1/secrets", "")
		if r.status != 401 || errorCode(t, r) != "unauthenticated" || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// Each failure is audited once.
	r := as(t, s, "auditor").do("GET", "/v1/audit?action=auth.failed&limit=100", "")
	if n := len(r.json(t)["records"].([]any)); n != len(cases) {
		t.Fatalf("%d auth.failed records, want %d", n, len(cases))
	}
	// A valid token is accepted, and /v1/me reflects its claims.
	r = as(t, s, "carol").do("GET", "/v1/me", "")
	if r.status != 200 || r.json(t)["sub"] != "carol" {
		t.Fatalf("me: %d %s", r.status, r.body)
	}
	// Health needs no token.
	if r = (client{t, s.URL, ""}).do("GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
}

func readKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s is not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

func jwksKid(t *testing.T, issuer string) string {
	t.Helper()
	r := client{t, issuer, ""}.do("GET", "/jwks.json", "")
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %s", r.body)
	}
	return set.Keys[0].Kid
}

// sign builds a compact EdDSA JWS by hand, so that the test does not trust
// the code under test to make its bad tokens.
func sign(key ed25519.PrivateKey, kid string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	return input + "." + b64(ed25519.Sign(key, []byte(input)))
}

// unsigned builds an `alg: none` token with valid-looking claims.
func unsigned(t *testing.T, iss string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return b64(b)
	}
	now := time.Now().Unix()
	return enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." +
		enc(map[string]any{"iss": iss, "aud": devserver.Audience, "sub": "admin", "roles": []string{"admin"}, "iat": now, "exp": now + 3600}) + "."
}

// swapSignature puts b's signature on a's header and claims.
func swapSignature(t *testing.T, a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	if len(pa) != 3 || len(pb) != 3 {
		t.Fatal("not a JWS")
	}
	return pa[0] + "." + pa[1] + "." + pb[2]
}

func TestStrictRequests(t *testing.T) {
	s, _ := server(t)
	adm := as(t, s, "admin")
	big := `{"name":"x","type":"generic","value":{"a":"` + strings.Repeat("x", 2<<20) + `"}}`
	cases := []struct{ name, method, path, body, want string }{
		{"unknown field", "POST", "/v1/secrets", `{"name":"x","type":"generic","value":{"a":"b"},"owner":"me"}`, "unknown field"},
		{"trailing data", "POST", "/v1/secrets", `{"name":"x","type":"generic","value":{"a":"b"}} {}`, "after the JSON"},
		{"malformed", "POST", "/v1/secrets", `{"name":`, "malformed"},
		{"empty", "POST", "/v1/secrets", ``, "empty"},
		{"wrong type", "POST", "/v1/secrets", `{"name":1}`, "must be"},
		{"too large", "POST", "/v1/secrets", big, "larger than"},
		{"bad type", "POST", "/v1/secrets", `{"name":"x","type":"blob","value":{"a":"b"}}`, "type"},
		{"bad folder", "POST", "/v1/secrets", `{"name":"x","folder":"rel/path","type":"generic","value":{"a":"b"}}`, "start with /"},
		{"bad limit", "GET", "/v1/secrets?limit=-1", ``, "limit"},
		{"bad time", "GET", "/v1/audit?from=yesterday", ``, "RFC 3339"},
		{"bad bool", "GET", "/v1/secrets?recursive=maybe", ``, "recursive"},
	}
	for _, c := range cases {
		r := adm.do(c.method, c.path, c.body)
		if r.status != 400 || errorCode(t, r) != "invalid" || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %.200s", c.name, r.status, r.body)
		}
	}
	if r := adm.do("GET", "/v1/nothing", ""); r.status != 404 || errorCode(t, r) != "not_found" {
		t.Fatalf("unknown route: %d %s", r.status, r.body)
	}
	if r := adm.do("PATCH", "/v1/secrets", ""); r.status != 405 && r.status != 404 {
		t.Fatalf("wrong method: %d", r.status)
	}
}

// TestErrorBodiesNeverCarryValues sends a canary in every way a client can
// and checks that no error body, and no audit record, contains it.
func TestErrorBodiesNeverCarryValues(t *testing.T) {
	s, _ := server(t)
	adm := as(t, s, "admin")
	const canary = "CANARY-b71e-never-echo"
	r := adm.do("POST", "/v1/secrets", `{"name":"c","type":"password","value":{"password":"`+canary+`"}}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	bodies := []response{
		adm.do("POST", "/v1/secrets", `{"name":"c","type":"password","value":{"password":"`+canary+`"}}`),       // conflict
		adm.do("POST", "/v1/secrets", `{"name":"d","type":"password","value":{"username":"`+canary+`"}}`),       // invalid
		adm.do("POST", "/v1/secrets", `{"name":"e","type":"password","value":{"password":1`+canary+`}}`),        // malformed
		adm.do("POST", "/v1/secrets", `{"name":"f","type":"password","value":{"password":"x"},"`+canary+`":1}`), // unknown field named like a value
		adm.do("PUT", "/v1/secrets/"+id, `{"revision":7,"value":{"password":"`+canary+`"}}`),                    // stale
		as(t, s, "alice").do("GET", "/v1/secrets/"+id+"/value", ""),
	}
	for i, b := range bodies {
		if b.status < 400 {
			t.Fatalf("case %d should fail: %d", i, b.status)
		}
		if i != 3 && strings.Contains(string(b.body), canary) {
			t.Fatalf("case %d: error body carries the value: %s", i, b.body)
		}
	}
	r = as(t, s, "auditor").do("GET", "/v1/audit?limit=1000", "")
	if strings.Contains(string(r.body), canary) {
		t.Fatal("audit records carry the value")
	}
}

func TestRoutesDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiJSON(t), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, r := range httpapi.RouteTable() {
		served[r] = true
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("openapi.json documents %s, which is not served", r)
		}
	}
	if len(served) < 14 {
		t.Fatalf("only %d routes found", len(served))
	}
}

func openapiJSON(t *testing.T) []byte {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
