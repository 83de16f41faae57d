package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// devServer mounts a dev issuer as the lead does: under /dev/oidc with
// http.StripPrefix, on a server whose URL is only known once it listens.
func devServer(t *testing.T, keyPath string) (*auth.DevIssuer, *httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuerURL := srv.URL + "/dev/oidc"
	d, err := auth.OpenDevIssuer(keyPath, issuerURL, audience)
	if err != nil {
		t.Fatalf("OpenDevIssuer: %v", err)
	}
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", d.Handler()))
	return d, srv, issuerURL
}

func TestDevIssuerTokensVerify(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "dev", "issuer.pem")
	d, srv, issuerURL := devServer(t, keyPath)
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuerURL, Audience: audience, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	users := auth.DemoUsers()
	if len(users) != 5 {
		t.Fatalf("%d demo users, want 5", len(users))
	}
	for _, u := range users {
		t.Run(u.Subject, func(t *testing.T) {
			before := time.Now()
			tok, exp, err := d.Mint(u, time.Hour)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if exp.Before(before.Add(time.Hour-time.Second)) || exp.After(before.Add(time.Hour+time.Second)) {
				t.Fatalf("exp %v is not an hour after %v", exp, before)
			}
			p, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != u.Subject || p.Email != u.Subject+"@example.com" || p.Name != u.Name ||
				!slices.Equal(p.Groups, u.Groups) || !slices.Equal(p.Roles, u.Roles) {
				t.Fatalf("principal %+v, want %+v", p, u)
			}
		})
	}
	byName := map[string]auth.DevUser{}
	for _, u := range users {
		byName[u.Subject] = u
	}
	switch {
	case !slices.Contains(byName["alice"].Groups, "engineering"),
		!slices.Contains(byName["bob"].Groups, "approvers"),
		!slices.Contains(byName["carol"].Groups, "oncall"),
		!slices.Contains(byName["admin"].Roles, escrow.RoleAdmin),
		!slices.Contains(byName["auditor"].Roles, escrow.RoleAuditor),
		slices.Contains(byName["alice"].Roles, escrow.RoleAdmin):
		t.Fatalf("demo users do not match their roles: %+v", users)
	}
}

func TestDevIssuerDocuments(t *testing.T) {
	_, srv, issuerURL := devServer(t, filepath.Join(t.TempDir(), "issuer.pem"))
	get := func(path string, into any) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatal(err)
		}
	}
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	get("/dev/oidc/.well-known/openid-configuration", &disco)
	if disco.Issuer != issuerURL || disco.JWKSURI != issuerURL+"/jwks.json" {
		t.Fatalf("discovery = %+v", disco)
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	get("/dev/oidc/jwks.json", &jwks)
	if len(jwks.Keys) != 1 {
		t.Fatalf("jwks has %d keys", len(jwks.Keys))
	}
	k := jwks.Keys[0]
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["kid"] == "" {
		t.Fatalf("jwk = %v", k)
	}
	if _, ok := k["d"]; ok {
		t.Fatal("the JWKS publishes the private key")
	}
	resp, err := srv.Client().Post(srv.URL+"/dev/oidc/jwks.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST jwks.json: %d, want 405", resp.StatusCode)
	}
}

func TestDevIssuerKeyPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	keyPath := filepath.Join(dir, "issuer.pem")
	d1, _, _ := devServer(t, keyPath)
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %04o, want 0700", dst.Mode().Perm())
	}
	// A token from before a restart verifies against the restarted issuer,
	// which serves the same key (and kid) from the file.
	d1URL := d1Issuer(t, d1)
	tok, _, err := d1.Mint(auth.DemoUsers()[0], time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := auth.OpenDevIssuer(keyPath, d1URL, audience)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	srv2 := httptest.NewServer(http.StripPrefix("/dev/oidc", d2.Handler()))
	t.Cleanup(srv2.Close)
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: d1URL, Audience: audience, JWKSURL: srv2.URL + "/dev/oidc/jwks.json", HTTPClient: srv2.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(context.Background(), tok); err != nil || p.Subject != "alice" {
		t.Fatalf("token from before the restart: %v", err)
	}
}

// d1Issuer reads the issuer a dev issuer puts in its tokens.
func d1Issuer(t *testing.T, d *auth.DevIssuer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	var disco struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &disco); err != nil || disco.Issuer == "" {
		t.Fatalf("discovery: %v %q", err, rec.Body.String())
	}
	return disco.Issuer
}

func TestDevIssuerRefusesOpenKeyFile(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "issuer.pem")
	if _, err := auth.OpenDevIssuer(keyPath, "http://localhost/dev/oidc", audience); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.OpenDevIssuer(keyPath, "http://localhost/dev/oidc", audience); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("OpenDevIssuer with a 0644 key: %v, want a refusal", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.OpenDevIssuer(bad, "http://localhost/dev/oidc", audience); err == nil {
		t.Fatal("OpenDevIssuer accepted a garbage key file")
	}
}

func TestDevIssuerMintChecks(t *testing.T) {
	d, err := auth.OpenDevIssuer(filepath.Join(t.TempDir(), "k.pem"), "http://localhost/dev/oidc", audience)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Mint(auth.DevUser{}, time.Hour); err == nil {
		t.Fatal("Mint without a subject succeeded")
	}
	if _, _, err := d.Mint(auth.DemoUsers()[0], 0); err == nil {
		t.Fatal("Mint with no ttl succeeded")
	}
	if _, err := auth.OpenDevIssuer(filepath.Join(t.TempDir(), "k.pem"), "", audience); err == nil {
		t.Fatal("OpenDevIssuer without an issuer URL succeeded")
	}
}
