package hook_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
)

// canaryKey must never show up in an error.
const canaryKey = "CANARY-hook-key-4c2a9e71d0"

var (
	key  = []byte(canaryKey)
	now  = time.Unix(1795426200, 0)
	tsOK = strconv.FormatInt(now.Unix(), 10)
)

func clock() time.Time { return now }

var event = escrow.HookEvent{
	Event:      "pre-checkout",
	SecretID:   "sec_01",
	SecretPath: "/prod/db",
	CheckoutID: "co_01",
	Subject:    "alice",
	Email:      "alice@example.com",
	Comment:    "fix the replica",
	Ticket:     "CHG0012345",
	Expires:    "2026-11-23T09:00:00Z",
	Time:       "2026-11-23T08:30:00Z",
}

func rule(url string) escrow.HookRule {
	return escrow.HookRule{Name: "audit", URL: url, KeySecret: "hook-key"}
}

// checkErr asserts err is an *escrow.Error of code whose client-safe
// message says want, and that the key shows in none of the ways err may
// be printed.
func checkErr(t *testing.T, err error, code escrow.Code, want string) {
	t.Helper()
	var e *escrow.Error
	if !errors.As(err, &e) || e.Code != code || !strings.Contains(escrow.ErrorMessage(err), want) {
		t.Fatalf("err = %v, want %s saying %q", err, code, want)
	}
	printed := fmt.Sprintf("%v|%+v|%#v|%s", err, err, err, escrow.ErrorMessage(err))
	if strings.Contains(printed, canaryKey) || strings.Contains(printed, hex.EncodeToString(key)) {
		t.Errorf("error quotes the key: %s", printed)
	}
}

// post sends r to a Receiver and decodes its answer.
func post(t *testing.T, hs *httptest.Server, r *http.Request) (int, escrow.HookResult) {
	t.Helper()
	resp, err := hs.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res escrow.HookResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("answer: %v", err)
	}
	return resp.StatusCode, res
}

// signed builds a request as Client sends it.
func signed(t *testing.T, url string, k []byte, ts, delivery string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(hook.HeaderTimestamp, ts)
	r.Header.Set(hook.HeaderDelivery, delivery)
	r.Header.Set(hook.HeaderSignature, hook.Signature(k, ts, body))
	return r
}

type vector struct {
	Name      string `json:"name"`
	KeyHex    string `json:"keyHex"`
	Timestamp string `json:"timestamp"`
	Body      string `json:"body"`
	Signature string `json:"signature"`
}

// TestSignatureKnownAnswers checks Signature and Verify against vectors
// computed independently (python3 hmac).
func TestSignatureKnownAnswers(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "signature.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			k, err := hex.DecodeString(v.KeyHex)
			if err != nil {
				t.Fatal(err)
			}
			if got := hook.Signature(k, v.Timestamp, []byte(v.Body)); got != v.Signature {
				t.Errorf("Signature = %s, want %s", got, v.Signature)
			}
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Header.Set(hook.HeaderTimestamp, v.Timestamp)
			r.Header.Set(hook.HeaderDelivery, "d1")
			r.Header.Set(hook.HeaderSignature, v.Signature)
			sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
			if err := hook.Verify(k, r, []byte(v.Body), time.Unix(sec, 0), 0); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"event":"pre-checkout"}`)
	stale := strconv.FormatInt(now.Add(-5*time.Minute-time.Second).Unix(), 10)
	future := strconv.FormatInt(now.Add(5*time.Minute+time.Second).Unix(), 10)
	edge := strconv.FormatInt(now.Add(-5*time.Minute).Unix(), 10)
	tests := []struct {
		name   string
		edit   func(r *http.Request) // after signing with key
		key    []byte
		body   []byte
		window time.Duration
		want   string // "" means accepted
	}{
		{name: "right key"},
		{name: "wrong key", key: []byte("another-key-0123456789"), want: "does not match"},
		{name: "empty key", key: []byte{}, want: "no key"},
		{name: "tampered body", body: []byte(`{"event":"post-checkout"}`), want: "does not match"},
		{name: "stale", edit: resign(stale, body), want: "away from the receiver's clock"},
		{name: "future", edit: resign(future, body), want: "away from the receiver's clock"},
		{name: "edge of the window", edit: resign(edge, body)},
		{name: "narrower window", edit: resign(edge, body), window: time.Minute, want: "away from"},
		{name: "no timestamp", edit: del(hook.HeaderTimestamp), want: "malformed Escrow-Timestamp"},
		{name: "no delivery", edit: del(hook.HeaderDelivery), want: "malformed Escrow-Delivery"},
		{name: "no signature", edit: del(hook.HeaderSignature), want: "malformed Escrow-Signature"},
		{name: "timestamp with sign", edit: resign("+"+tsOK, body), want: "malformed Escrow-Timestamp"},
		{name: "timestamp with leading zero", edit: resign("0"+tsOK, body), want: "malformed Escrow-Timestamp"},
		{name: "negative timestamp", edit: resign("-1", body), want: "malformed Escrow-Timestamp"},
		{name: "timestamp in ms", edit: resign(tsOK+"000", body), want: "away from"},
		{name: "delivery with space", edit: set(hook.HeaderDelivery, "a b"), want: "malformed Escrow-Delivery"},
		{name: "delivery too long", edit: set(hook.HeaderDelivery, strings.Repeat("a", 129)), want: "malformed Escrow-Delivery"},
		{name: "unknown version", edit: func(r *http.Request) {
			r.Header.Set(hook.HeaderSignature, "v2="+strings.TrimPrefix(r.Header.Get(hook.HeaderSignature), "v1="))
		}, want: "malformed Escrow-Signature"},
		{name: "short signature", edit: set(hook.HeaderSignature, "v1=abcd"), want: "malformed Escrow-Signature"},
		{name: "not hex", edit: set(hook.HeaderSignature, "v1="+strings.Repeat("zz", 32)), want: "malformed Escrow-Signature"},
		{name: "two signatures", edit: func(r *http.Request) {
			r.Header.Add(hook.HeaderSignature, hook.Signature([]byte("x"), tsOK, body))
		}, want: "malformed Escrow-Signature"},
		{name: "upper-case hex", edit: func(r *http.Request) {
			r.Header.Set(hook.HeaderSignature, "v1="+strings.ToUpper(strings.TrimPrefix(r.Header.Get(hook.HeaderSignature), "v1=")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := signed(t, "http://127.0.0.1/", key, tsOK, "d-1", body)
			if tt.edit != nil {
				tt.edit(r)
			}
			k, b := key, body
			if tt.key != nil {
				k = tt.key
			}
			if tt.body != nil {
				b = tt.body
			}
			err := hook.Verify(k, r, b, now, tt.window)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, escrow.ErrUnauthenticated) {
				t.Fatalf("Verify = %v, want unauthenticated", err)
			}
			checkErr(t, err, escrow.CodeUnauthenticated, tt.want)
		})
	}
}

func resign(ts string, body []byte) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Set(hook.HeaderTimestamp, ts)
		r.Header.Set(hook.HeaderSignature, hook.Signature(key, ts, body))
	}
}

func del(h string) func(*http.Request) { return func(r *http.Request) { r.Header.Del(h) } }

func set(h, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(h, v) } }

// receiver is a hook written with Receiver that records what it was told.
type receiver struct {
	mu     sync.Mutex
	got    []escrow.HookEvent
	header []http.Header
	answer escrow.HookResult
}

func newReceiver(t *testing.T, answer escrow.HookResult) (*receiver, *hook.Receiver, *httptest.Server) {
	t.Helper()
	rec := &receiver{answer: answer}
	rv := hook.NewReceiver(key, 0, clock, func(_ context.Context, ev escrow.HookEvent) escrow.HookResult {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.got = append(rec.got, ev)
		return rec.answer
	})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.header = append(rec.header, r.Header.Clone())
		rec.mu.Unlock()
		rv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return rec, rv, hs
}

var deliveryRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestCallAllowAndVeto(t *testing.T) {
	for _, want := range []escrow.HookResult{
		{Allow: true},
		{Allow: true, Message: "logged as INC-7"},
		{Allow: false, Message: "no checkouts during the freeze"},
	} {
		t.Run(fmt.Sprint(want), func(t *testing.T) {
			t.Parallel()
			rec, _, hs := newReceiver(t, want)
			c := hook.New(hs.Client(), clock)
			events := []escrow.HookEvent{event, event}
			events[1].CheckoutID = "co_02" // the same body twice in a second is a replay
			for _, ev := range events {
				got, err := c.Call(context.Background(), rule(hs.URL+"/hook"), key, ev)
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if got != want {
					t.Errorf("Call = %+v, want %+v", got, want)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.got) != 2 || rec.got[0] != events[0] || rec.got[1] != events[1] {
				t.Errorf("hook got %+v, want %+v", rec.got, events)
			}
			for _, h := range rec.header {
				if h.Get("Content-Type") != "application/json" || !deliveryRE.MatchString(h.Get(hook.HeaderDelivery)) || h.Get(hook.HeaderTimestamp) != tsOK {
					t.Errorf("headers %v", h)
				}
			}
			if rec.header[0].Get(hook.HeaderDelivery) == rec.header[1].Get(hook.HeaderDelivery) {
				t.Error("two calls share a delivery id")
			}
		})
	}
}

func TestReceiverRefusesReplays(t *testing.T) {
	rec, _, hs := newReceiver(t, escrow.HookResult{Allow: true})
	body, _ := json.Marshal(event)
	send := func(ts, delivery string, edit func(*http.Request)) (int, escrow.HookResult) {
		t.Helper()
		r := signed(t, hs.URL, key, ts, delivery, body)
		if edit != nil {
			edit(r)
		}
		return post(t, hs, r)
	}
	if code, res := send(tsOK, "d-1", nil); code != 200 || !res.Allow {
		t.Fatalf("first delivery: %d %+v", code, res)
	}
	if code, res := send(tsOK, "d-1", nil); code != http.StatusConflict || res.Allow || !strings.Contains(res.Message, "already received") {
		t.Errorf("replay: %d %+v", code, res)
	}
	// The delivery id is not signed: a fresh one does not make a replay new.
	if code, _ := send(tsOK, "d-2", nil); code != http.StatusConflict {
		t.Errorf("replay with a new delivery id: %d", code)
	}
	upper := func(r *http.Request) {
		r.Header.Set(hook.HeaderSignature, "v1="+strings.ToUpper(strings.TrimPrefix(r.Header.Get(hook.HeaderSignature), "v1=")))
	}
	if code, _ := send(tsOK, "d-3", upper); code != http.StatusConflict {
		t.Errorf("replay with the signature in upper case: %d", code)
	}
	// A new delivery id, a delivery id reused with another signature.
	if code, _ := send(strconv.FormatInt(now.Unix()-1, 10), "d-4", nil); code != 200 {
		t.Errorf("a new delivery: %d", code)
	}
	if code, _ := send(strconv.FormatInt(now.Unix()-2, 10), "d-4", nil); code != http.StatusConflict {
		t.Errorf("a reused delivery id: %d", code)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 2 {
		t.Errorf("handler ran %d times, want 2", len(rec.got))
	}
}

func TestReceiverRefusals(t *testing.T) {
	_, _, hs := newReceiver(t, escrow.HookResult{Allow: true})
	body, _ := json.Marshal(event)
	tests := []struct {
		name string
		req  func() *http.Request
		code int
		want string
	}{
		{"GET", func() *http.Request { r, _ := http.NewRequest(http.MethodGet, hs.URL, nil); return r }, 405, "POST"},
		{"wrong key", func() *http.Request { return signed(t, hs.URL, []byte("another-key-0123456789"), tsOK, "x1", body) }, 401, "does not match"},
		{"stale", func() *http.Request { return signed(t, hs.URL, key, strconv.FormatInt(now.Unix()-301, 10), "x2", body) }, 401, "away from"},
		{"unsigned", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, hs.URL, bytes.NewReader(body))
			return r
		}, 401, "malformed"},
		{"not a HookEvent", func() *http.Request { return signed(t, hs.URL, key, tsOK, "x3", []byte(`["x"]`)) }, 400, "not a HookEvent"},
		{"too large", func() *http.Request {
			return signed(t, hs.URL, key, tsOK, "x4", bytes.Repeat([]byte(" "), hook.MaxBody+1))
		}, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, res := post(t, hs, tt.req()); code != tt.code || res.Allow || !strings.Contains(res.Message, tt.want) {
				t.Errorf("%d %+v, want %d and %q", code, res, tt.code, tt.want)
			}
		})
	}
}

// TestReceiverMemoryIsBounded: when full it refuses rather than forget a
// delivery that could still be replayed, and forgets what has expired.
func TestReceiverMemoryIsBounded(t *testing.T) {
	var mu sync.Mutex
	at := now
	rv := hook.NewReceiver(key, time.Minute, func() time.Time { mu.Lock(); defer mu.Unlock(); return at },
		func(context.Context, escrow.HookEvent) escrow.HookResult { return escrow.HookResult{Allow: true} })
	hook.SetMaxRemembered(rv, 4) // two deliveries
	serve := func(delivery string) int {
		mu.Lock()
		ts := strconv.FormatInt(at.Unix(), 10)
		mu.Unlock()
		ev := event
		ev.CheckoutID = delivery
		body, _ := json.Marshal(ev)
		w := httptest.NewRecorder()
		rv.ServeHTTP(w, signed(t, "http://127.0.0.1/", key, ts, delivery, body))
		return w.Code
	}
	for i, want := range []int{200, 200, http.StatusServiceUnavailable} {
		if code := serve(fmt.Sprintf("m-%d", i)); code != want {
			t.Errorf("delivery %d: %d, want %d", i, code, want)
		}
	}
	mu.Lock()
	at = at.Add(time.Minute + 2*time.Second)
	mu.Unlock()
	if code := serve("m-3"); code != 200 {
		t.Errorf("after the window: %d, want 200", code)
	}
}

// server answers every request with status and body.
func server(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func TestCallFailures(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"500 with a message", 500, `{"allow":false,"message":"database down"}`, "hook audit answered HTTP 500: database down"},
		{"500 without JSON", 500, `<html>oops</html>`, "hook audit answered HTTP 500"},
		{"404", 404, ``, "hook audit answered HTTP 404"},
		{"200 not JSON", 200, `<html>ok</html>`, "hook audit answered no JSON"},
		{"200 empty", 200, ``, "hook audit answered no JSON"},
		{"200 allow not a bool", 200, `{"allow":"yes"}`, "hook audit answered no JSON"},
		{"200 JSON without allow", 200, `{"message":"hi"}`, `without "allow"`},
		{"200 null", 200, `null`, `without "allow"`},
		{"oversize", 200, `{"allow":true,"message":"` + strings.Repeat("a", hook.MaxBody) + `"}`, "answered more than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hs := server(t, tt.status, tt.body)
			_, err := hook.New(hs.Client(), clock).Call(context.Background(), rule(hs.URL), key, event)
			if !errors.Is(err, escrow.ErrUnavailable) {
				t.Fatalf("Call = %v, want unavailable", err)
			}
			checkErr(t, err, escrow.CodeUnavailable, tt.want)
		})
	}
}

// TestCallWrongKey: the receiver's refusal is quoted, so the operator
// learns why.
func TestCallWrongKey(t *testing.T) {
	_, _, hs := newReceiver(t, escrow.HookResult{Allow: true})
	_, err := hook.New(hs.Client(), clock).Call(context.Background(), rule(hs.URL), []byte("not-the-hook-key-000"), event)
	checkErr(t, err, escrow.CodeUnavailable, "answered HTTP 401: hook request refused: the signature does not match")
}

func TestCallDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Store(true)
		io.WriteString(w, `{"allow":true}`)
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	_, err := hook.New(hs.Client(), clock).Call(context.Background(), rule(hs.URL+"/hook"), key, event)
	checkErr(t, err, escrow.CodeUnavailable, "hook audit redirected (HTTP 307)")
	if followed.Load() {
		t.Error("the redirect was followed")
	}
}

func TestCallTimesOut(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a gone client only once the body is read
		<-r.Context().Done()
	}))
	defer hs.Close()
	h := rule(hs.URL)
	h.Timeout = escrow.Duration(300 * time.Millisecond)
	start := time.Now()
	_, err := hook.New(hs.Client(), clock).Call(context.Background(), h, key, event)
	took := time.Since(start)
	checkErr(t, err, escrow.CodeUnavailable, "hook audit timed out after 300ms")
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("Call took %s, want about 300ms", took)
	}
}

func TestCallUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = hook.New(nil, clock).Call(context.Background(), rule("http://"+addr+"/hook?token=s3cret"), key, event)
	checkErr(t, err, escrow.CodeUnavailable, "hook audit cannot be reached")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error quotes the URL: %v", err)
	}
}

// TestCallRefusesBeforeDialing: a URL that would send the signed body in
// clear or carry credentials, or a weak key, is refused before any
// connection.
func TestCallRefusesBeforeDialing(t *testing.T) {
	var dialed atomic.Bool
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		dialed.Store(true)
		return nil, errors.New("dialed")
	}}}
	c := hook.New(hc, clock)
	for _, u := range []string{
		"http://hooks.example.com/checkout",
		"http://10.0.0.1/checkout",
		"https://user:" + canaryKey + "@hooks.example.com/",
		"ftp://127.0.0.1/",
		"/relative",
		"",
	} {
		_, err := c.Call(context.Background(), rule(u), key, event)
		checkErr(t, err, escrow.CodeInvalid, "must be an absolute https URL")
	}
	_, err := c.Call(context.Background(), rule("https://hooks.example.com/"), []byte("short"), event)
	checkErr(t, err, escrow.CodeInvalid, "shorter than 16 bytes")
	if dialed.Load() {
		t.Error("dialed before refusing")
	}
}

func TestCallCleansMessage(t *testing.T) {
	long := strings.Repeat("é", 2*hook.MaxMessage)
	tests := []struct{ in, want string }{
		{"  denied\r\nby\tpolicy ", "denied  by policy"},
		{"\x1b[31mred\x1b[0m", "[31mred[0m"},
		{"abc\u202edcba\u200b\x00\x7f", "abcdcba"},
		{long, long[:2*hook.MaxMessage]}, // é is two bytes
	}
	for _, tt := range tests {
		hs := server(t, 200, mustJSON(t, map[string]any{"allow": false, "message": tt.in}))
		got, err := hook.New(hs.Client(), clock).Call(context.Background(), rule(hs.URL), key, event)
		if err != nil {
			t.Fatalf("Call: %v", err)
		}
		if got.Message != tt.want {
			t.Errorf("message %q, want %q", got.Message, tt.want)
		}
		if n := utf8.RuneCountInString(got.Message); n > hook.MaxMessage {
			t.Errorf("message has %d runes", n)
		}
		for _, r := range got.Message {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Errorf("message keeps %U", r)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
