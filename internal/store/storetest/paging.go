package storetest

import (
	"testing"
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
