package devserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// TestBannerExampleReveals follows the banner's printed curl example.
func TestBannerExampleReveals(t *testing.T) {
	var out bytes.Buffer
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Seed: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := regexp.MustCompile(`curl -s -H "Authorization: Bearer \$TOKEN" (\S+/value)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("banner has no reveal example:\n%s", out.String())
	}
	resp, err := http.Post(s.URL+"/dev/token", "application/json", strings.NewReader(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("GET", m[1], nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rv struct {
		Path  string
		Value map[string]string
	}
	json.NewDecoder(resp.Body).Decode(&rv)
	if resp.StatusCode != 200 || rv.Value["password"] == "" || rv.Path != "/prod/db/postgres-admin" {
		t.Fatalf("banner example: status %d, %+v", resp.StatusCode, rv)
	}
	for _, u := range []string{"alice", "bob", "carol", "admin", "auditor"} {
		if !strings.Contains(out.String(), "TOKEN_"+strings.ToUpper(u)+"=ey") {
			t.Errorf("banner lacks a token for %s", u)
		}
	}
	if strings.Contains(out.String(), rv.Value["password"]) {
		t.Fatal("banner prints a secret value")
	}
}

// TestRestartKeepsDataAndSeedsOnce: a restart finds the same store, the
// same master key and the same demo secrets, not a second copy.
func TestRestartKeepsDataAndSeedsOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ids := func() []string {
		s, err := Start(ctx, Config{Addr: "127.0.0.1:0", DataDir: dir, Seed: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		page, err := s.store.ListSecrets(ctx, escrow.SecretQuery{Folder: "/", Recursive: true})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sec := range page.Secrets {
			out = append(out, sec.Path()+"="+sec.ID)
		}
		if _, err := s.Token("nobody"); !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("token for an unknown demo user: %v", err)
		}
		return out
	}
	first, second := ids(), ids()
	if len(first) != 6 || strings.Join(first, " ") != strings.Join(second, " ") {
		t.Fatalf("demo secrets before and after restart:\n%v\n%v", first, second)
	}
}

func TestDevTokenErrors(t *testing.T) {
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for body, want := range map[string]int{`{"user":"mallory"}`: 404, `{"usr":"alice"}`: 400, `not json`: 400} {
		resp, err := http.Post(s.URL+"/dev/token", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST /dev/token %s: %d, want %d", body, resp.StatusCode, want)
		}
	}
}
