package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// DevUser is a demo identity the dev issuer mints tokens for.
type DevUser struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email"`
	Name    string   `json:"name"`
	Groups  []string `json:"groups,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// DemoUsers returns the demo identities of `escrow server -dev`.
func DemoUsers() []DevUser {
	u := func(sub, name string, groups, roles []string) DevUser {
		return DevUser{Subject: sub, Email: sub + "@example.com", Name: name, Groups: groups, Roles: roles}
	}
	return []DevUser{
		u("alice", "Alice", []string{"engineering"}, nil),
		u("bob", "Bob", []string{"approvers"}, nil),
		u("carol", "Carol", []string{"engineering", "oncall"}, nil),
		u("admin", "Admin", nil, []string{escrow.RoleAdmin}),
		u("auditor", "Auditor", nil, []string{escrow.RoleAuditor}),
	}
}

// DevIssuer is a minimal OIDC issuer for local development: it signs tokens
// with an Ed25519 key kept in a file and serves its discovery document and
// JWKS, so that the ordinary Verifier checks its tokens like any other.
//
// It also plays an authorization server for the Authorization Code flow with
// PKCE (S256): GET /authorize shows a page that signs in as any of its users
// at the press of a button, and POST /token exchanges the one-time code for
// an ID token. It is safe for concurrent use.
type DevIssuer struct {
	key       jwk.Key // private, with kid and alg set
	issuer    string
	origin    *url.URL // scheme and host of issuer, where redirects may also go
	audience  string
	discovery []byte
	jwks      []byte
	clock     escrow.Clock

	mu        sync.Mutex
	users     []DevUser            // nil means DemoUsers
	codes     map[string]*authCode // authorization codes, some perhaps expired
	nextSweep time.Time            // when putCode next drops expired codes
}

// OpenDevIssuer loads the Ed25519 signing key at keyPath, creating it (mode
// 0600, directories 0700) if missing, for an issuer reachable at issuerURL
// (where Handler is mounted) that mints tokens for audience.
func OpenDevIssuer(keyPath, issuerURL, audience string) (*DevIssuer, error) {
	if issuerURL == "" || audience == "" {
		return nil, errors.New("dev issuer: need an issuer URL and an audience")
	}
	priv, err := readDevKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		priv, err = createDevKey(keyPath)
	}
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(priv)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: import key: %w", err)
	}
	// The kid is the key's RFC 7638 thumbprint: stable across restarts,
	// new when the key file is replaced.
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, err
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.EdDSA()); err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: public key: %w", err)
	}
	if err := pub.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: encode jwks: %w", err)
	}
	issuer := strings.TrimSuffix(issuerURL, "/")
	iu, err := url.Parse(issuer)
	if err != nil || (iu.Scheme != "http" && iu.Scheme != "https") || iu.Host == "" {
		return nil, fmt.Errorf("dev issuer: issuer URL %q is not an absolute http(s) URL", issuerURL)
	}
	discovery, err := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/jwks.json",
		"authorization_endpoint":                issuer + "/authorize",
		"token_endpoint":                        issuer + "/token",
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"response_types_supported":              []string{"code", "id_token"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"prompt_values_supported":               []string{"none", "login"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti",
			"auth_time", "nonce", "email", "name", "groups", "roles"},
	})
	if err != nil {
		return nil, err
	}
	return &DevIssuer{key: key, issuer: issuer, origin: &url.URL{Scheme: iu.Scheme, Host: iu.Host},
		audience: audience, discovery: discovery, jwks: jwks, clock: escrow.SystemClock{}}, nil
}

// SetUsers replaces the identities the sign-in page offers (by default,
// DemoUsers). Tokens minted with Mint are not limited to them. It returns an
// error, changing nothing, if a user has no subject or two share one.
func (d *DevIssuer) SetUsers(users []DevUser) error {
	seen := make(map[string]bool, len(users))
	cp := make([]DevUser, 0, len(users))
	for _, u := range users {
		if u.Subject == "" {
			return errors.New("dev issuer: a user has no subject")
		}
		if seen[u.Subject] {
			return fmt.Errorf("dev issuer: two users have subject %q", u.Subject)
		}
		seen[u.Subject] = true
		u.Groups = slices.Clone(u.Groups)
		u.Roles = slices.Clone(u.Roles)
		cp = append(cp, u)
	}
	if len(cp) == 0 {
		cp = nil
	}
	d.mu.Lock()
	d.users = cp
	d.mu.Unlock()
	return nil
}

// userList returns the users the sign-in page offers.
func (d *DevIssuer) userList() []DevUser {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users == nil {
		return DemoUsers()
	}
	return d.users // never modified in place: SetUsers replaces it
}

// Mint signs a token for u that expires after ttl.
func (d *DevIssuer) Mint(u DevUser, ttl time.Duration) (token string, exp time.Time, err error) {
	return d.mint(u, ttl, nil)
}

// mint signs a token for u that expires after ttl, with extra claims.
func (d *DevIssuer) mint(u DevUser, ttl time.Duration, extra map[string]any) (token string, exp time.Time, err error) {
	if u.Subject == "" || ttl <= 0 {
		return "", time.Time{}, errors.New("dev issuer: need a subject and a positive ttl")
	}
	now := d.clock.Now().Truncate(time.Second) // JWT times are whole seconds
	exp = now.Add(ttl.Round(time.Second))
	b := jwt.NewBuilder().
		Issuer(d.issuer).
		Audience([]string{d.audience}).
		Subject(u.Subject).
		IssuedAt(now).
		NotBefore(now).
		Expiration(exp).
		JwtID(escrow.NewID(now))
	if u.Email != "" {
		b = b.Claim("email", u.Email)
	}
	if u.Name != "" {
		b = b.Claim("name", u.Name)
	}
	if len(u.Groups) > 0 {
		b = b.Claim("groups", u.Groups)
	}
	if len(u.Roles) > 0 {
		b = b.Claim("roles", u.Roles)
	}
	for k, v := range extra {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("dev issuer: build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), d.key))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("dev issuer: sign token: %w", err)
	}
	return string(signed), exp, nil
}

// Handler serves, relative to where it is mounted (strip the mount prefix):
//
//	GET  /.well-known/openid-configuration
//	GET  /jwks.json
//	GET  /authorize   the sign-in page
//	POST /authorize   the page's form; redirects to the client with a code
//	POST /token       exchanges a code (with its PKCE verifier) for an ID token
func (d *DevIssuer) Handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
		}
	}
	mux.Handle("GET /.well-known/openid-configuration", serve(d.discovery))
	mux.Handle("GET /jwks.json", serve(d.jwks))
	mux.HandleFunc("GET /authorize", d.authorizePage)
	mux.HandleFunc("POST /authorize", d.authorizeSubmit)
	mux.HandleFunc("POST /token", d.token)
	return mux
}

const devKeyPEMType = "PRIVATE KEY"

func readDevKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // keeps fs.ErrNotExist visible
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat dev issuer key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("dev issuer key %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("dev issuer key %s has mode %04o, which lets group or others access it; run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read dev issuer key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != devKeyPEMType {
		return nil, fmt.Errorf("dev issuer key %s is not a PEM %q block", path, devKeyPEMType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse dev issuer key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dev issuer key %s is a %T, want Ed25519", path, k)
	}
	return priv, nil
}

// createDevKey writes a new key through a temporary file and a link, so a
// concurrent reader never sees half a key and racing creators agree.
func createDevKey(path string) (ed25519.PrivateKey, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dev issuer key directory: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev issuer key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode dev issuer key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".devissuer-*")
	if err != nil {
		return nil, fmt.Errorf("create dev issuer key: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		err = pem.Encode(tmp, &pem.Block{Type: devKeyPEMType, Bytes: der})
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write dev issuer key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readDevKey(path)
		}
		return nil, fmt.Errorf("install dev issuer key: %w", err)
	}
	return priv, nil
}
