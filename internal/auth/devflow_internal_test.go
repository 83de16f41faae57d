package auth

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestCodeStoreBounded(t *testing.T) {
	d, err := OpenDevIssuer(filepath.Join(t.TempDir(), "k.pem"), "http://localhost/dev/oidc", "escrow-api")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	for i := range devMaxCodes {
		if !d.putCode(strconv.Itoa(i), &authCode{expires: now.Add(devCodeTTL)}, now) {
			t.Fatalf("code %d refused below the bound", i)
		}
	}
	if d.putCode("one-too-many", &authCode{expires: now.Add(devCodeTTL)}, now) {
		t.Fatal("a code beyond the bound was stored")
	}
	// Once they expire, inserting purges them.
	later := now.Add(devCodeTTL)
	if !d.putCode("fresh", &authCode{expires: later.Add(devCodeTTL)}, later) {
		t.Fatal("expired codes were not purged")
	}
	if n := len(d.codes); n != 1 {
		t.Fatalf("%d codes held after the purge, want 1", n)
	}
	if d.takeCode("fresh") == nil || d.takeCode("fresh") != nil {
		t.Fatal("takeCode is not one-time")
	}
}
