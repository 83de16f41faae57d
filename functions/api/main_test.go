package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// These tests run the real bootstrap binary as Lambda would: a separate
// process that pulls API Gateway v2 events from the Runtime API. The Runtime
// API is emulated by package lambdatest; AWS is moto.

const audience = "escrow"

// canary is the stored password. It must come back from the reveal and
// appear nowhere else: not in other responses, not in the function's logs.
const canary = "canary-Zq83-hunter2-7f1c"

// TestEventFixturesRoundTrip checks that every fixture is an
// events.APIGatewayV2HTTPRequest as API Gateway sends it: no field the type
// does not know (a typo would silently vanish), and nothing lost on the way
// back to JSON.
func TestEventFixturesRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var ev events.APIGatewayV2HTTPRequest
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if ev.Version != "2.0" || ev.RawPath != ev.RequestContext.HTTP.Path || ev.RouteKey != ev.RequestContext.RouteKey {
				t.Errorf("inconsistent event: version %q, rawPath %q vs http.path %q, routeKey %q vs %q",
					ev.Version, ev.RawPath, ev.RequestContext.HTTP.Path, ev.RouteKey, ev.RequestContext.RouteKey)
			}
			again, err := json.Marshal(ev)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			// The type adds empty fields API Gateway omits (authentication),
			// so the fixture must be contained in the round trip, not equal.
			assertSubset(t, "$", want, got)
		})
	}
}

func assertSubset(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: got %T, want object", path, got)
			return
		}
		for k, v := range w {
			gv, ok := g[k]
			if !ok {
				t.Errorf("%s.%s: lost in the round trip", path, k)
				continue
			}
			assertSubset(t, path+"."+k, v, gv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: got %v, want %v", path, got, want)
			return
		}
		for i := range w {
			assertSubset(t, fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
		}
	default:
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
}

// TestBootstrapServesAPIGatewayEvents boots the function against moto and
// drives the secret lifecycle through API Gateway v2 events.
func TestBootstrapServesAPIGatewayEvents(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	ctx := t.Context()
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(ctx, dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	key, err := awskms.NewFromConfig(cfg).CreateKey(ctx, &awskms.CreateKeyInput{
		KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt,
	})
	if err != nil {
		t.Fatalf("create kms key: %v", err)
	}

	bin := lambdatest.Build(t, ".")
	iss := startIssuer(t)
	admin := demoUser(t, "admin")
	token, _, err := iss.Mint(admin, 15*time.Minute)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	// Same issuer URL and audience, another key: the signature must fail.
	forger, err := auth.OpenDevIssuer(filepath.Join(t.TempDir(), "forger.key"), iss.url, audience)
	if err != nil {
		t.Fatalf("open forger: %v", err)
	}
	forged, _, err := forger.Mint(admin, 15*time.Minute)
	if err != nil {
		t.Fatalf("mint forged: %v", err)
	}

	rt := lambdatest.NewRuntime(t)
	env := append(lambdaEnv(rt, m.Endpoint, iss.url),
		"TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit, "KMS_KEY_ID="+*key.KeyMetadata.Arn,
		"PUBLIC_URL="+consoleURL)
	vars := map[string]string{"{{TOKEN}}": token, "{{FORGED_TOKEN}}": forged, "{{ISSUER}}": iss.url, "{{CANARY}}": canary}

	// Queue the first event before the process exists, as Lambda does for a
	// cold start, so the measured time is start-up plus one invocation.
	first := rt.Enqueue(t, fixture(t, "healthz.json", vars))
	fn := lambdatest.Start(t, bin, env)
	out := rt.Wait(t, fn, first)
	t.Logf("process start to first answered invocation: %v", out.At.Sub(fn.Started).Round(time.Microsecond))
	resp := decodeResponse(t, out)
	assertStatus(t, "healthz", resp, http.StatusOK)
	if body := jsonBody(t, resp); body["status"] != "ok" {
		t.Errorf("healthz body = %v, want status ok", body)
	}

	resp = call(t, rt, fn, fixture(t, "create-secret.json", vars))
	assertStatus(t, "create", resp, http.StatusCreated)
	created := jsonBody(t, resp)
	id, _ := created["id"].(string)
	if id == "" || created["name"] != "db-root" || created["folder"] != "/prod/db" {
		t.Fatalf("create body = %s, want an id, name db-root, folder /prod/db", resp.Body)
	}
	assertNoCanary(t, "create response", resp.Body)
	vars["{{SECRET_ID}}"] = id

	resp = call(t, rt, fn, fixture(t, "reveal-secret.json", vars))
	assertStatus(t, "reveal", resp, http.StatusOK)
	revealed := jsonBody(t, resp)
	value, _ := revealed["value"].(map[string]any)
	if revealed["secretId"] != id || revealed["version"] != float64(1) || revealed["type"] != "password" ||
		value["username"] != "postgres" || value["password"] != canary {
		t.Errorf("reveal body = %v, want secret %s version 1 with the stored value", revealed, id)
	}

	resp = call(t, rt, fn, fixture(t, "list-secrets.json", vars))
	assertStatus(t, "list", resp, http.StatusOK)
	list := jsonBody(t, resp)
	items, _ := list["secrets"].([]any)
	if !slices.ContainsFunc(items, func(s any) bool { m, _ := s.(map[string]any); return m["id"] == id }) {
		t.Errorf("list body = %s, want secret %s in it", resp.Body, id)
	}
	if _, ok := list["next"]; !ok {
		t.Errorf("list body = %s, want a next cursor field", resp.Body)
	}
	assertNoCanary(t, "list response", resp.Body)

	for _, name := range []string{"no-token.json", "forged-token.json"} {
		resp = call(t, rt, fn, fixture(t, name, vars))
		assertStatus(t, name, resp, http.StatusUnauthorized)
		e, _ := jsonBody(t, resp)["error"].(map[string]any)
		if e["code"] != "unauthenticated" || e["message"] == "" || e["requestId"] == "" || e["requestId"] == nil {
			t.Errorf("%s: body = %s, want error code unauthenticated with a message and request id", name, resp.Body)
		}
		assertNoCanary(t, name+" response", resp.Body)
	}

	// The web console, on the same function: a page sends an anonymous
	// browser to sign in, and sign-in sends it to the issuer with PKCE and
	// a Secure, HttpOnly login cookie, to come back to PUBLIC_URL.
	resp = call(t, rt, fn, fixture(t, "console-home.json", vars))
	if loc := resp.Headers["Location"]; resp.StatusCode != http.StatusSeeOther || loc != "/login?next=%2F" {
		t.Errorf("console home: %d to %q, want 303 to /login?next=%%2F", resp.StatusCode, loc)
	}
	resp = call(t, rt, fn, fixture(t, "console-login.json", vars))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console login: %d, want 303; body %s", resp.StatusCode, resp.Body)
	}
	loc, err := url.Parse(resp.Headers["Location"])
	if err != nil || !strings.HasPrefix(loc.String(), iss.url+"/authorize?") {
		t.Fatalf("login redirects to %q, want the issuer's authorize endpoint", resp.Headers["Location"])
	}
	q := loc.Query()
	if q.Get("redirect_uri") != consoleURL+"/auth/callback" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("client_id") != audience {
		t.Errorf("authorize parameters = %v", q)
	}
	cookies := strings.Join(resp.Cookies, "\n")
	if !strings.Contains(cookies, "escrow-login=") || !strings.Contains(cookies, "Secure") || !strings.Contains(cookies, "HttpOnly") {
		t.Errorf("login cookie = %q, want escrow-login, Secure and HttpOnly", cookies)
	}

	// An event the adapter cannot turn into a request is a function error,
	// reported on /error; the process must stay up for the next event.
	out = rt.Invoke(t, fn, fixture(t, "bad-base64-body.json", vars))
	if !out.Failed || out.ErrorType == "" {
		t.Errorf("bad base64 body: got failed=%v type %q body %s, want a function error", out.Failed, out.ErrorType, out.Body)
	}
	resp = call(t, rt, fn, fixture(t, "healthz.json", vars))
	assertStatus(t, "healthz after error", resp, http.StatusOK)

	assertNoCanary(t, "function log", string(fn.Stderr(t)))
}

// TestBootstrapFailsWithoutConfig checks that a misconfigured function exits
// with a message naming what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	fn := lambdatest.Start(t, bin, []string{"AWS_LAMBDA_RUNTIME_API=" + rt.Addr(), "HOME=" + t.TempDir()})
	err := fn.Wait(t)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("exit = %v, want exit status 1", err)
	}
	stderr := string(fn.Stderr(t))
	for _, name := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME", "KMS_KEY_ID", "OIDC_ISSUER", "OIDC_AUDIENCE"} {
		if !strings.Contains(stderr, name) {
			t.Errorf("stderr does not name %s:\n%s", name, stderr)
		}
	}
	if n := rt.NextCalls(); n != 0 {
		t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
	}
}

// TestDeployBinaryIsStaticARM64 builds the binary as `make build` does for
// deployment and checks it is a static linux/arm64 executable.
func TestDeployBinaryIsStaticARM64(t *testing.T) {
	size := lambdatest.AssertDeployBinary(t, lambdatest.BuildARM64(t, "."))
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
}

// BenchmarkColdStart starts a fresh bootstrap per iteration and times
// process start to the first answered invocation (healthz, which needs no
// AWS call, so moto is not needed). It also reports the deploy binary size.
func BenchmarkColdStart(b *testing.B) {
	size := fileSize(b, lambdatest.BuildARM64(b, "."))
	bin := lambdatest.Build(b, ".")
	iss := startIssuer(b)
	healthz := fixture(b, "healthz.json", nil)
	var total time.Duration
	n := 0
	for b.Loop() {
		total += coldStart(b, bin, iss.url, healthz)
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms-to-first-response")
	b.ReportMetric(float64(size), "arm64-bytes")
}

func coldStart(b *testing.B, bin, issuer string, event []byte) time.Duration {
	rt := lambdatest.NewRuntime(b)
	defer rt.Close()
	// Nothing listens on port 9: an AWS call at start-up would fail loudly.
	// With the console (templates parsed at start), as a deployment with a
	// PublicURL runs.
	env := append(lambdaEnv(rt, "http://127.0.0.1:9", issuer),
		"TABLE_NAME=t", "AUDIT_TABLE_NAME=a", "KMS_KEY_ID=k", "PUBLIC_URL="+consoleURL)
	id := rt.Enqueue(b, event)
	fn := lambdatest.Start(b, bin, env)
	defer fn.Kill()
	out := rt.Wait(b, fn, id)
	if resp := decodeResponse(b, out); resp.StatusCode != http.StatusOK {
		b.Fatalf("healthz: status %d: %s", resp.StatusCode, resp.Body)
	}
	return out.At.Sub(fn.Started)
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// lambdaEnv is the environment Lambda gives the function, with AWS pointed
// at endpoint, plus the api's OIDC settings.
// consoleURL is the console's public URL in the function's tests.
const consoleURL = "https://escrow.example.test"

func lambdaEnv(rt *lambdatest.Runtime, endpoint, issuer string) []string {
	return append(rt.Env(),
		"AWS_ENDPOINT_URL="+endpoint,
		"OIDC_ISSUER="+issuer,
		"OIDC_AUDIENCE="+audience,
	)
}

// call invokes the function with event and returns its HTTP response.
func call(t testing.TB, rt *lambdatest.Runtime, fn *lambdatest.Process, event []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	return decodeResponse(t, rt.Invoke(t, fn, event))
}

// --- fixtures and assertions ---

// fixture reads testdata/name and fills in its {{PLACEHOLDERS}}.
func fixture(t testing.TB, name string, vars map[string]string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	if i := strings.Index(s, "{{"); i >= 0 {
		t.Fatalf("%s: unfilled placeholder near %q", name, s[i:min(len(s), i+20)])
	}
	return []byte(s)
}

func decodeResponse(t testing.TB, out lambdatest.Outcome) events.APIGatewayV2HTTPResponse {
	t.Helper()
	if out.Failed {
		t.Fatalf("function error %s: %s", out.ErrorType, out.Body)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out.Body, &resp); err != nil {
		t.Fatalf("decode response %s: %v", out.Body, err)
	}
	return resp
}

func assertStatus(t *testing.T, what string, resp events.APIGatewayV2HTTPResponse, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, want, resp.Body)
	}
	if ct := resp.Headers["Content-Type"]; !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

func jsonBody(t *testing.T, resp events.APIGatewayV2HTTPResponse) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, resp.Body)
	}
	return m
}

func assertNoCanary(t *testing.T, where, s string) {
	t.Helper()
	if strings.Contains(s, canary) {
		t.Errorf("the secret value appears in the %s", where)
	}
}

type issuer struct {
	*auth.DevIssuer
	url string
}

// startIssuer serves a dev OIDC issuer whose discovery document and JWKS
// the function fetches like any other issuer's.
func startIssuer(t testing.TB) issuer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()
	iss, err := auth.OpenDevIssuer(filepath.Join(t.TempDir(), "issuer.key"), url, audience)
	if err != nil {
		t.Fatalf("open dev issuer: %v", err)
	}
	srv.Config.Handler = iss.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer{iss, url}
}

func demoUser(t *testing.T, role string) auth.DevUser {
	t.Helper()
	for _, u := range auth.DemoUsers() {
		if slices.Contains(u.Roles, role) {
			return u
		}
	}
	t.Fatalf("no demo user has role %s", role)
	return auth.DevUser{}
}

// TestBootstrapRefusesPlainHTTPConsole checks that a console URL the
// session cookie cannot work on (plain http: the cookie is Secure) stops
// the function at start, saying why, rather than serving a console nobody
// can sign in to.
func TestBootstrapRefusesPlainHTTPConsole(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	iss := startIssuer(t)
	env := append(lambdaEnv(rt, "http://127.0.0.1:9", iss.url),
		"TABLE_NAME=t", "AUDIT_TABLE_NAME=a", "KMS_KEY_ID=k", "PUBLIC_URL=http://escrow.example.test")
	fn := lambdatest.Start(t, bin, env)
	err := fn.Wait(t)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("exit = %v, want exit status 1", err)
	}
	if stderr := string(fn.Stderr(t)); !strings.Contains(stderr, "PublicURL is plain http") {
		t.Errorf("stderr does not say why:\n%s", stderr)
	}
	if n := rt.NextCalls(); n != 0 {
		t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
	}
}
