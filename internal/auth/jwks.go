package auth

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// fetch loads the issuer's key set, discovering its URL first if needed.
// v.mu is held.
func (v *Verifier) fetch(ctx context.Context) (*keySet, error) {
	if v.jwksURL == "" {
		u, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		v.jwksURL = u
	}
	body, err := v.get(ctx, v.jwksURL)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	ks := &keySet{byKid: make(map[string]*verifyKey, set.Len())}
	var usable []*verifyKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		vk, ok := usableKey(k)
		if !ok {
			continue
		}
		usable = append(usable, vk)
		if kid, _ := k.KeyID(); kid != "" {
			ks.byKid[kid] = vk
		}
	}
	if len(usable) == 0 {
		return nil, errors.New("jwks has no usable signing keys")
	}
	if len(usable) == 1 {
		ks.only = usable[0]
	}
	return ks, nil
}

// usableKey converts a JWK to a verification key, skipping symmetric keys,
// keys meant for encryption, weak RSA keys and types we cannot use.
func usableKey(k jwk.Key) (*verifyKey, bool) {
	if k.KeyType() == jwa.OctetSeq() {
		return nil, false
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil, false
	}
	pub, err := jwk.PublicKeyOf(k) // a JWKS should not hold private keys; never use them if it does
	if err != nil {
		return nil, false
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return nil, false
	}
	if r, ok := raw.(*rsa.PublicKey); ok && r.N.BitLen() < 2048 {
		return nil, false
	}
	vk := &verifyKey{raw: raw}
	if alg, ok := k.Algorithm(); ok {
		vk.alg = alg.String()
	}
	kid, _ := k.KeyID()
	vk.desc = fmt.Sprintf("%s kid=%q", k.KeyType(), kid)
	if vk.alg != "" {
		if _, ok := allowedAlgs[vk.alg]; !ok {
			return nil, false
		}
	}
	return vk, true
}

// discover reads jwks_uri from the issuer's OpenID configuration, checking
// that the document speaks for this issuer (OpenID Connect Discovery 4.3).
func (v *Verifier) discover(ctx context.Context) (string, error) {
	body, err := v.get(ctx, strings.TrimSuffix(v.issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", fmt.Errorf("fetch openid configuration: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("parse openid configuration: %w", err)
	}
	if doc.Issuer != v.issuer {
		return "", fmt.Errorf("openid configuration names issuer %q, want %q", doc.Issuer, v.issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("openid configuration has no usable jwks_uri (%q)", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func (v *Verifier) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxFetchBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, maxFetchBytes)
	}
	return body, nil
}
