package auditlog

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"
)

// TestMLDSALeavesSHA256Fast: after our ML-DSA-65 calls, SHA-256 on the same
// thread runs at its usual speed (see simd_amd64.go). Without the fix it
// was about 90 times slower; the test fails only at 20 times, so a loaded
// machine does not make it flaky.
func TestMLDSALeavesSHA256Fast(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 60_000)
	sha := func() time.Duration {
		start := time.Now()
		sha256.Sum256(buf)
		return time.Since(start)
	}
	_, ds := testLog(t, 3)
	sd := ds[0]
	canon, err := sd.Canonical()
	mustf(t, err, "canonical")
	msg, keys := signedMessage(canon), testSigner.PublicKeys()
	fresh, after := time.Hour, time.Hour
	for range 5 {
		fresh = min(fresh, sha())
		if !mldsaVerify(keys.MLDSA65, msg, sd.MLDSA65Sig) {
			t.Fatal("signature does not verify")
		}
		after = min(after, sha())
		if _, err := testSigner.Sign(&sd.Digest); err != nil {
			t.Fatal(err)
		}
		after = min(after, sha())
	}
	if after > 20*fresh {
		t.Fatalf("SHA-256 of 60 KB takes %v after ML-DSA-65, %v before", after, fresh)
	}
}
