package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/escrow"
)

const audience = "escrow-api"

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// issuer is a real HTTP OIDC issuer on httptest that counts its requests.
type issuer struct {
	srv       *httptest.Server
	mu        sync.Mutex
	pub       []jwk.Key
	down      bool
	jwksHits  atomic.Int64
	discoHits atomic.Int64
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	is := &issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discoHits.Add(1)
		if is.isDown() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		if is.isDown() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		set := jwk.NewSet()
		for _, k := range is.pub {
			_ = set.AddKey(k)
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) isDown() bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.down
}

func (is *issuer) setDown(d bool) {
	is.mu.Lock()
	is.down = d
	is.mu.Unlock()
}

// signer is a private key with its kid and alg, for minting test tokens.
type signer struct {
	key jwk.Key
	alg jwa.SignatureAlgorithm
}

func newSigner(t testing.TB, kid string, alg jwa.SignatureAlgorithm) *signer {
	t.Helper()
	var raw any
	var err error
	switch alg.String() {
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, alg: alg}
}

// publish adds s's public key to the issuer's JWKS.
func (is *issuer) publish(t testing.TB, s *signer) {
	t.Helper()
	pub, err := jwk.PublicKeyOf(s.key)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.pub = append(is.pub, pub)
	is.mu.Unlock()
}

// claims returns valid claims for issuer iss at time now.
func claims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss": iss, "aud": []string{audience}, "sub": "alice",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "alice@example.com", "name": "Alice",
		"groups": []string{"engineering", "oncall"}, "roles": []string{"admin"},
	}
}

func (s *signer) sign(t testing.TB, c map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
		if err := tok.Set(k, v); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	out, err := jwt.Sign(tok, jwt.WithKey(s.alg, s.key))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(out)
}

// handMade builds a compact JWS from a header and claims with sig as the
// signature function, for tokens no well-behaved library would produce.
func handMade(t testing.TB, header, c map[string]any, sig func(signingInput []byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(header) + "." + enc(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig([]byte(in)))
}

type fixture struct {
	is    *issuer
	clock *fakeClock
	key   *signer
	v     *auth.Verifier
	now   time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	is := newIssuer(t)
	key := newSigner(t, "k1", jwa.EdDSA())
	is.publish(t, key)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: now}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: is.srv.URL, Audience: audience, HTTPClient: is.srv.Client(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{is: is, clock: clock, key: key, v: v, now: now}
}

func TestVerifyValid(t *testing.T) {
	f := newFixture(t)
	if f.is.jwksHits.Load() != 0 || f.is.discoHits.Load() != 0 {
		t.Fatal("NewVerifier made a network call")
	}
	p, err := f.v.Verify(context.Background(), f.key.sign(t, claims(f.is.srv.URL, f.now)))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := &escrow.Principal{Subject: "alice", Email: "alice@example.com", Name: "Alice", Groups: []string{"engineering", "oncall"}, Roles: []string{"admin"}}
	if p.Subject != want.Subject || p.Email != want.Email || p.Name != want.Name || !slices.Equal(p.Groups, want.Groups) || !slices.Equal(p.Roles, want.Roles) {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}
}

func TestVerifyAlgorithms(t *testing.T) {
	f := newFixture(t)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.ES256(), jwa.RS256()} {
		s := newSigner(t, "k-"+alg.String(), alg)
		f.is.publish(t, s)
		f.clock.Advance(auth.RefetchInterval) // let the new kid be fetched
		p, err := f.v.Verify(context.Background(), s.sign(t, claims(f.is.srv.URL, f.clock.Now())))
		if err != nil || p.Subject != "alice" {
			t.Fatalf("%s token: %v", alg, err)
		}
	}
}

func TestVerifyClaimShapes(t *testing.T) {
	f := newFixture(t)
	c := claims(f.is.srv.URL, f.now)
	c["groups"] = "solo"                        // a single string
	c["roles"] = []any{"auditor", 7, "", "ops"} // non-strings are dropped
	p, err := f.v.Verify(context.Background(), f.key.sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Groups, []string{"solo"}) || !slices.Equal(p.Roles, []string{"auditor", "ops"}) {
		t.Fatalf("groups %q roles %q", p.Groups, p.Roles)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: f.is.srv.URL, Audience: audience, HTTPClient: f.is.srv.Client(), Clock: f.clock, GroupsClaim: "cognito:groups", RolesClaim: "escrow_roles"})
	if err != nil {
		t.Fatal(err)
	}
	c = claims(f.is.srv.URL, f.now)
	c["cognito:groups"] = []string{"dba"}
	c["escrow_roles"] = []string{"auditor"}
	p, err = v.Verify(context.Background(), f.key.sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Groups, []string{"dba"}) || !slices.Equal(p.Roles, []string{"auditor"}) {
		t.Fatalf("custom claims: groups %q roles %q", p.Groups, p.Roles)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	iss, now := f.is.srv.URL, f.now
	with := func(k string, v any) map[string]any {
		c := claims(iss, now)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	other := newSigner(t, "k1", jwa.EdDSA()) // same kid, another key
	edPub, _ := f.key.key.PublicKey()
	var rawPub ed25519.PublicKey
	if err := jwk.Export(edPub, &rawPub); err != nil {
		t.Fatal(err)
	}
	pubJSON, _ := json.Marshal(edPub)
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	valid := f.key.sign(t, claims(iss, now))
	parts := strings.Split(valid, ".")

	for _, tc := range []struct {
		name, token, msg string
	}{
		{"expired", f.key.sign(t, with("exp", now.Add(-time.Minute).Unix())), "token expired"},
		{"not yet valid", f.key.sign(t, with("nbf", now.Add(time.Minute).Unix())), "token not yet valid"},
		{"issued in the future", f.key.sign(t, with("iat", now.Add(time.Hour).Unix())), "token issued in the future"},
		{"wrong audience", f.key.sign(t, with("aud", []string{"someone-else"})), "wrong audience"},
		{"no audience", f.key.sign(t, with("aud", nil)), "wrong audience"},
		{"wrong issuer", f.key.sign(t, with("iss", "https://evil.example.com")), "wrong issuer"},
		{"no expiry", f.key.sign(t, with("exp", nil)), "token has no expiry"},
		{"missing sub", f.key.sign(t, with("sub", nil)), "token has no subject"},
		{"empty sub", f.key.sign(t, with("sub", "")), "token has no subject"},
		{"bad signature", other.sign(t, claims(iss, now)), "invalid token signature"},
		{"payload swapped", parts[0] + "." + strings.Split(f.key.sign(t, with("sub", "root")), ".")[1] + "." + parts[2], "invalid token signature"},
		{"alg none", handMade(t, map[string]any{"alg": "none", "kid": "k1"}, claims(iss, now), func([]byte) []byte { return nil }), "unsupported token algorithm"},
		{"alg None", handMade(t, map[string]any{"alg": "None", "kid": "k1"}, claims(iss, now), func([]byte) []byte { return nil }), "unsupported token algorithm"},
		{"HS256 with public key bytes", handMade(t, map[string]any{"alg": "HS256", "kid": "k1"}, claims(iss, now), hs256(rawPub)), "unsupported token algorithm"},
		{"HS256 with public JWK", handMade(t, map[string]any{"alg": "HS256", "kid": "k1"}, claims(iss, now), hs256(pubJSON)), "unsupported token algorithm"},
		{"alg does not fit key", handMade(t, map[string]any{"alg": "RS256", "kid": "k1"}, claims(iss, now), func([]byte) []byte { return make([]byte, 256) }), "token algorithm does not match its key"},
		{"empty", "", "missing token"},
		{"one part", "abc", "malformed token"},
		{"two parts", "abc.def", "malformed token"},
		{"four parts", valid + ".x", "malformed token"},
		{"bad base64 header", "!!!." + parts[1] + "." + parts[2], "malformed token"},
		{"header not json", base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], "malformed token"},
		{"bad base64 payload", parts[0] + ".!!!." + parts[2], "invalid token signature"},
		{"huge", strings.Repeat("a", 20000), "token too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", p)
			}
			if !errors.Is(err, escrow.ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			if got := escrow.ErrorMessage(err); got != tc.msg {
				t.Fatalf("message = %q, want %q (err: %v)", got, tc.msg, err)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatal("error contains the token")
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	f := newFixture(t)
	c := claims(f.is.srv.URL, f.now)
	c["exp"] = f.now.Add(-20 * time.Second).Unix() // within the default 30 s
	if _, err := f.v.Verify(context.Background(), f.key.sign(t, c)); err != nil {
		t.Fatalf("token 20 s past expiry, 30 s leeway: %v", err)
	}
	c["exp"] = f.now.Add(-40 * time.Second).Unix()
	if _, err := f.v.Verify(context.Background(), f.key.sign(t, c)); !errors.Is(err, escrow.ErrUnauthenticated) {
		t.Fatalf("token 40 s past expiry, 30 s leeway: %v", err)
	}
}

func TestRejectedAlgorithmsNeverFetch(t *testing.T) {
	f := newFixture(t)
	for _, alg := range []string{"none", "HS256", "HS512"} {
		tok := handMade(t, map[string]any{"alg": alg, "kid": "k1"}, claims(f.is.srv.URL, f.now), func([]byte) []byte { return []byte("x") })
		if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, escrow.ErrUnauthenticated) {
			t.Fatalf("alg %s: %v", alg, err)
		}
	}
	if n := f.is.jwksHits.Load() + f.is.discoHits.Load(); n != 0 {
		t.Fatalf("refused tokens made %d requests to the issuer, want 0", n)
	}
}

func TestJWKSFetchedOnce(t *testing.T) {
	f := newFixture(t)
	tok := f.key.sign(t, claims(f.is.srv.URL, f.now))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if _, err := f.v.Verify(context.Background(), tok); err != nil {
					t.Errorf("Verify: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	f.clock.Advance(time.Hour - time.Minute) // time passing alone never refetches
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if d, j := f.is.discoHits.Load(), f.is.jwksHits.Load(); d != 1 || j != 1 {
		t.Fatalf("201 verifications made %d discovery and %d JWKS requests, want 1 and 1", d, j)
	}
}

func TestUnknownKidRefetchThrottled(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.key.sign(t, claims(f.is.srv.URL, f.now))); err != nil {
		t.Fatal(err)
	}
	// The keys just fetched are fresh: an unknown kid right away is refused
	// without asking again.
	ghost := newSigner(t, "ghost", jwa.EdDSA())
	if _, err := f.v.Verify(ctx, ghost.sign(t, claims(f.is.srv.URL, f.now))); escrow.ErrorMessage(err) != "unknown signing key" {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := f.is.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS requests = %d right after the first fetch, want 1", n)
	}
	f.clock.Advance(auth.RefetchInterval)
	for i := range 50 {
		_, err := f.v.Verify(ctx, ghost.sign(t, claims(f.is.srv.URL, f.clock.Now())))
		if !errors.Is(err, escrow.ErrUnauthenticated) || escrow.ErrorMessage(err) != "unknown signing key" {
			t.Fatalf("unknown kid #%d: %v", i, err)
		}
	}
	if n := f.is.jwksHits.Load(); n != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (first use + one refetch)", n)
	}
	f.clock.Advance(auth.RefetchInterval - time.Second)
	_, _ = f.v.Verify(ctx, ghost.sign(t, claims(f.is.srv.URL, f.clock.Now())))
	if n := f.is.jwksHits.Load(); n != 2 {
		t.Fatalf("JWKS requests = %d within the interval, want still 2", n)
	}

	// A rotated-in key is picked up by the next allowed refetch, and the
	// known key keeps working without any.
	rotated := newSigner(t, "k2", jwa.EdDSA())
	f.is.publish(t, rotated)
	f.clock.Advance(time.Second)
	if _, err := f.v.Verify(ctx, rotated.sign(t, claims(f.is.srv.URL, f.clock.Now()))); err != nil {
		t.Fatalf("rotated key after the interval: %v", err)
	}
	if _, err := f.v.Verify(ctx, f.key.sign(t, claims(f.is.srv.URL, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := f.is.jwksHits.Load(); n != 3 {
		t.Fatalf("JWKS requests = %d, want 3", n)
	}
}

func TestIssuerDown(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		f := newFixture(t)
		tok := f.key.sign(t, claims(f.is.srv.URL, f.now))
		f.is.srv.Close()
		if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, escrow.ErrUnavailable) {
			t.Fatalf("Verify with the issuer gone = %v, want ErrUnavailable", err)
		}
	})
	t.Run("5xx then back", func(t *testing.T) {
		f := newFixture(t)
		tok := f.key.sign(t, claims(f.is.srv.URL, f.now))
		f.is.setDown(true)
		for range 10 {
			if _, err := f.v.Verify(context.Background(), tok); !errors.Is(err, escrow.ErrUnavailable) {
				t.Fatalf("Verify with the issuer failing = %v, want ErrUnavailable", err)
			}
		}
		if n := f.is.discoHits.Load(); n != 1 {
			t.Fatalf("issuer asked %d times while down within %v, want 1", n, auth.RetryInterval)
		}
		f.is.setDown(false)
		f.clock.Advance(auth.RetryInterval)
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("Verify after the issuer recovered: %v", err)
		}
	})
	t.Run("refetch fails, known keys still work", func(t *testing.T) {
		f := newFixture(t)
		ctx := context.Background()
		tok := f.key.sign(t, claims(f.is.srv.URL, f.now))
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		f.is.setDown(true)
		f.clock.Advance(auth.RefetchInterval)
		ghost := newSigner(t, "ghost", jwa.EdDSA())
		if _, err := f.v.Verify(ctx, ghost.sign(t, claims(f.is.srv.URL, f.clock.Now()))); !errors.Is(err, escrow.ErrUnavailable) {
			t.Fatalf("unknown kid with the issuer down = %v, want ErrUnavailable", err)
		}
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatalf("known key with the issuer down: %v", err)
		}
	})
}

func TestDiscoveryChecksIssuer(t *testing.T) {
	is := newIssuer(t)
	key := newSigner(t, "k1", jwa.EdDSA())
	is.publish(t, key)
	// The issuer claims to be srv.URL; a verifier configured with another
	// issuer whose discovery points here must not trust it.
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: is.srv.URL + "/", Audience: audience, HTTPClient: is.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	c := claims(is.srv.URL+"/", time.Now())
	if _, err := v.Verify(context.Background(), key.sign(t, c)); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("mismatched discovery issuer: %v, want ErrUnavailable", err)
	}
}

func TestExplicitJWKSURL(t *testing.T) {
	is := newIssuer(t)
	key := newSigner(t, "k1", jwa.EdDSA())
	is.publish(t, key)
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: "https://idp.example.com", Audience: audience, JWKSURL: is.srv.URL + "/keys", HTTPClient: is.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), key.sign(t, claims("https://idp.example.com", time.Now()))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if is.discoHits.Load() != 0 {
		t.Fatal("discovery was used although JWKSURL was given")
	}
}

func TestNewVerifierChecksConfig(t *testing.T) {
	for _, cfg := range []auth.VerifierConfig{
		{Audience: audience},
		{Issuer: "https://idp.example.com"},
		{Issuer: "https://idp.example.com", Audience: audience, Leeway: -time.Second},
	} {
		if _, err := auth.NewVerifier(cfg); err == nil {
			t.Errorf("NewVerifier(%+v) succeeded", cfg)
		}
	}
}

// BenchmarkVerify measures a full verification with warm keys: the cost of
// every authenticated request. x-raw-sig is ns/op over a bare Ed25519
// signature check of the same token, measured in the same run.
// BenchmarkVerify measures a first verification of each token (signature,
// claims; "uncached") and a repeat of one token ("cached", what a client
// reusing its token costs). x-raw-sig compares the uncached EdDSA path with
// a bare Ed25519 check measured in the same run.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jwa.SignatureAlgorithm{jwa.EdDSA(), jwa.ES256(), jwa.RS256()} {
		f := newFixture(b)
		s := newSigner(b, "bench", alg)
		f.is.publish(b, s)
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: f.is.srv.URL, Audience: audience, HTTPClient: f.is.srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		mint := func(i int) string {
			c := claims(f.is.srv.URL, time.Now())
			c["jti"] = strconv.Itoa(i)
			return s.sign(b, c)
		}
		if _, err := v.Verify(ctx, mint(-1)); err != nil {
			b.Fatal(err)
		}
		b.Run(alg.String()+"/uncached", func(b *testing.B) {
			toks := make([]string, b.N)
			for i := range toks {
				toks[i] = mint(i + b.N*1000)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(ctx, toks[i]); err != nil {
					b.Fatal(err)
				}
			}
			if alg == jwa.EdDSA() {
				perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(perOp/ed25519Baseline(toks[0], b.N), "x-raw-sig")
			}
		})
		b.Run(alg.String()+"/cached", func(b *testing.B) {
			tok := mint(-2)
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ed25519Baseline returns the ns per bare Ed25519 verification of tok's
// signing input, over n runs (outside the benchmark timer).
func ed25519Baseline(tok string, n int) float64 {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte(tok[:strings.LastIndexByte(tok, '.')])
	sig := ed25519.Sign(priv, msg)
	start := time.Now()
	for range n {
		if !ed25519.Verify(pub, msg, sig) {
			panic("bad baseline signature")
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// TestCachedTokenStillExpires: the verified-token cache never lets a token
// outlive its exp (plus leeway), and a cached principal cannot be changed by
// a caller.
func TestCachedTokenStillExpires(t *testing.T) {
	f := newFixture(t)
	c := claims(f.is.srv.URL, f.now)
	c["exp"] = f.now.Add(2 * time.Minute).Unix()
	tok := f.key.sign(t, c)
	ctx := context.Background()
	p, err := f.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p.Roles[0] = "tampered"
	p.Subject = "mallory"
	f.clock.Advance(time.Minute)
	again, err := f.v.Verify(ctx, tok)
	if err != nil || again.Subject != "alice" || again.Roles[0] != "admin" {
		t.Fatalf("cached verify: %+v, %v", again, err)
	}
	f.clock.Advance(time.Minute + 31*time.Second) // past exp + 30 s leeway
	if _, err := f.v.Verify(ctx, tok); !errors.Is(err, escrow.ErrUnauthenticated) {
		t.Fatalf("expired token accepted from the cache: %v", err)
	}
	// A token with a bad signature is never served from the cache, even if
	// its header and claims match a cached one.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	f.clock.Advance(-2 * time.Minute)
	if _, err := f.v.Verify(ctx, forged); !errors.Is(err, escrow.ErrUnauthenticated) {
		t.Fatalf("forged signature accepted: %v", err)
	}
}

// TestKeysRefreshedInBackground: after MaxKeyAge the key set is refetched
// without delaying the request that noticed, and a key the issuer withdrew
// is no longer trusted.
func TestKeysRefreshedInBackground(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.key.sign(t, claims(f.is.srv.URL, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: k1 is withdrawn, k2 published.
	k2 := newSigner(t, "k2", jwa.EdDSA())
	f.is.mu.Lock()
	f.is.pub = nil
	f.is.mu.Unlock()
	f.is.publish(t, k2)

	f.clock.Advance(auth.MaxKeyAge + time.Minute)
	// This request still uses the cached k1 and is not held up...
	if _, err := f.v.Verify(ctx, f.key.sign(t, claims(f.is.srv.URL, f.clock.Now()))); err != nil {
		t.Fatalf("verify during refresh: %v", err)
	}
	// ...while the refresh happens in the background.
	deadline := time.Now().Add(5 * time.Second)
	for f.is.jwksHits.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh after MaxKeyAge")
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		c := claims(f.is.srv.URL, f.clock.Now())
		c["jti"] = fmt.Sprint(i) // a new token each time: never a cache hit
		_, err := f.v.Verify(ctx, f.key.sign(t, c))
		if errors.Is(err, escrow.ErrUnauthenticated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("withdrawn key still trusted after refresh: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.v.Verify(ctx, k2.sign(t, claims(f.is.srv.URL, f.clock.Now()))); err != nil {
		t.Fatalf("new key after refresh: %v", err)
	}
	if n := f.is.jwksHits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
}
