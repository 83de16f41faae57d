package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

const (
	// signLabel prefixes the canonical digest in the message both
	// algorithms sign, so no other Escrow signature can pass for a digest's.
	signLabel = "escrow/audit/digest/v1\n"
	// keyIDLabel prefixes the public keys a key id is hashed from.
	keyIDLabel = "escrow/audit/key/v1\n"
	// The HKDF-SHA256 info strings that derive each algorithm's seed from
	// the signer seed, so the two keys are independent.
	ed25519Info = "escrow/audit/signer/v1 ed25519"
	mldsa65Info = "escrow/audit/signer/v1 ml-dsa-65"
)

// PublicKeys are a signer's two public keys. A digest verifies only against
// both: there is no classical-only or post-quantum-only mode to fall back
// to, and a PublicKeys missing either key verifies nothing.
type PublicKeys struct {
	Ed25519 ed25519.PublicKey
	MLDSA65 *mldsa65.PublicKey
}

// complete reports whether both keys are present and well-sized.
func (k PublicKeys) complete() bool {
	return len(k.Ed25519) == ed25519.PublicKeySize && k.MLDSA65 != nil
}

// KeyID names the key pair: the first 16 bytes of SHA-256(keyIDLabel ‖
// Ed25519 public key ‖ ML-DSA-65 public key), as 32 lowercase hex digits.
// It is derived from both keys, so it cannot name one pair and hold
// another. It returns "" for incomplete keys.
func (k PublicKeys) KeyID() string {
	if !k.complete() {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(keyIDLabel))
	h.Write(k.Ed25519)
	h.Write(k.MLDSA65.Bytes())
	return hex.EncodeToString(h.Sum(nil)[:keyIDLen/2])
}

// wireKeys is the JSON form of PublicKeys.
type wireKeys struct {
	KeyID   string `json:"keyId"`
	Ed25519 []byte `json:"ed25519"`
	MLDSA65 []byte `json:"mldsa65"`
}

// Marshal returns the JSON form of k, {"keyId":…,"ed25519":…,"mldsa65":…}
// with both keys in standard base64, one line ending in a newline. It is
// what a verifier is given. It returns ErrMalformed for incomplete keys.
func (k PublicKeys) Marshal() ([]byte, error) {
	if !k.complete() {
		return nil, fmt.Errorf("%w: incomplete public keys", ErrMalformed)
	}
	b, err := json.Marshal(wireKeys{KeyID: k.KeyID(), Ed25519: k.Ed25519, MLDSA65: k.MLDSA65.Bytes()})
	if err != nil {
		return nil, fmt.Errorf("encode public keys: %w", err)
	}
	return append(b, '\n'), nil
}

// ParsePublicKeys parses what PublicKeys.Marshal writes, as strictly as
// ParseSignedDigest parses a digest, and checks that keyId is the id of the
// keys. It returns ErrMalformed, wrapped with the reason.
func ParsePublicKeys(b []byte) (PublicKeys, error) {
	var w wireKeys
	if err := json.Unmarshal(b, &w); err != nil {
		return PublicKeys{}, fmt.Errorf("%w: public keys: %v", ErrMalformed, err)
	}
	if len(w.Ed25519) != ed25519.PublicKeySize || len(w.MLDSA65) != mldsa65.PublicKeySize {
		return PublicKeys{}, fmt.Errorf("%w: public key of the wrong size", ErrMalformed)
	}
	var ml mldsa65.PublicKey
	runtime.LockOSThread()
	err := ml.UnmarshalBinary(w.MLDSA65) // expands the key with circl's AVX2 code
	clearUpperYMM()
	runtime.UnlockOSThread()
	if err != nil {
		return PublicKeys{}, fmt.Errorf("%w: ML-DSA-65 public key: %v", ErrMalformed, err)
	}
	k := PublicKeys{Ed25519: ed25519.PublicKey(w.Ed25519), MLDSA65: &ml}
	again, err := k.Marshal()
	if err != nil {
		return PublicKeys{}, err
	}
	if !bytes.Equal(again, b) {
		return PublicKeys{}, fmt.Errorf("%w: public keys are not in canonical form or keyId does not match them", ErrMalformed)
	}
	return k, nil
}

// Signer holds both private keys and signs digests. It formats as its key
// id, so it cannot be printed or logged by accident. To keep a signer,
// store its 32-byte seed (for example under KMS, or in a 0600 file) and
// call NewSigner again.
type Signer struct {
	ed    ed25519.PrivateKey
	ml    *mldsa65.PrivateKey
	pub   PublicKeys
	keyID string
}

// NewSigner derives both key pairs from seed: Ed25519 from
// HKDF-SHA256(seed, info ed25519Info) and ML-DSA-65 from
// HKDF-SHA256(seed, info mldsa65Info), 32 bytes each, no salt. The same
// seed always gives the same keys.
func NewSigner(seed [32]byte) *Signer {
	edSeed, err := hkdf.Key(sha256.New, seed[:], nil, ed25519Info, ed25519.SeedSize)
	if err != nil {
		panic("auditlog: hkdf: " + err.Error()) // only for lengths out of range, which these are not
	}
	mlSeed, err := hkdf.Key(sha256.New, seed[:], nil, mldsa65Info, mldsa65.SeedSize)
	if err != nil {
		panic("auditlog: hkdf: " + err.Error())
	}
	defer clear(edSeed)
	defer clear(mlSeed)
	ed := ed25519.NewKeyFromSeed(edSeed)
	runtime.LockOSThread()
	mlPub, ml := mldsa65.NewKeyFromSeed((*[mldsa65.SeedSize]byte)(mlSeed))
	clearUpperYMM()
	runtime.UnlockOSThread()
	pub := PublicKeys{Ed25519: ed.Public().(ed25519.PublicKey), MLDSA65: mlPub}
	return &Signer{ed: ed, ml: ml, pub: pub, keyID: pub.KeyID()}
}

// GenerateSigner returns a signer from a seed read from rand (nil means
// crypto/rand.Reader). Its seed is not kept: use it where the key may die
// with the process (tests, a throwaway log), NewSigner everywhere else.
func GenerateSigner(rand io.Reader) (*Signer, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("read signer seed: %w", err)
	}
	defer clear(seed[:])
	return NewSigner(seed), nil
}

// PublicKeys returns the signer's public keys.
func (s *Signer) PublicKeys() PublicKeys { return s.pub }

// KeyID returns PublicKeys().KeyID().
func (s *Signer) KeyID() string { return s.keyID }

// String and GoString show only the key id.
func (s *Signer) String() string   { return "auditlog.Signer(" + s.keyID + ")" }
func (s *Signer) GoString() string { return s.String() }

// Sign signs d with both keys over signLabel ‖ d.Canonical(). ML-DSA-65 is
// used in its deterministic variant (FIPS 204), so a digest signs to the
// same bytes every time and the chain's hashes are reproducible. It returns
// ErrMalformed if d fails Check: a signer never signs an inconsistent
// digest.
func (s *Signer) Sign(d *Digest) (*SignedDigest, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil digest", ErrMalformed)
	}
	canon, err := d.check()
	if err != nil {
		return nil, fmt.Errorf("sign digest: %w", err)
	}
	return s.sign(d, canon)
}

// sign signs d, whose canonical encoding is canon, without checking it:
// for Seal and Sealer, which build consistent digests themselves and would
// otherwise compute every Merkle root twice.
func (s *Signer) sign(d *Digest, canon []byte) (*SignedDigest, error) {
	msg := signedMessage(canon)
	sd := &SignedDigest{
		Digest:     d.clone(),
		KeyID:      s.keyID,
		Ed25519Sig: ed25519.Sign(s.ed, msg),
		MLDSA65Sig: make([]byte, mldsa65.SignatureSize),
	}
	if err := mldsaSign(s.ml, msg, sd.MLDSA65Sig); err != nil {
		return nil, fmt.Errorf("sign digest %d with ML-DSA-65: %w", d.Seq, err)
	}
	return sd, nil
}

func signedMessage(canon []byte) []byte {
	msg := make([]byte, 0, len(signLabel)+len(canon))
	return append(append(msg, signLabel...), canon...)
}

// VerifyDigest checks sd against keys: sd is internally consistent
// (Digest.Check), its key id is keys.KeyID(), and both its Ed25519 and its
// ML-DSA-65 signature verify; one good signature never suffices. It returns
// ErrMalformed for an inconsistent or unencodable digest and ErrSignature
// (naming which signatures failed) for everything else, including
// incomplete keys.
func VerifyDigest(sd *SignedDigest, keys PublicKeys) error {
	_, err := verifyDigest(sd, keys, keys.KeyID())
	return err
}

// verifyDigest is VerifyDigest with the key id computed once by the caller;
// it returns the canonical bytes for the chain hash.
func verifyDigest(sd *SignedDigest, keys PublicKeys, keyID string) ([]byte, error) {
	if sd == nil {
		return nil, fmt.Errorf("%w: nil digest", ErrMalformed)
	}
	canon, err := sd.check()
	if err != nil {
		return nil, err
	}
	if err := sd.checkSignatureShape(); err != nil {
		return canon, err
	}
	if !keys.complete() {
		return canon, fmt.Errorf("%w: digest %d: verifying needs both an Ed25519 and an ML-DSA-65 public key", ErrSignature, sd.Seq)
	}
	if sd.KeyID != keyID {
		return canon, fmt.Errorf("%w: digest %d is signed by key %s, not %s", ErrSignature, sd.Seq, sd.KeyID, keyID)
	}
	msg := signedMessage(canon)
	edOK := ed25519.Verify(keys.Ed25519, msg, sd.Ed25519Sig)
	mlOK := mldsaVerify(keys.MLDSA65, msg, sd.MLDSA65Sig)
	switch {
	case !edOK && !mlOK:
		return canon, fmt.Errorf("%w: digest %d: Ed25519 and ML-DSA-65 signatures are invalid", ErrSignature, sd.Seq)
	case !edOK:
		return canon, fmt.Errorf("%w: digest %d: Ed25519 signature is invalid", ErrSignature, sd.Seq)
	case !mlOK:
		return canon, fmt.Errorf("%w: digest %d: ML-DSA-65 signature is invalid", ErrSignature, sd.Seq)
	}
	return canon, nil
}

// mldsaSign and mldsaVerify call circl with an empty context string
// (deterministic signing), then clear the AVX state circl leaves behind on
// the same OS thread (see simd_amd64.go).
func mldsaSign(sk *mldsa65.PrivateKey, msg, sig []byte) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer clearUpperYMM()
	return mldsa65.SignTo(sk, msg, nil, false, sig)
}

func mldsaVerify(pk *mldsa65.PublicKey, msg, sig []byte) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer clearUpperYMM()
	return mldsa65.Verify(pk, msg, nil, sig)
}
