package devserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkReveal drives the full reveal path in process: bearer token
// verification, ACL decision over the folder chain, version read, envelope
// decryption and a durable (synchronous=FULL, group-committed) audit append
// on SQLite, through the same http.Handler that serves the API.
func BenchmarkReveal(b *testing.B) {
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: b.TempDir(), Seed: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tok, err := s.Token("alice")
	if err != nil {
		b.Fatal(err)
	}
	sec, err := s.store.GetSecretByPath(context.Background(), "/prod/db", "postgres-admin")
	if err != nil {
		b.Fatal(err)
	}
	h := s.http.Handler
	url := "/v1/secrets/" + sec.ID + "/value"
	reveal := func() int {
		req := httptest.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if code := reveal(); code != http.StatusOK {
		b.Fatalf("reveal: status %d", code)
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if code := reveal(); code != http.StatusOK {
				b.Fatalf("status %d", code)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(4) // 8 goroutines on 2 CPUs, like the 8-client load run
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code := reveal(); code != http.StatusOK {
					b.Errorf("status %d", code)
					return
				}
			}
		})
	})
}
