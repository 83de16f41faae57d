package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// RPConfig configures an RP.
type RPConfig struct {
	// Issuer is the identity provider, exactly as its tokens name it;
	// discovery is fetched from Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID is this application's client at the issuer.
	ClientID string
	// ClientSecret is optional: a confidential client sends it with HTTP
	// Basic (client_secret_basic); a public client leaves it empty.
	ClientSecret string
	// RedirectURL is where the issuer sends the browser back, e.g.
	// https://escrow.example.com/auth/callback.
	RedirectURL string
	// Scopes are asked for besides "openid"; nil means profile and email.
	Scopes []string
	// Verifier checks the ID token's signature, issuer, audience and
	// lifetime; its issuer must be Issuer and its audience ClientID. Its
	// clock and leeway also judge auth_time.
	Verifier *Verifier
	// HTTPClient fetches discovery and calls the token endpoint; nil means a
	// client with a 10 s timeout. Redirects are never followed on the token
	// call, whatever the client says, so the code goes nowhere else.
	HTTPClient *http.Client
}

// RP is an OpenID Connect relying party using the Authorization Code flow
// with PKCE (S256). It is safe for concurrent use.
type RP struct {
	issuer, clientID, clientSecret string
	redirectURL                    string
	scope                          string
	verifier                       *Verifier
	client                         *http.Client // discovery
	tokenClient                    *http.Client // the token call: no redirects

	mu   sync.Mutex
	meta *rpMetadata // nil until discovery succeeds
}

type rpMetadata struct {
	authorizationEndpoint *url.URL
	tokenEndpoint         string
}

// BeginOptions tune a login.
type BeginOptions struct {
	// MaxAge, if positive, asks for an authentication at most this old
	// (max_age, in whole seconds): a step-up. Pass the same value to
	// FinishMaxAge, which enforces it. Zero asks nothing.
	MaxAge time.Duration
	// ForceLogin asks the issuer to authenticate the user again even if it
	// has a session (prompt=login).
	ForceLogin bool
	// LoginHint suggests who signs in (login_hint); optional.
	LoginHint string
}

// Login is a login in progress. Keep State, Nonce, CodeVerifier and MaxAge
// on the server side of the browser (e.g. in an encrypted, HttpOnly
// cookie); send the browser to URL.
type Login struct {
	State, Nonce, CodeVerifier, URL string
	// MaxAge is BeginOptions.MaxAge, for FinishMaxAge.
	MaxAge time.Duration
}

// Bounds on what Finish accepts from the browser and the issuer.
const (
	maxCodeBytes      = 4 << 10
	maxLoginHintBytes = 256
)

// NewRP checks cfg and returns an RP. It makes no network call: discovery
// is fetched on first use.
func NewRP(cfg RPConfig) (*RP, error) {
	switch {
	case cfg.Issuer == "" || cfg.ClientID == "":
		return nil, errors.New("auth: relying party needs an issuer and a client id")
	case cfg.Verifier == nil:
		return nil, errors.New("auth: relying party needs a verifier")
	case cfg.Verifier.issuer != cfg.Issuer:
		return nil, fmt.Errorf("auth: verifier checks issuer %q, relying party uses %q", cfg.Verifier.issuer, cfg.Issuer)
	case cfg.Verifier.audience != cfg.ClientID:
		return nil, fmt.Errorf("auth: verifier checks audience %q, but ID tokens are for client %q", cfg.Verifier.audience, cfg.ClientID)
	}
	if u, err := url.Parse(cfg.RedirectURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return nil, fmt.Errorf("auth: redirect URL %q is not an absolute http(s) URL without a fragment", cfg.RedirectURL)
	}
	scopes := cfg.Scopes
	if scopes == nil {
		scopes = []string{"profile", "email"}
	}
	scopes = slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return s == "openid" })
	rp := &RP{
		issuer:       cfg.Issuer,
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		redirectURL:  cfg.RedirectURL,
		scope:        strings.Join(append([]string{"openid"}, scopes...), " "),
		verifier:     cfg.Verifier,
		client:       cfg.HTTPClient,
	}
	if rp.client == nil {
		rp.client = &http.Client{Timeout: fetchTimeout}
	}
	tc := *rp.client
	tc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	rp.tokenClient = &tc
	return rp, nil
}

// Begin starts a login: a fresh random state, nonce and PKCE verifier (32
// random bytes each, base64url) and the authorization URL carrying them.
// It returns escrow.ErrUnavailable if the issuer's discovery document
// cannot be fetched, escrow.ErrInvalid for bad options, and
// escrow.ErrInternal if the issuer's configuration is unusable.
func (rp *RP) Begin(ctx context.Context, opt BeginOptions) (*Login, error) {
	if opt.MaxAge < 0 {
		return nil, escrow.Errorf(escrow.CodeInvalid, "max age must not be negative")
	}
	if len(opt.LoginHint) > maxLoginHintBytes {
		return nil, escrow.Errorf(escrow.CodeInvalid, "login hint too long")
	}
	meta, err := rp.metadata(ctx)
	if err != nil {
		return nil, err
	}
	l := &Login{State: randomToken(), Nonce: randomToken(), CodeVerifier: randomToken(), MaxAge: opt.MaxAge}
	u := *meta.authorizationEndpoint
	q := u.Query() // keep any parameters the endpoint came with
	q.Set("response_type", "code")
	q.Set("client_id", rp.clientID)
	q.Set("redirect_uri", rp.redirectURL)
	q.Set("scope", rp.scope)
	q.Set("state", l.State)
	q.Set("nonce", l.Nonce)
	q.Set("code_challenge", pkceChallenge(l.CodeVerifier))
	q.Set("code_challenge_method", "S256")
	if opt.MaxAge > 0 {
		q.Set("max_age", strconv.FormatInt(int64(opt.MaxAge/time.Second), 10))
	}
	if opt.ForceLogin {
		q.Set("prompt", "login")
	}
	if opt.LoginHint != "" {
		q.Set("login_hint", opt.LoginHint)
	}
	u.RawQuery = q.Encode()
	l.URL = u.String()
	return l, nil
}

// Finish completes a login without a max age: see FinishMaxAge.
func (rp *RP) Finish(ctx context.Context, code, codeVerifier, nonce string) (*escrow.Principal, time.Time, error) {
	return rp.FinishMaxAge(ctx, code, codeVerifier, nonce, 0)
}

// FinishMaxAge exchanges code (from the callback, after the caller checked
// its state) at the token endpoint with the login's PKCE verifier, verifies
// the ID token with the Verifier, checks that its nonce is the login's and,
// if maxAge is positive, that it says the user authenticated at most maxAge
// ago (give the login's MaxAge). It returns the principal and when the user
// authenticated (auth_time, else iat).
//
// Errors wrap escrow.ErrUnauthenticated with a message safe to show (the
// code was refused, the token is invalid, the nonce differs, the sign-in is
// too old), or escrow.ErrUnavailable if the issuer cannot be reached or
// fails. No message carries a code or a token.
func (rp *RP) FinishMaxAge(ctx context.Context, code, codeVerifier, nonce string, maxAge time.Duration) (*escrow.Principal, time.Time, error) {
	switch {
	case code == "":
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "missing authorization code")
	case len(code) > maxCodeBytes:
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "authorization code too long")
	case codeVerifier == "" || nonce == "":
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "no sign-in in progress")
	}
	meta, err := rp.metadata(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	idToken, err := rp.exchange(ctx, meta.tokenEndpoint, code, codeVerifier)
	if err != nil {
		return nil, time.Time{}, err
	}
	p, claims, err := rp.verifier.VerifyID(ctx, idToken)
	if err != nil {
		return nil, time.Time{}, err
	}
	if claims.Nonce == "" || subtle.ConstantTimeCompare([]byte(claims.Nonce), []byte(nonce)) != 1 {
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "ID token is not for this sign-in (nonce mismatch)")
	}
	// OIDC Core §3.1.3.7: a token for several audiences must name us as
	// the party it was issued to, and any azp must be us.
	if (len(claims.Audience) > 1 && claims.AuthorizedParty == "") ||
		(claims.AuthorizedParty != "" && claims.AuthorizedParty != rp.clientID) {
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "ID token was issued to another client")
	}
	authTime := claims.AuthTime
	if authTime.IsZero() {
		authTime = claims.IssuedAt
	}
	now := rp.verifier.clock.Now()
	leeway := rp.verifier.leeway
	if !authTime.IsZero() && authTime.After(now.Add(leeway)) {
		return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "ID token says the sign-in happened in the future")
	}
	if maxAge > 0 {
		if claims.AuthTime.IsZero() {
			return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "identity provider did not say when you signed in; sign in again")
		}
		if now.Sub(claims.AuthTime) > maxAge+leeway {
			return nil, time.Time{}, escrow.Errorf(escrow.CodeUnauthenticated, "sign-in is too old for this action; sign in again")
		}
	}
	return p, authTime, nil
}

// metadata returns the issuer's endpoints, fetching them on first use. A
// failure is not remembered: the next call tries again.
func (rp *RP) metadata(ctx context.Context) (*rpMetadata, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.meta != nil {
		return rp.meta, nil
	}
	m, err := rp.discover(ctx)
	if err != nil {
		return nil, err
	}
	rp.meta = m
	return m, nil
}

func (rp *RP) discover(ctx context.Context) (*rpMetadata, error) {
	u := strings.TrimSuffix(rp.issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, err, "identity provider misconfigured")
	}
	req.Header.Set("Accept", "application/json")
	status, body, err := rp.do(rp.client, req)
	if err != nil {
		return nil, unavailable(fmt.Errorf("fetch openid configuration: %w", err))
	}
	if status != http.StatusOK {
		return nil, badStatus("fetch openid configuration", status)
	}
	var doc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	}
	misconfigured := func(err error) error {
		return escrow.Wrap(escrow.CodeInternal, err, "identity provider misconfigured")
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, misconfigured(fmt.Errorf("parse openid configuration: %w", err))
	}
	if doc.Issuer != rp.issuer {
		return nil, misconfigured(fmt.Errorf("openid configuration names issuer %q, want %q", doc.Issuer, rp.issuer))
	}
	// Never downgrade: an issuer that lists its PKCE methods must list S256.
	if doc.CodeChallengeMethods != nil && !slices.Contains(doc.CodeChallengeMethods, "S256") {
		return nil, misconfigured(errors.New("issuer does not support PKCE with S256"))
	}
	authz, err := rp.endpoint(doc.AuthorizationEndpoint)
	if err != nil {
		return nil, misconfigured(fmt.Errorf("authorization_endpoint: %w", err))
	}
	tok, err := rp.endpoint(doc.TokenEndpoint)
	if err != nil {
		return nil, misconfigured(fmt.Errorf("token_endpoint: %w", err))
	}
	return &rpMetadata{authorizationEndpoint: authz, tokenEndpoint: tok.String()}, nil
}

// endpoint checks an endpoint URL: absolute, and https unless the issuer
// itself is plain http (a development issuer).
func (rp *RP) endpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !strings.HasPrefix(rp.issuer, "http://")) {
		return nil, fmt.Errorf("%q is not https", raw)
	}
	return u, nil
}

// exchange redeems code at the token endpoint and returns the ID token.
func (rp *RP) exchange(ctx context.Context, endpoint, code, verifier string) (string, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {rp.redirectURL},
		"client_id":     {rp.clientID},
		"code_verifier": {verifier},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", escrow.Wrap(escrow.CodeInternal, err, "identity provider misconfigured")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if rp.clientSecret != "" {
		// RFC 6749 §2.3.1: both halves are form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(rp.clientID), url.QueryEscape(rp.clientSecret))
	}
	status, body, err := rp.do(rp.tokenClient, req)
	if err != nil {
		return "", unavailable(fmt.Errorf("token request: %w", err))
	}
	switch {
	case status == http.StatusOK:
	case status == http.StatusBadRequest || status == http.StatusUnauthorized:
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		// The issuer's words go to the log only; the user sees a fixed
		// message naming a standard error code.
		cause := fmt.Errorf("token endpoint: status %d, error %q: %.200q", status, e.Error, e.Description)
		return "", escrow.Wrap(escrow.CodeUnauthenticated, cause, refusal(e.Error))
	default:
		return "", badStatus("token request", status)
	}
	var tr struct {
		IDToken   string `json:"id_token"`
		TokenType string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", escrow.Wrap(escrow.CodeUnauthenticated, fmt.Errorf("parse token response: %w", err), "identity provider sent an unreadable token response")
	}
	if tr.IDToken == "" {
		return "", escrow.Errorf(escrow.CodeUnauthenticated, "identity provider sent no ID token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", escrow.Wrap(escrow.CodeUnauthenticated, fmt.Errorf("token_type %.40q", tr.TokenType), "identity provider sent an unexpected token type")
	}
	return tr.IDToken, nil
}

// refusal is the user-facing message for a token endpoint's error code.
func refusal(code string) string {
	switch code {
	case "invalid_grant":
		return "sign-in code was refused (invalid_grant): it expired, was already used or belongs to another sign-in; sign in again"
	case "invalid_client", "unauthorized_client":
		return "identity provider refused this application (" + code + ")"
	case "invalid_request", "unsupported_grant_type", "invalid_scope":
		return "identity provider refused the sign-in request (" + code + ")"
	}
	return "identity provider refused the sign-in"
}

// badStatus classifies an unexpected HTTP status: a 5xx (or anything else
// odd) means the issuer is unavailable; a 4xx other than the token
// endpoint's documented errors means it is misconfigured.
func badStatus(what string, status int) error {
	err := fmt.Errorf("%s: status %d", what, status)
	if status >= 400 && status < 500 {
		return escrow.Wrap(escrow.CodeInternal, err, "identity provider misconfigured")
	}
	return unavailable(err)
}

// do sends req and reads at most maxFetchBytes of the answer.
func (rp *RP) do(c *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	if len(body) > maxFetchBytes {
		return 0, nil, fmt.Errorf("response larger than %d bytes", maxFetchBytes)
	}
	return resp.StatusCode, body, nil
}
