package web_test

import (
	"net/http"
	"strings"
	"testing"
)

// BenchmarkSecretPage is one signed-in GET of a secret's page over
// loopback HTTP: the session read, the secret, its policy, the caller's
// grants (each audited, as the API's reads are) and the rendering.
func BenchmarkSecretPage(b *testing.B) {
	s := newStack(b)
	_, open := s.seed(canary)
	br := s.browser("alice")

	if p := br.signIn("/secrets/" + open); p.status != http.StatusOK {
		b.Fatalf("sign in: %d", p.status)
	}
	for b.Loop() {
		p := br.get("/secrets/" + open)
		if p.status != http.StatusOK || !strings.Contains(p.body, "reveal-button") {
			b.Fatalf("secret page: %d", p.status)
		}
	}
}

// BenchmarkRevealPage is one reveal through the console: CSRF check,
// the use case (audited before it answers) and the page with the value.
func BenchmarkRevealPage(b *testing.B) {
	s := newStack(b)
	_, open := s.seed(canary)
	br := s.browser("alice")

	p := br.signIn("/secrets/" + open)
	form := map[string][]string{"csrf": {br.csrf(p)}}
	for b.Loop() {
		r := br.post("/secrets/"+open+"/reveal", form)
		if r.status != http.StatusOK || !strings.Contains(r.body, canary) {
			b.Fatalf("reveal: %d", r.status)
		}
	}
}
