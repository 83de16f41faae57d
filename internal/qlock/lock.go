package qlock

import (
	"crypto/aes"
	"crypto/cipher"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/xwing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// wrapInfoLabel opens the HPKE info of every wrap (domain separation from
// any other use of the same keys).
const wrapInfoLabel = "escrow/qlock/wrap"

// suite is HPKE Base mode with X-Wing, HKDF-SHA256 and AES-256-GCM.
var suite = hpke.NewSuite(hpke.KEM_XWING, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES256GCM)

// Recipient is a member a value is locked to: the subject it is filed under
// and that subject's public key.
type Recipient struct {
	Subject string
	Key     PublicKey
}

// Lock encrypts plaintext for the recipients, bound to (secretID, version):
// AES-256-GCM under a fresh data key, with the header (labels, binding and
// recipient table) as associated data, and the data key wrapped to each
// recipient by HPKE. rand (nil means crypto/rand.Reader) gives the data key,
// the nonce, then each recipient's encapsulation randomness in order.
//
// To share with or revoke a member, Open and Lock again to the new member
// list under a new version: the data key is fresh, so a revoked member's old
// data key opens nothing new.
//
// It returns an error wrapping ErrInvalidPublicKey if any recipient's key is
// not a valid X-Wing QuantumLock key (a classical or truncated key is never
// used), and other errors for an empty or duplicate subject, no recipients,
// or an unusable secret id or version (see qlockfmt.CheckBinding).
func Lock(rand io.Reader, secretID string, version int, plaintext []byte, recipients []Recipient) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	if err := qlockfmt.CheckBinding(secretID, version); err != nil {
		return nil, fmt.Errorf("lock value: %w", err)
	}
	if len(recipients) == 0 || len(recipients) > qlockfmt.MaxRecipients {
		return nil, fmt.Errorf("lock value: %d recipients, want 1 to %d", len(recipients), qlockfmt.MaxRecipients)
	}
	// Check every recipient before using any randomness or key.
	keys := make([]kem.PublicKey, len(recipients))
	seen := make(map[string]struct{}, len(recipients))
	for i, r := range recipients {
		if err := qlockfmt.CheckName(r.Subject); err != nil {
			return nil, fmt.Errorf("lock value: recipient subject: %w", err)
		}
		if _, dup := seen[r.Subject]; dup {
			return nil, fmt.Errorf("lock value: recipient %q listed twice", r.Subject)
		}
		seen[r.Subject] = struct{}{}
		pk, err := parsePublicKey(r.Key)
		if err != nil {
			return nil, fmt.Errorf("lock value: recipient %q: %w", r.Subject, err)
		}
		keys[i] = pk
	}

	dataKey := make([]byte, qlockfmt.DataKeySize)
	defer clear(dataKey)
	if _, err := io.ReadFull(rand, dataKey); err != nil {
		return nil, fmt.Errorf("lock value: read data key: %w", err)
	}
	var nonce [qlockfmt.ValueNonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("lock value: read nonce: %w", err)
	}
	wraps := make([]qlockfmt.Wrap, len(recipients))
	for i, r := range recipients {
		w := qlockfmt.Wrap{Subject: r.Subject, Fingerprint: qlockfmt.FingerprintOf(r.Key)}
		sender, err := suite.NewSender(keys[i], wrapInfo(secretID, version, r.Subject))
		if err != nil {
			return nil, fmt.Errorf("lock value: recipient %q: hpke sender: %w", r.Subject, err)
		}
		enc, sealer, err := sender.Setup(rand)
		if err != nil {
			return nil, fmt.Errorf("lock value: recipient %q: hpke setup: %w", r.Subject, err)
		}
		wk, err := sealer.Seal(dataKey, w.Fingerprint[:])
		if err != nil {
			return nil, fmt.Errorf("lock value: recipient %q: wrap data key: %w", r.Subject, err)
		}
		w.Enc, w.WrappedKey = enc, wk
		wraps[i] = w
	}
	header, err := qlockfmt.AppendLockedValueHeader(nil, secretID, version, wraps)
	if err != nil {
		return nil, fmt.Errorf("lock value: %w", err)
	}
	aead, err := valueAEAD(dataKey)
	if err != nil {
		return nil, fmt.Errorf("lock value: %w", err)
	}
	out := make([]byte, len(header), len(header)+len(nonce)+len(plaintext)+qlockfmt.TagSize)
	copy(out, header)
	out = append(out, nonce[:]...)
	return aead.Seal(out, nonce[:], plaintext, header), nil
}

// Open decrypts a locked value as subject with key, checking that it is
// bound to (secretID, version). It returns
//   - ErrMalformed (wrapped) if the blob's framing is bad;
//   - ErrTampered (wrapped) if the blob names another secret id or version,
//     or any AEAD fails (a modified wrap, header, nonce or ciphertext);
//   - ErrNotRecipient (wrapped) if subject has no wrap, or its wrap is for
//     another key (a fingerprint mismatch: say, locked before a re-key).
func Open(blob []byte, secretID string, version int, subject string, key *PrivateKey) ([]byte, error) {
	if key == nil || key.sk == nil {
		return nil, errors.New("open value: no private key")
	}
	v, err := qlockfmt.ParseLockedValue(blob)
	if err != nil {
		return nil, fmt.Errorf("open value: %w", err)
	}
	if v.SecretID != secretID || v.Version != version {
		return nil, fmt.Errorf("open value: bound to another secret or version: %w", ErrTampered)
	}
	w := v.Find(subject)
	if w == nil {
		return nil, fmt.Errorf("open value: subject %q: %w", subject, ErrNotRecipient)
	}
	if w.Fingerprint != key.fp {
		return nil, fmt.Errorf("open value: subject %q locked to key %s, not %s: %w",
			subject, qlockfmt.FormatFingerprint(w.Fingerprint), qlockfmt.FormatFingerprint(key.fp), ErrNotRecipient)
	}
	receiver, err := suite.NewReceiver(key.sk, wrapInfo(secretID, version, subject))
	if err != nil {
		return nil, fmt.Errorf("open value: hpke receiver: %w", err)
	}
	opener, err := receiver.Setup(w.Enc)
	if err != nil {
		return nil, fmt.Errorf("open value: unwrap data key: %w", ErrTampered)
	}
	dataKey, err := opener.Open(w.WrappedKey, w.Fingerprint[:])
	if err != nil {
		return nil, fmt.Errorf("open value: unwrap data key: %w", ErrTampered)
	}
	defer clear(dataKey)
	if len(dataKey) != qlockfmt.DataKeySize {
		return nil, fmt.Errorf("open value: unwrap data key: %w", ErrTampered)
	}
	aead, err := valueAEAD(dataKey)
	if err != nil {
		return nil, fmt.Errorf("open value: %w", err)
	}
	plaintext, err := aead.Open(nil, v.Nonce, v.Ciphertext, v.Header)
	if err != nil {
		return nil, fmt.Errorf("open value: decrypt: %w", ErrTampered)
	}
	return plaintext, nil
}

// parsePublicKey refuses anything but a full X-Wing key under the
// QuantumLock label: length, label and version, then the ML-KEM-768
// encapsulation-key check (FIPS 203 modulus check).
func parsePublicKey(pub PublicKey) (kem.PublicKey, error) {
	if err := qlockfmt.CheckPublicKey(pub); err != nil {
		return nil, err
	}
	pk, err := xwing.Scheme().UnmarshalBinaryPublicKey(pub[qlockfmt.LabelSize+1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	return pk, nil
}

// wrapInfo is the HPKE info of a wrap: label, format version, then the
// length-prefixed secret id, the version and the length-prefixed subject, so
// a wrap opens only for the binding and member it was made for.
func wrapInfo(secretID string, version int, subject string) []byte {
	b := make([]byte, 0, len(wrapInfoLabel)+1+2+len(secretID)+4+2+len(subject))
	b = append(b, wrapInfoLabel...)
	b = append(b, qlockfmt.Version1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(secretID)))
	b = append(b, secretID...)
	b = binary.BigEndian.AppendUint32(b, uint32(version))
	b = binary.BigEndian.AppendUint16(b, uint16(len(subject)))
	return append(b, subject...)
}

func valueAEAD(dataKey []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, fmt.Errorf("new AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new GCM: %w", err)
	}
	return aead, nil
}
