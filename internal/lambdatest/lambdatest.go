// Package lambdatest runs a function's real bootstrap binary as Lambda
// would, for the tests of functions/*: it builds the binary (for the host,
// and as the linux/arm64 deploy artifact), starts it as a separate process
// and feeds it events through an emulation of the Lambda Runtime API
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
//
// It is test support: it must never be imported by a function or by any
// other non-test code, and it emulates only what a provided.al2023
// function uses (next, response, error, init error), nothing more.
package lambdatest

import (
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/awstest"
)

// Timeout bounds every wait on the function: an answer, or an exit.
const Timeout = 30 * time.Second

// --- building ---

// Build builds package pkg (a go build package argument, such as "." from a
// function's own test) for the host as the deploy build does, but without
// cross-compiling or stripping, so the test can run it. It returns the
// binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	goBuild(t, []string{"CGO_ENABLED=0"}, "-tags", "lambda.norpc", "-o", out, pkg)
	return out
}

// BuildARM64 builds pkg as the Makefile's deploy build does: a static,
// stripped linux/arm64 bootstrap. It returns the binary's path.
func BuildARM64(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	goBuild(t, []string{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0"},
		"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
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

// AssertDeployBinary checks that path is what provided.al2023 on Graviton
// needs, a static linux/arm64 executable, and that it is stripped. It
// returns its size in bytes.
func AssertDeployBinary(t testing.TB, path string) int64 {
	t.Helper()
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
	return st.Size()
}

// --- the function process ---

// Process is a running bootstrap.
type Process struct {
	Started time.Time // just before the process was started

	cmd     *exec.Cmd
	exited  chan struct{}
	err     error // valid after exited is closed
	logPath string
}

// Start starts bin with exactly env (nothing of the test's environment
// leaks in) and kills it when the test ends. Its stdout and stderr go to a
// file that Stderr reads.
func Start(t testing.TB, bin string, env []string) *Process {
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
	p := &Process{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bootstrap: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Kill kills the process and waits for it. It may be called more than
// once (a benchmark kills each iteration's process as it goes).
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Wait waits for the process to exit on its own and returns what
// exec.Cmd.Wait returned (an *exec.ExitError for a non-zero status). It
// fails the test if the process is still running after Timeout.
func (p *Process) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(Timeout):
		t.Fatalf("bootstrap did not exit within %v:\n%s", Timeout, p.Stderr(t))
		return nil
	}
}

// ExitCode waits for the process to exit (see Wait) and returns its exit
// status, or -1 if it did not exit normally.
func (p *Process) ExitCode(t testing.TB) int {
	t.Helper()
	err := p.Wait(t)
	if err == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	return -1
}

// Stderr returns everything the process wrote so far (stdout included).
func (p *Process) Stderr(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- the Runtime API emulation ---

// FunctionName is the name the emulated Lambda gives every function.
const FunctionName = "escrow-function"

// Runtime emulates the parts of the Lambda Runtime API a function uses: it
// hands out queued events on /next and collects what the function posts
// back. Invocations are served one at a time, in order, as Lambda does for
// one execution environment.
type Runtime struct {
	t    testing.TB
	srv  *httptest.Server
	addr string // host:port, the value of AWS_LAMBDA_RUNTIME_API
	home string // an empty HOME, so no host AWS configuration leaks in

	queue     chan invocation
	closing   chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	seq   int
	nexts int
	// Each invocation's outcome channel is in open until the function
	// answers, and in results until Wait takes it: either may come first.
	open    map[string]chan Outcome
	results map[string]chan Outcome
}

type invocation struct {
	id      string
	payload []byte
}

// Outcome is what the function posted for one invocation.
type Outcome struct {
	At     time.Time // when the post arrived
	Body   []byte    // the response, or the error document
	Failed bool      // posted to /error rather than /response
	// ErrorType and ErrorMessage are the error document's errorType (or the
	// Lambda-Runtime-Function-Error-Type trailer) and errorMessage.
	ErrorType, ErrorMessage string
}

// NewRuntime starts the emulation and stops it when the test ends.
func NewRuntime(t testing.TB) *Runtime {
	t.Helper()
	rt := &Runtime{
		t:       t,
		home:    t.TempDir(),
		queue:   make(chan invocation, 16),
		closing: make(chan struct{}),
		open:    map[string]chan Outcome{},
		results: map[string]chan Outcome{},
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
	t.Cleanup(rt.Close)
	return rt
}

// Close stops the emulation: a pending /next answers 410. It may be called
// more than once.
func (rt *Runtime) Close() {
	rt.closeOnce.Do(func() {
		close(rt.closing)
		rt.srv.Close()
	})
}

// Addr is the value of AWS_LAMBDA_RUNTIME_API.
func (rt *Runtime) Addr() string { return rt.addr }

// Env is the environment Lambda gives a provided.al2023 function: the
// Runtime API, the function's identity, a region and (static, test)
// execution-role credentials, with no host AWS configuration leaking in.
// Callers add AWS_ENDPOINT_URL and the function's own variables.
func (rt *Runtime) Env() []string {
	return []string{
		"AWS_LAMBDA_RUNTIME_API=" + rt.addr,
		"AWS_LAMBDA_FUNCTION_NAME=" + FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_REGION=" + awstest.Region,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(rt.home, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(rt.home, "aws-credentials"),
		"HOME=" + rt.home,
	}
}

// next blocks until an event is queued, like the real endpoint.
func (rt *Runtime) next(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	rt.nexts++
	rt.mu.Unlock()
	select {
	case inv := <-rt.queue:
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(10*time.Second).UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:"+awstest.Region+":123456789012:function:"+FunctionName)
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-67405a2c-3f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=0")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	case <-rt.closing:
		http.Error(w, "shutting down", http.StatusGone)
	}
}

func (rt *Runtime) finish(w http.ResponseWriter, r *http.Request, id string, failed bool) {
	body, err := io.ReadAll(r.Body)
	at := time.Now()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rt.mu.Lock()
	ch, ok := rt.open[id] // not there: unknown, or answered already
	delete(rt.open, id)
	rt.mu.Unlock()
	if !ok {
		http.Error(w, `{"errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	out := Outcome{At: at, Failed: failed, Body: body}
	if failed {
		var e struct{ ErrorType, ErrorMessage string }
		_ = json.Unmarshal(body, &e)
		out.ErrorType, out.ErrorMessage = e.ErrorType, e.ErrorMessage
		// The error type may travel as a trailer (read after the body).
		if tr := r.Trailer.Get("Lambda-Runtime-Function-Error-Type"); tr != "" {
			out.ErrorType = tr
		}
	}
	ch <- out
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// Enqueue queues an event and returns its request id. An event may be
// queued before the process starts, as Lambda does for a cold start.
func (rt *Runtime) Enqueue(t testing.TB, payload []byte) string {
	t.Helper()
	rt.mu.Lock()
	rt.seq++
	id := fmt.Sprintf("8f5a3c1e-0000-4000-8000-%012d", rt.seq)
	ch := make(chan Outcome, 1)
	rt.open[id], rt.results[id] = ch, ch
	rt.mu.Unlock()
	select {
	case rt.queue <- invocation{id: id, payload: payload}:
	default:
		t.Fatal("runtime API queue is full")
	}
	return id
}

// Wait returns the outcome of invocation id, failing the test if the
// function exits or does not answer within Timeout.
func (rt *Runtime) Wait(t testing.TB, fn *Process, id string) Outcome {
	t.Helper()
	rt.mu.Lock()
	ch, ok := rt.results[id]
	delete(rt.results, id)
	rt.mu.Unlock()
	if !ok {
		t.Fatalf("no invocation %s to wait for", id)
	}
	select {
	case out := <-ch:
		return out
	case <-fn.exited:
		t.Fatalf("bootstrap exited (%v) before answering %s:\n%s", fn.err, id, fn.Stderr(t))
	case <-time.After(Timeout):
		t.Fatalf("no answer to %s within %v:\n%s", id, Timeout, fn.Stderr(t))
	}
	return Outcome{}
}

// Invoke queues payload and returns the function's answer to it.
func (rt *Runtime) Invoke(t testing.TB, fn *Process, payload []byte) Outcome {
	t.Helper()
	return rt.Wait(t, fn, rt.Enqueue(t, payload))
}

// NextCalls is how many times the function asked for an invocation.
func (rt *Runtime) NextCalls() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.nexts
}
