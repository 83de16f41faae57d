package qlockfmt

import (
	"encoding/binary"
	"fmt"
)

// Wrap is one recipient's entry in a locked value: the data key, encrypted
// to the key with this fingerprint by HPKE. Parsed slices alias the blob.
type Wrap struct {
	Subject     string
	Fingerprint [FingerprintSize]byte
	Enc         []byte // XWingCiphertextSize bytes: HPKE encapsulated key
	WrappedKey  []byte // WrappedKeySize bytes: HPKE ciphertext of the data key
}

// LockedValue is a parsed locked value. Its slices alias the blob.
type LockedValue struct {
	SecretID   string
	Version    int
	Wraps      []Wrap
	Header     []byte // everything before Nonce: the AEAD's associated data
	Nonce      []byte // ValueNonceSize bytes
	Ciphertext []byte // AES-256-GCM ciphertext and tag (at least TagSize bytes)
}

// Find returns the wrap for subject, or nil if there is none.
func (v *LockedValue) Find(subject string) *Wrap {
	for i := range v.Wraps {
		if v.Wraps[i].Subject == subject {
			return &v.Wraps[i]
		}
	}
	return nil
}

// ParseLockedValue splits a locked value into its fields. It returns an error
// wrapping ErrMalformed if the blob is not one well-formed version-1 locked
// value: bad label or version, a name that is empty, too long or not UTF-8,
// a version out of range, no recipients or too many, a subject listed twice,
// or a length that does not add up.
func ParseLockedValue(blob []byte) (*LockedValue, error) {
	r := &reader{b: blob}
	if err := r.header(LockedValueLabel); err != nil {
		return nil, err
	}
	var v LockedValue
	v.SecretID = string(r.take(int(r.u16())))
	version := r.u32()
	count := int(r.u16())
	if r.bad {
		return nil, malformed("truncated locked value header")
	}
	if err := CheckName(v.SecretID); err != nil {
		return nil, malformed("secret id: %v", err)
	}
	if int64(version) > MaxVersion {
		return nil, malformed("secret version %d", version)
	}
	v.Version = int(version)
	if err := CheckVersion(v.Version); err != nil {
		return nil, malformed("%v", err)
	}
	// Each entry takes more than minWrap bytes, so the count is bounded by
	// the blob in hand before anything is allocated for it.
	const minWrap = 2 + 1 + FingerprintSize + XWingCiphertextSize + WrappedKeySize
	if count < 1 || count > MaxRecipients || count > (len(blob)-r.off)/minWrap {
		return nil, malformed("recipient count %d", count)
	}
	v.Wraps = make([]Wrap, count)
	seen := make(map[string]struct{}, count)
	for i := range v.Wraps {
		w := &v.Wraps[i]
		w.Subject = string(r.take(int(r.u16())))
		fp := r.take(FingerprintSize)
		w.Enc = r.take(XWingCiphertextSize)
		w.WrappedKey = r.take(WrappedKeySize)
		if r.bad {
			return nil, malformed("truncated recipient %d", i)
		}
		copy(w.Fingerprint[:], fp)
		if err := CheckName(w.Subject); err != nil {
			return nil, malformed("recipient %d subject: %v", i, err)
		}
		if _, dup := seen[w.Subject]; dup {
			return nil, malformed("recipient %q listed twice", w.Subject)
		}
		seen[w.Subject] = struct{}{}
	}
	v.Header = blob[:r.off:r.off]
	v.Nonce = r.take(ValueNonceSize)
	v.Ciphertext = r.rest()
	if r.bad || len(v.Ciphertext) < TagSize {
		return nil, malformed("truncated ciphertext")
	}
	return &v, nil
}

// AppendLockedValueHeader appends the header of a locked value (label,
// version, secret id and version, recipient table) to dst. The caller then
// appends the nonce and the ciphertext, computed with the header as
// associated data. It refuses what ParseLockedValue would refuse.
func AppendLockedValueHeader(dst []byte, secretID string, version int, wraps []Wrap) ([]byte, error) {
	if err := CheckBinding(secretID, version); err != nil {
		return nil, err
	}
	if len(wraps) < 1 || len(wraps) > MaxRecipients {
		return nil, fmt.Errorf("%d recipients, want 1 to %d", len(wraps), MaxRecipients)
	}
	seen := make(map[string]struct{}, len(wraps))
	for _, w := range wraps {
		if err := CheckName(w.Subject); err != nil {
			return nil, fmt.Errorf("recipient subject: %w", err)
		}
		if _, dup := seen[w.Subject]; dup {
			return nil, fmt.Errorf("recipient %q listed twice", w.Subject)
		}
		seen[w.Subject] = struct{}{}
		if len(w.Enc) != XWingCiphertextSize || len(w.WrappedKey) != WrappedKeySize {
			return nil, fmt.Errorf("recipient %q: enc %d and wrapped key %d bytes, want %d and %d", w.Subject, len(w.Enc), len(w.WrappedKey), XWingCiphertextSize, WrappedKeySize)
		}
	}
	dst = append(dst, LockedValueLabel...)
	dst = append(dst, Version1)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(secretID)))
	dst = append(dst, secretID...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(version))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(wraps)))
	for _, w := range wraps {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(w.Subject)))
		dst = append(dst, w.Subject...)
		dst = append(dst, w.Fingerprint[:]...)
		dst = append(dst, w.Enc...)
		dst = append(dst, w.WrappedKey...)
	}
	return dst, nil
}

// CheckBinding returns an error unless (secretID, version) can name a locked
// value: see CheckName and CheckVersion.
func CheckBinding(secretID string, version int) error {
	if err := CheckName(secretID); err != nil {
		return fmt.Errorf("secret id: %w", err)
	}
	return CheckVersion(version)
}

// RecipientInfo is what anyone can learn about a recipient of a locked
// value: its subject and the fingerprint (as FormatFingerprint writes it) of
// the key the data key was wrapped to.
type RecipientInfo struct {
	Subject     string
	Fingerprint string
}

// Recipients returns the recipients of a locked value in blob order, and the
// secret id and version it is bound to, after checking its framing (errors
// as ParseLockedValue). It cannot check the wraps or the ciphertext: only a
// recipient can, by opening it.
func Recipients(blob []byte) (recipients []RecipientInfo, secretID string, version int, err error) {
	v, err := ParseLockedValue(blob)
	if err != nil {
		return nil, "", 0, err
	}
	recipients = make([]RecipientInfo, len(v.Wraps))
	for i, w := range v.Wraps {
		recipients[i] = RecipientInfo{Subject: w.Subject, Fingerprint: FormatFingerprint(w.Fingerprint)}
	}
	return recipients, v.SecretID, v.Version, nil
}
