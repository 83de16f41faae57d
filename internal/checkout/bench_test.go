package checkout_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// BenchmarkCheckoutRace64 settles one race of 64 clients for one secret on
// SQLite per op (a fresh secret each time): exactly one must win.
func BenchmarkCheckoutRace64(b *testing.B) {
	e := newEnv(b, &escrow.CheckoutRule{})
	users := make([]*escrow.Principal, 64)
	for i := range users {
		users[i] = &escrow.Principal{Subject: fmt.Sprintf("user%02d", i), Groups: []string{"ops"}}
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		s := e.secret(fmt.Sprintf("race-%d", n), escrow.SecretValue{"password": "p"})
		start := make(chan struct{})
		var wg sync.WaitGroup
		var wins, conflicts atomic.Int32
		for _, u := range users {
			wg.Go(func() {
				<-start
				_, err := e.co.Checkout(as(u), checkout.Input{SecretID: s.ID})
				switch {
				case err == nil:
					wins.Add(1)
				case escrow.ErrorCode(err) == escrow.CodeConflict:
					conflicts.Add(1)
				}
			})
		}
		b.StartTimer()
		close(start)
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 63 {
			b.Fatalf("race %d: %d winners, %d conflicts", n, wins.Load(), conflicts.Load())
		}
	}
	b.ReportMetric(1, "winners/race")
}
