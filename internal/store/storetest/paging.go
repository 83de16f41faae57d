package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// maxPages bounds a paged read, so an adapter whose cursor never ends
// fails the test instead of hanging it.
const maxPages = 2000

// drain reads every page through next (which takes a cursor and returns a
// page and the next cursor), failing the test if an item comes twice, a
// page is larger than limit (when limit > 0), or the pages never end.
func drain[T any](t *testing.T, what string, limit int, next func(cursor string) ([]T, string, error), id func(T) string) []T {
	t.Helper()
	var out []T
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if page > maxPages {
			t.Fatalf("%s: more than %d pages", what, maxPages)
		}
		items, nextCursor, err := next(cursor)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if limit > 0 && len(items) > limit {
			t.Fatalf("%s (limit %d) returned %d", what, limit, len(items))
		}
		for _, it := range items {
			k := id(it)
			if seen[k] {
				t.Fatalf("%s: %s returned twice", what, k)
			}
			seen[k] = true
			out = append(out, it)
		}
		if nextCursor == "" {
			return out
		}
		cursor = nextCursor
	}
}

// idsOf maps items to their ids, in order.
func idsOf[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

// raceOne starts n writers at once, each calling put(i), and checks that
// exactly one wins and every other gets ErrConflict: the conditional write
// every store port promises. It returns the winner.
func raceOne(t *testing.T, n int, prevRevision int64, put func(i int) error) int {
	t.Helper()
	return raceOneLosing(t, n, fmt.Sprintf("from revision %d", prevRevision), put, escrow.ErrConflict)
}

// raceOneLosing is raceOne where a loser may get any of losers (a delete
// that follows the winner finds nothing: ErrNotFound).
func raceOneLosing(t *testing.T, n int, what string, put func(i int) error, losers ...error) int {
	t.Helper()
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = put(i)
		})
	}
	close(start)
	wg.Wait()
	winner, lost := -1, 0
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("racers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case slices.ContainsFunc(losers, func(l error) bool { return errors.Is(err, l) }):
			lost++
		default:
			t.Errorf("racer %d: %v, want one of %v", i, err, losers)
		}
	}
	if winner < 0 {
		t.Fatalf("no racer won: %v", errs)
	}
	t.Logf("%d racers %s: racer %d won, %d lost as they should", n, what, winner, lost)
	return winner
}
