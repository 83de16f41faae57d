// Package auth turns bearer tokens into escrow principals: it verifies JWTs
// from an OIDC issuer (signature against the issuer's JWKS, issuer,
// audience, lifetime) and maps their claims to an escrow.Principal. It also
// holds the development issuer that `escrow server -dev` mounts to mint
// tokens for demo users.
//
// It must never accept an unsigned or symmetrically signed token, never
// fetch keys on the hot path of a request whose key it already knows, never
// let a flood of bad tokens hammer the issuer, and never put a token in an
// error. The dev issuer must never be wired outside -dev.
package auth
