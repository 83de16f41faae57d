package hook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// DefaultWindow is how far a request's timestamp may be from the
// receiver's clock.
const DefaultWindow = 5 * time.Minute

// maxRemembered bounds a Receiver's memory of accepted deliveries (two
// entries each: delivery id and signature).
const maxRemembered = 2 * 10000

// verified is what a request that passed verify proves.
type verified struct {
	at       time.Time
	delivery string
	mac      string // lowercase hex, whatever case the header used
}

// Verify checks a signed request as the package doc tells receivers to,
// except for replays (see Receiver): exactly one of each header, well
// formed; the signature of body, the raw bytes received, under key,
// compared in constant time; and a timestamp within window of now (0 means
// DefaultWindow). Returns an error wrapping ErrUnauthenticated that says
// which check failed.
func Verify(key []byte, r *http.Request, body []byte, now time.Time, window time.Duration) error {
	_, err := verify(key, r.Header, body, now, window)
	return err
}

func verify(key []byte, h http.Header, body []byte, now time.Time, window time.Duration) (verified, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	ts, okTS := single(h, HeaderTimestamp)
	delivery, okID := single(h, HeaderDelivery)
	sig, okSig := single(h, HeaderSignature)
	sec, err := strconv.ParseInt(ts, 10, 64)
	switch {
	case !okTS || err != nil || sec < 0 || strconv.FormatInt(sec, 10) != ts:
		// Only the canonical form: the signature covers the header's text.
		return verified{}, refused("missing or malformed " + HeaderTimestamp)
	case !okID || !validDelivery(delivery):
		return verified{}, refused("missing or malformed " + HeaderDelivery)
	}
	hexMAC, okV1 := strings.CutPrefix(sig, "v1=")
	got, err := hex.DecodeString(hexMAC)
	if !okSig || !okV1 || err != nil || len(got) != sha256.Size {
		return verified{}, refused("missing or malformed " + HeaderSignature)
	}
	if len(key) == 0 {
		// Anyone can compute an HMAC under the empty key.
		return verified{}, refused("the receiver has no key")
	}
	if !hmac.Equal(got, mac(key, ts, body)) {
		return verified{}, refused("the signature does not match")
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > window || d < -window {
		return verified{}, refused(HeaderTimestamp + " is more than " + window.String() + " away from the receiver's clock")
	}
	return verified{at: at, delivery: delivery, mac: hex.EncodeToString(got)}, nil
}

func single(h http.Header, name string) (string, bool) {
	v := h.Values(name)
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// validDelivery allows 1 to 128 printable ASCII characters without spaces.
func validDelivery(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

func refused(why string) error {
	return escrow.Errorf(escrow.CodeUnauthenticated, "hook request refused: %s", why)
}

// Receiver is an http.Handler for a hook written in Go: it verifies each
// request, refuses a delivery id or signature it accepted within the
// window, decodes the HookEvent and answers with what handle returns. It
// remembers at most 10,000 deliveries at once and refuses more (503)
// rather than forget one that could still be replayed.
//
// The delivery id is not signed, so a replay may carry a fresh one; the
// signature is remembered too. The same body sent twice within one second
// therefore counts as a replay, which a sender that never resends does not
// notice.
//
// Refusals are answered with a status and {"allow":false,"message":...}:
// 405 (not POST), 413 (over MaxBody), 401 (Verify failed), 409 (replay),
// 503 (memory full), 400 (not a HookEvent).
type Receiver struct {
	key    []byte
	window time.Duration
	now    func() time.Time
	handle func(context.Context, escrow.HookEvent) escrow.HookResult

	mu   sync.Mutex
	max  int
	seen map[string]time.Time // "d:"+delivery or "s:"+signature -> when it may be forgotten
}

// NewReceiver returns a Receiver that verifies with key and window (0:
// DefaultWindow) against the clock now (nil: time.Now).
func NewReceiver(key []byte, window time.Duration, now func() time.Time, handle func(context.Context, escrow.HookEvent) escrow.HookResult) *Receiver {
	if window <= 0 {
		window = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	return &Receiver{key: key, window: window, now: now, handle: handle, max: maxRemembered, seen: map[string]time.Time{}}
}

func (rv *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, escrow.HookResult{Message: "hooks are POSTed"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			answer(w, http.StatusRequestEntityTooLarge, escrow.HookResult{Message: "the request is larger than 64 KiB"})
			return
		}
		answer(w, http.StatusBadRequest, escrow.HookResult{Message: "the request body could not be read"})
		return
	}
	now := rv.now()
	v, err := verify(rv.key, r.Header, body, now, rv.window)
	if err != nil {
		answer(w, http.StatusUnauthorized, escrow.HookResult{Message: escrow.ErrorMessage(err)})
		return
	}
	if status, why := rv.remember(v, now); status != 0 {
		answer(w, status, escrow.HookResult{Message: why})
		return
	}
	var ev escrow.HookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		answer(w, http.StatusBadRequest, escrow.HookResult{Message: "the body is not a HookEvent"})
		return
	}
	answer(w, http.StatusOK, rv.handle(r.Context(), ev))
}

// remember records an accepted delivery, or says why it must be refused.
func (rv *Receiver) remember(v verified, now time.Time) (int, string) {
	d, s := "d:"+v.delivery, "s:"+v.mac
	// Past at+window verify refuses the timestamp, so the entry can go.
	forget := v.at.Add(rv.window + time.Second)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if len(rv.seen)+2 > rv.max {
		for k, t := range rv.seen {
			if now.After(t) {
				delete(rv.seen, k)
			}
		}
	}
	if _, dup := rv.seen[d]; dup {
		return http.StatusConflict, "delivery " + v.delivery + " was already received"
	}
	if _, dup := rv.seen[s]; dup {
		return http.StatusConflict, "this signed request was already received"
	}
	if len(rv.seen)+2 > rv.max {
		return http.StatusServiceUnavailable, "too many deliveries within the window"
	}
	rv.seen[d], rv.seen[s] = forget, forget
	return 0, ""
}

func answer(w http.ResponseWriter, status int, res escrow.HookResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}
