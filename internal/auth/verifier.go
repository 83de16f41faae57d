package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the exact "iss" tokens must carry; Audience a value their
	// "aud" must contain. Both are required.
	Issuer, Audience string
	// JWKSURL is where the issuer's keys are; if empty, it is discovered
	// from Issuer + "/.well-known/openid-configuration".
	JWKSURL string
	// HTTPClient fetches discovery and keys; nil means a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Clock tells the time for token lifetimes and fetch throttling; nil
	// means the system clock.
	Clock escrow.Clock
	// Leeway is the clock skew tolerated on exp, nbf and iat; 0 means 30 s.
	Leeway time.Duration
	// GroupsClaim and RolesClaim name the top-level claims read into
	// Principal.Groups and Roles; empty means "groups" and "roles".
	GroupsClaim, RolesClaim string
}

// How often the issuer may be asked for keys.
const (
	// RefetchInterval is the least time between two JWKS fetches once a key
	// set has loaded: a token naming an unknown kid (a rotated key, or an
	// attacker's) triggers at most one fetch per interval.
	RefetchInterval = 30 * time.Second
	// RetryInterval is the least time between attempts while no key set has
	// loaded yet (the issuer was down at start).
	RetryInterval = time.Second
	// MaxKeyAge is how long a fetched key set is used before it is
	// refreshed in the background (the request that notices is not
	// delayed), so a key the issuer withdraws stops being trusted.
	MaxKeyAge = time.Hour

	fetchTimeout  = 10 * time.Second
	maxTokenBytes = 16 << 10
	maxFetchBytes = 1 << 20
)

// Verifier verifies bearer JWTs. It is safe for concurrent use.
type Verifier struct {
	issuer, audience        string
	client                  *http.Client
	clock                   escrow.Clock
	leeway                  time.Duration
	groupsClaim, rolesClaim string
	jwtClock                jwt.Clock

	// keys is read without locking on every request.
	keys atomic.Pointer[keySet]
	// refreshAt (unix nanoseconds) is when the key set is next refreshed in
	// the background; refreshing guards against two refreshes at once.
	refreshAt  atomic.Int64
	refreshing atomic.Bool

	// verified caches principals of tokens that passed every check, so a
	// client reusing its token costs a hash, not a signature check and a
	// claims parse. Entries are checked against the clock on every hit.
	cacheMu sync.RWMutex
	cache   map[[32]byte]cachedToken

	// mu serialises fetches and guards the fields below it; it is held for
	// the duration of a fetch so that concurrent misses make one request.
	mu          sync.Mutex
	jwksURL     string // configured or discovered
	lastAttempt time.Time
	lastErr     error // of the last attempt; nil if it succeeded
}

// NewVerifier checks cfg and returns a Verifier. It makes no network call:
// keys are fetched on first use.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: verifier needs an issuer and an audience")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: leeway must not be negative")
	}
	v := &Verifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		client:      cfg.HTTPClient,
		clock:       cfg.Clock,
		leeway:      cfg.Leeway,
		groupsClaim: cfg.GroupsClaim,
		rolesClaim:  cfg.RolesClaim,
		jwksURL:     cfg.JWKSURL,
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: fetchTimeout}
	}
	if v.clock == nil {
		v.clock = escrow.SystemClock{}
	}
	if v.leeway == 0 {
		v.leeway = 30 * time.Second
	}
	if v.groupsClaim == "" {
		v.groupsClaim = "groups"
	}
	if v.rolesClaim == "" {
		v.rolesClaim = "roles"
	}
	v.jwtClock = jwt.ClockFunc(v.clock.Now)
	return v, nil
}

// allowedAlgs are the only algorithms accepted: asymmetric signatures.
// "none" and HS* are absent on purpose, so a token can never choose to be
// unsigned or to be checked against a public key used as an HMAC secret.
var allowedAlgs = func() map[string]jwa.SignatureAlgorithm {
	m := make(map[string]jwa.SignatureAlgorithm)
	for _, name := range []string{"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok || alg.IsSymmetric() {
			panic("auth: signature algorithm " + name + " is missing or symmetric")
		}
		m[name] = alg
	}
	return m
}()

func unauthenticated(cause error, msg string) error {
	return escrow.Wrap(escrow.CodeUnauthenticated, cause, msg)
}

// Verify checks token and returns the principal it names. Errors wrap
// escrow.ErrUnauthenticated with a message safe to show ("token expired",
// "wrong audience", ...), or escrow.ErrUnavailable when the issuer's keys
// cannot be fetched.
func (v *Verifier) Verify(ctx context.Context, token string) (*escrow.Principal, error) {
	p, _, err := v.verify(ctx, token)
	return p, err
}

// IDClaims are the claims of a verified token that an OpenID Connect
// relying party checks beyond those Verify checks.
type IDClaims struct {
	Nonce string
	// AuthTime is when the user authenticated ("auth_time"); zero if the
	// token does not say.
	AuthTime time.Time
	// IssuedAt is "iat"; zero if absent.
	IssuedAt time.Time
	// Audience is "aud"; AuthorizedParty is "azp", empty if absent.
	Audience        []string
	AuthorizedParty string
}

// VerifyID checks token exactly as Verify does and also returns the claims
// an ID token carries for its relying party. It returns the same errors as
// Verify.
func (v *Verifier) VerifyID(ctx context.Context, token string) (*escrow.Principal, IDClaims, error) {
	return v.verify(ctx, token)
}

// verify is the one verification path of Verify and VerifyID.
func (v *Verifier) verify(ctx context.Context, token string) (*escrow.Principal, IDClaims, error) {
	if token == "" {
		return nil, IDClaims{}, unauthenticated(nil, "missing token")
	}
	if len(token) > maxTokenBytes {
		return nil, IDClaims{}, unauthenticated(nil, "token too large")
	}
	hdr, err := parseHeader(token)
	if err != nil {
		return nil, IDClaims{}, unauthenticated(err, "malformed token")
	}
	sum := sha256.Sum256([]byte(token))
	now := v.clock.Now()
	v.cacheMu.RLock()
	c, hit := v.cache[sum]
	v.cacheMu.RUnlock()
	if hit && now.Before(c.notAfter) && !now.Before(c.notBefore) {
		return clonePrincipal(c.principal), c.claims.clone(), nil
	}
	alg, ok := allowedAlgs[hdr.Alg]
	if !ok {
		return nil, IDClaims{}, unauthenticated(fmt.Errorf("alg %q", hdr.Alg), "unsupported token algorithm")
	}
	key, err := v.key(ctx, hdr.Kid)
	if err != nil {
		return nil, IDClaims{}, err
	}
	if !key.allows(hdr.Alg) {
		return nil, IDClaims{}, unauthenticated(fmt.Errorf("alg %q, key %s", hdr.Alg, key.desc), "token algorithm does not match its key")
	}
	tok, err := jwt.ParseString(token,
		jwt.WithKey(alg, key.raw),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithClock(v.jwtClock),
	)
	if err != nil {
		return nil, IDClaims{}, unauthenticated(err, reason(err))
	}
	sub, _ := tok.Subject()
	if sub == "" {
		return nil, IDClaims{}, unauthenticated(nil, "token has no subject")
	}
	p := &escrow.Principal{
		Subject: sub,
		Email:   stringClaim(tok, "email"),
		Name:    stringClaim(tok, "name"),
		Groups:  stringsClaim(tok, v.groupsClaim),
		Roles:   stringsClaim(tok, v.rolesClaim),
	}
	claims := IDClaims{
		Nonce:           stringClaim(tok, "nonce"),
		AuthTime:        timeClaim(tok, "auth_time"),
		AuthorizedParty: stringClaim(tok, "azp"),
	}
	claims.IssuedAt, _ = tok.IssuedAt()
	claims.Audience, _ = tok.Audience()
	v.remember(sum, tok, p, claims, now)
	return clonePrincipal(p), claims.clone(), nil
}

func (c IDClaims) clone() IDClaims {
	c.Audience = slices.Clone(c.Audience)
	return c
}

// clonePrincipal gives each caller its own copy of a cached principal.
func clonePrincipal(p *escrow.Principal) *escrow.Principal {
	out := *p
	out.Groups = slices.Clone(p.Groups)
	out.Roles = slices.Clone(p.Roles)
	return &out
}

// Bounds of the verified-token cache.
const (
	cacheEntries = 10000
	// cacheTTL bounds how long a verified token skips the signature check,
	// so a key the issuer withdraws stops working within it (plus refetch).
	cacheTTL = 5 * time.Minute
)

type cachedToken struct {
	principal           *escrow.Principal
	claims              IDClaims
	notBefore, notAfter time.Time
}

// remember caches a verified token until the earliest of its expiry (with
// the same leeway the full check allows) and now+cacheTTL.
func (v *Verifier) remember(sum [32]byte, tok jwt.Token, p *escrow.Principal, claims IDClaims, now time.Time) {
	exp, ok := tok.Expiration()
	if !ok {
		return
	}
	c := cachedToken{principal: p, claims: claims, notAfter: exp.Add(v.leeway)}
	if limit := now.Add(cacheTTL); limit.Before(c.notAfter) {
		c.notAfter = limit
	}
	if nbf, ok := tok.NotBefore(); ok {
		c.notBefore = nbf.Add(-v.leeway)
	}
	v.cacheMu.Lock()
	if v.cache == nil || len(v.cache) >= cacheEntries {
		v.cache = make(map[[32]byte]cachedToken) // crude but bounded: start over
	}
	v.cache[sum] = c
	v.cacheMu.Unlock()
}

// reason turns a jwt parse or validation error into a client-safe message.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "token expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "token not yet valid"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "token issued in the future"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "wrong audience"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "wrong issuer"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "token has no expiry"
	case errors.Is(err, jws.VerifyError()):
		return "invalid token signature"
	}
	return "invalid token"
}

type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// parseHeader reads alg and kid from a compact JWS, before any key is
// chosen, so that a bad algorithm is refused without touching the network.
// The signature check later re-reads the header and insists on the same alg.
func parseHeader(token string) (jwsHeader, error) {
	var h jwsHeader
	enc, rest, ok := strings.Cut(token, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return h, errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return h, fmt.Errorf("decode header: %w", err)
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("parse header: %w", err)
	}
	return h, nil
}

func stringClaim(tok jwt.Token, name string) string {
	var v any
	if tok.Get(name, &v) != nil {
		return ""
	}
	s, _ := v.(string)
	return s
}

// maxUnixSeconds is the end of year 9999, past which a date is nonsense.
const maxUnixSeconds = 253402300800

// timeClaim reads a NumericDate claim (seconds since the epoch); zero if
// it is absent or not a number.
func timeClaim(tok jwt.Token, name string) time.Time {
	var v any
	if tok.Get(name, &v) != nil {
		return time.Time{}
	}
	var sec float64
	switch v := v.(type) {
	case float64:
		sec = v
	case int64:
		sec = float64(v)
	case int:
		sec = float64(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}
		}
		sec = f
	default:
		return time.Time{}
	}
	if !(sec > 0 && sec < maxUnixSeconds) { // also true for NaN
		return time.Time{}
	}
	return time.Unix(int64(sec), 0).UTC()
}

// stringsClaim reads a claim that issuers send either as an array of
// strings or as one string. Non-string members are dropped: a malformed
// claim can only cost the caller privileges, never grant them.
func stringsClaim(tok jwt.Token, name string) []string {
	var v any
	if tok.Get(name, &v) != nil {
		return nil
	}
	switch v := v.(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// verifyKey is one usable public key from the issuer's JWKS.
type verifyKey struct {
	raw  any    // ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey
	alg  string // the JWK's "alg", if it names one
	desc string // for errors: key type and kid
}

// allows reports whether the key may verify a token signed with alg: the
// algorithm must suit the key's type (and curve), and the JWK's own "alg"
// if it has one.
func (k *verifyKey) allows(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch raw := k.raw.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA" || alg == "Ed25519"
	case *ecdsa.PublicKey:
		switch raw.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}

// keySet is an immutable snapshot of the issuer's usable keys.
type keySet struct {
	byKid map[string]*verifyKey
	only  *verifyKey // the single key, when there is exactly one
}

// find returns the key for kid. A token without a kid is accepted only
// when the set holds a single key, so the choice is never a guess.
func (s *keySet) find(kid string) *verifyKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		return s.only
	}
	return s.byKid[kid]
}

// key returns the key a token names, from the cached set when it is there
// (the hot path: one atomic load and a map lookup), else after a throttled
// refetch.
func (v *Verifier) key(ctx context.Context, kid string) (*verifyKey, error) {
	if k := v.keys.Load().find(kid); k != nil {
		if v.clock.Now().UnixNano() >= v.refreshAt.Load() {
			v.refreshInBackground()
		}
		return k, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ks := v.keys.Load()
	if k := ks.find(kid); k != nil {
		return k, nil // another caller refetched while we waited
	}
	if ks != nil && kid == "" {
		return nil, unauthenticated(nil, "token has no key id")
	}
	interval := RefetchInterval
	if ks == nil {
		interval = RetryInterval
	}
	now := v.clock.Now()
	if !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < interval {
		if v.lastErr != nil {
			return nil, unavailable(v.lastErr)
		}
		return nil, unauthenticated(fmt.Errorf("kid %q", kid), "unknown signing key")
	}
	v.lastAttempt = now
	// The fetch outlives a caller that gives up: its result serves everyone.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	fresh, err := v.fetch(fctx)
	v.lastErr = err
	if err != nil {
		return nil, unavailable(err)
	}
	v.keys.Store(fresh)
	v.refreshAt.Store(now.Add(MaxKeyAge).UnixNano())
	if k := fresh.find(kid); k != nil {
		return k, nil
	}
	if kid == "" {
		return nil, unauthenticated(nil, "token has no key id")
	}
	return nil, unauthenticated(fmt.Errorf("kid %q", kid), "unknown signing key")
}

// refreshInBackground refetches the key set without holding up the caller.
// A failed refresh keeps the current keys and is retried after
// RefetchInterval; a successful one replaces them, dropping withdrawn keys.
func (v *Verifier) refreshInBackground() {
	if !v.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer v.refreshing.Store(false)
		v.mu.Lock()
		defer v.mu.Unlock()
		now := v.clock.Now()
		if now.UnixNano() < v.refreshAt.Load() {
			return // refreshed meanwhile
		}
		v.lastAttempt = now
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		fresh, err := v.fetch(ctx)
		if err != nil {
			v.refreshAt.Store(now.Add(RefetchInterval).UnixNano())
			return
		}
		v.lastErr = nil
		v.keys.Store(fresh)
		v.refreshAt.Store(now.Add(MaxKeyAge).UnixNano())
	}()
}

func unavailable(err error) error {
	return escrow.Wrap(escrow.CodeUnavailable, err, "identity provider unavailable")
}
