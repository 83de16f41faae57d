package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// These tests run the real bootstrap binary as Lambda would: a separate
// process that pulls API Gateway v2 events from the Runtime API. The Runtime
// API is emulated below (runtimeAPI); AWS is moto.

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

	bin := buildBootstrap(t)
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

	rt := startRuntimeAPI(t)
	env := append(lambdaEnv(t, rt, m.Endpoint, iss.url),
		"TABLE_NAME="+tables.Main, "AUDIT_TABLE_NAME="+tables.Audit, "KMS_KEY_ID="+*key.KeyMetadata.Arn)
	vars := map[string]string{"{{TOKEN}}": token, "{{FORGED_TOKEN}}": forged, "{{ISSUER}}": iss.url, "{{CANARY}}": canary}

	// Queue the first event before the process exists, as Lambda does for a
	// cold start, so the measured time is start-up plus one invocation.
	first := rt.enqueue(t, fixture(t, "healthz.json", vars))
	fn := startProcess(t, bin, env)
	out := rt.wait(t, first, fn)
	t.Logf("process start to first answered invocation: %v", out.at.Sub(fn.started).Round(time.Microsecond))
	resp := decodeResponse(t, out)
	assertStatus(t, "healthz", resp, http.StatusOK)
	if body := jsonBody(t, resp); body["status"] != "ok" {
		t.Errorf("healthz body = %v, want status ok", body)
	}

	resp = rt.call(t, fn, fixture(t, "create-secret.json", vars))
	assertStatus(t, "create", resp, http.StatusCreated)
	created := jsonBody(t, resp)
	id, _ := created["id"].(string)
	if id == "" || created["name"] != "db-root" || created["folder"] != "/prod/db" {
		t.Fatalf("create body = %s, want an id, name db-root, folder /prod/db", resp.Body)
	}
	assertNoCanary(t, "create response", resp.Body)
	vars["{{SECRET_ID}}"] = id

	resp = rt.call(t, fn, fixture(t, "reveal-secret.json", vars))
	assertStatus(t, "reveal", resp, http.StatusOK)
	revealed := jsonBody(t, resp)
	value, _ := revealed["value"].(map[string]any)
	if revealed["secretId"] != id || revealed["version"] != float64(1) || revealed["type"] != "password" ||
		value["username"] != "postgres" || value["password"] != canary {
		t.Errorf("reveal body = %v, want secret %s version 1 with the stored value", revealed, id)
	}

	resp = rt.call(t, fn, fixture(t, "list-secrets.json", vars))
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
		resp = rt.call(t, fn, fixture(t, name, vars))
		assertStatus(t, name, resp, http.StatusUnauthorized)
		e, _ := jsonBody(t, resp)["error"].(map[string]any)
		if e["code"] != "unauthenticated" || e["message"] == "" || e["requestId"] == "" || e["requestId"] == nil {
			t.Errorf("%s: body = %s, want error code unauthenticated with a message and request id", name, resp.Body)
		}
		assertNoCanary(t, name+" response", resp.Body)
	}

	// An event the adapter cannot turn into a request is a function error,
	// reported on /error; the process must stay up for the next event.
	out = rt.wait(t, rt.enqueue(t, fixture(t, "bad-base64-body.json", vars)), fn)
	if !out.failed || out.errType == "" {
		t.Errorf("bad base64 body: got failed=%v type %q body %s, want a function error", out.failed, out.errType, out.body)
	}
	resp = rt.call(t, fn, fixture(t, "healthz.json", vars))
	assertStatus(t, "healthz after error", resp, http.StatusOK)

	assertNoCanary(t, "function log", string(fn.stderr(t)))
}

// TestBootstrapFailsWithoutConfig checks that a misconfigured function exits
// with a message naming what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := buildBootstrap(t)
	rt := startRuntimeAPI(t)
	fn := startProcess(t, bin, []string{"AWS_LAMBDA_RUNTIME_API=" + rt.addr, "HOME=" + t.TempDir()})
	select {
	case <-fn.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("bootstrap did not exit without its configuration")
	}
	var exitErr *exec.ExitError
	if !errors.As(fn.err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("exit = %v, want exit status 1", fn.err)
	}
	stderr := string(fn.stderr(t))
	for _, name := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME", "KMS_KEY_ID", "OIDC_ISSUER", "OIDC_AUDIENCE"} {
		if !strings.Contains(stderr, name) {
			t.Errorf("stderr does not name %s:\n%s", name, stderr)
		}
	}
	if n := rt.nextCalls(); n != 0 {
		t.Errorf("bootstrap asked for %d invocations before failing, want 0", n)
	}
}

// TestDeployBinaryIsStaticARM64 builds the binary as `make build` does for
// deployment and checks it is a static linux/arm64 executable.
func TestDeployBinaryIsStaticARM64(t *testing.T) {
	path := buildARM64(t)
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("open elf: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("machine = %v, want EM_AARCH64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has an ELF interpreter; provided.al2023 needs a static binary (CGO_ENABLED=0)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table; want it stripped (-ldflags=-s -w)")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", st.Size(), float64(st.Size())/(1<<20))
}

// BenchmarkColdStart starts a fresh bootstrap per iteration and times
// process start to the first answered invocation (healthz, which needs no
// AWS call, so moto is not needed). It also reports the deploy binary size.
func BenchmarkColdStart(b *testing.B) {
	size := fileSize(b, buildARM64(b))
	bin := buildBootstrap(b)
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
	rt := newRuntimeAPI(b)
	defer rt.close()
	// Nothing listens on port 9: an AWS call at start-up would fail loudly.
	env := append(lambdaEnv(b, rt, "http://127.0.0.1:9", issuer),
		"TABLE_NAME=t", "AUDIT_TABLE_NAME=a", "KMS_KEY_ID=k")
	id := rt.enqueue(b, event)
	fn := runProcess(b, bin, env)
	defer fn.kill()
	out := rt.wait(b, id, fn)
	if resp := decodeResponse(b, out); resp.StatusCode != http.StatusOK {
		b.Fatalf("healthz: status %d: %s", resp.StatusCode, resp.Body)
	}
	return out.at.Sub(fn.started)
}

// --- the function process ---

// buildBootstrap builds the function for the host, as the deploy build does
// but without cross-compiling or stripping, so the test can run it.
func buildBootstrap(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	goBuild(t, []string{"CGO_ENABLED=0"}, "-tags", "lambda.norpc", "-o", out, ".")
	return out
}

// buildARM64 builds the deploy binary as the Makefile does.
func buildARM64(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	goBuild(t, []string{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0"},
		"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	return out
}

func goBuild(t testing.TB, env []string, args ...string) {
	t.Helper()
	// go test puts $GOROOT/bin first on PATH, so this is the go running us.
	// No VCS stamp: it fails in checkouts git deems of "dubious ownership".
	cmd := exec.Command("go", append([]string{"build", "-buildvcs=false"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", env, err, out)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// lambdaEnv is the environment Lambda gives a provided.al2023 function,
// with AWS pointed at endpoint and no host AWS configuration leaking in.
func lambdaEnv(t testing.TB, rt *runtimeAPI, endpoint, issuer string) []string {
	home := t.TempDir()
	return []string{
		"AWS_LAMBDA_RUNTIME_API=" + rt.addr,
		"AWS_LAMBDA_FUNCTION_NAME=escrow-api",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_REGION=" + awstest.Region,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "aws-credentials"),
		"HOME=" + home,
		"OIDC_ISSUER=" + issuer,
		"OIDC_AUDIENCE=" + audience,
	}
}

type process struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	err     error // valid after exited is closed
	logPath string
}

// startProcess starts bin and kills it when the test ends.
func startProcess(t *testing.T, bin string, env []string) *process {
	p := runProcess(t, bin, env)
	t.Cleanup(p.kill)
	return p
}

func runProcess(t testing.TB, bin string, env []string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "stderr.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &process{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bootstrap: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *process) stderr(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- the Runtime API emulation ---

// runtimeAPI emulates the parts of the Lambda Runtime API a function uses
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): it hands
// out queued events on /next and collects what the function posts back.
type runtimeAPI struct {
	srv  *httptest.Server
	addr string // host:port, the value of AWS_LAMBDA_RUNTIME_API

	queue   chan invocation
	closing chan struct{}

	mu      sync.Mutex
	seq     int
	nexts   int
	results map[string]chan outcome
}

type invocation struct {
	id      string
	payload []byte
}

// outcome is what the function posted for one invocation.
type outcome struct {
	at      time.Time
	failed  bool // posted to /error (or /runtime/init/error)
	errType string
	body    []byte
}

// startRuntimeAPI starts the emulation and stops it when the test ends.
func startRuntimeAPI(t *testing.T) *runtimeAPI {
	rt := newRuntimeAPI(t)
	t.Cleanup(rt.close)
	return rt
}

func newRuntimeAPI(t testing.TB) *runtimeAPI {
	rt := &runtimeAPI{
		queue:   make(chan invocation, 16),
		closing: make(chan struct{}),
		results: map[string]chan outcome{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", rt.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		rt.finish(w, r, r.PathValue("id"), false)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) {
		rt.finish(w, r, r.PathValue("id"), true)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		t.Logf("runtime init error (%s): %s", r.Header.Get("Lambda-Runtime-Function-Error-Type"), body)
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	})
	rt.srv = httptest.NewServer(mux)
	rt.addr = strings.TrimPrefix(rt.srv.URL, "http://")
	return rt
}

func (rt *runtimeAPI) close() {
	close(rt.closing)
	rt.srv.Close()
}

// next blocks until an event is queued, like the real endpoint.
func (rt *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	rt.nexts++
	rt.mu.Unlock()
	select {
	case inv := <-rt.queue:
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(10*time.Second).UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:escrow-api")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-67405a2c-3f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=0")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	case <-rt.closing:
		http.Error(w, "shutting down", http.StatusGone)
	}
}

func (rt *runtimeAPI) finish(w http.ResponseWriter, r *http.Request, id string, failed bool) {
	body, err := io.ReadAll(r.Body)
	at := time.Now()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rt.mu.Lock()
	ch, ok := rt.results[id]
	delete(rt.results, id)
	rt.mu.Unlock()
	if !ok {
		http.Error(w, `{"errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	// The error type travels as a trailer (read after the body) or header.
	errType := r.Trailer.Get("Lambda-Runtime-Function-Error-Type")
	if errType == "" {
		var e struct{ ErrorType string }
		_ = json.Unmarshal(body, &e)
		errType = e.ErrorType
	}
	ch <- outcome{at: at, failed: failed, errType: errType, body: body}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// enqueue queues an event and returns its request id.
func (rt *runtimeAPI) enqueue(t testing.TB, payload []byte) string {
	t.Helper()
	rt.mu.Lock()
	rt.seq++
	id := fmt.Sprintf("8f5a3c1e-0000-4000-8000-%012d", rt.seq)
	rt.results[id] = make(chan outcome, 1)
	rt.mu.Unlock()
	select {
	case rt.queue <- invocation{id: id, payload: payload}:
	default:
		t.Fatal("runtime API queue is full")
	}
	return id
}

// wait returns the outcome of invocation id, failing if the function exits
// or does not answer in time.
func (rt *runtimeAPI) wait(t testing.TB, id string, fn *process) outcome {
	t.Helper()
	rt.mu.Lock()
	ch := rt.results[id]
	rt.mu.Unlock()
	select {
	case out := <-ch:
		return out
	case <-fn.exited:
		t.Fatalf("bootstrap exited (%v) before answering %s:\n%s", fn.err, id, fn.stderr(t))
	case <-time.After(30 * time.Second):
		t.Fatalf("no answer to %s within 30s:\n%s", id, fn.stderr(t))
	}
	return outcome{}
}

// call invokes the function with event and returns its HTTP response.
func (rt *runtimeAPI) call(t testing.TB, fn *process, event []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	return decodeResponse(t, rt.wait(t, rt.enqueue(t, event), fn))
}

func (rt *runtimeAPI) nextCalls() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.nexts
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

func decodeResponse(t testing.TB, out outcome) events.APIGatewayV2HTTPResponse {
	t.Helper()
	if out.failed {
		t.Fatalf("function error %s: %s", out.errType, out.body)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out.body, &resp); err != nil {
		t.Fatalf("decode response %s: %v", out.body, err)
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
