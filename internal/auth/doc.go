// Package auth turns bearer tokens into escrow principals: it verifies JWTs
// from an OIDC issuer (signature against the issuer's JWKS, issuer,
// audience, lifetime) and maps their claims to an escrow.Principal. RP is
// the relying-party side of a browser login (Authorization Code flow with
// PKCE). It also holds the development issuer that `escrow server -dev`
// mounts to mint tokens for demo users and sign them in.
//
// It must never accept an unsigned or symmetrically signed token, never
// fetch keys on the hot path of a request whose key it already knows, never
// let a flood of bad tokens hammer the issuer, and never put a token or an
// authorization code in an error. The RP must never follow a redirect with
// a code, and the dev issuer must never redirect to a redirect URI it has
// not validated. The dev issuer must never be wired outside -dev.
package auth
