package auth

import (
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// SetDevClock makes d tell time by c, for code expiry and token times.
// Call it before d serves.
func SetDevClock(d *DevIssuer, c escrow.Clock) { d.clock = c }

// DevCodeTTL is how long an authorization code lives.
const DevCodeTTL = devCodeTTL

// MintWithClaims mints an hour-long token for u with extra claims.
func MintWithClaims(t testing.TB, d *DevIssuer, u DevUser, extra map[string]any) string {
	t.Helper()
	tok, _, err := d.mint(u, time.Hour, extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
