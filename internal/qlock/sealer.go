package qlock

import (
	"crypto/rand"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Sealer locks values to members' public keys on the server side: what a
// rotation of a QuantumLocked secret needs. It only encrypts; nothing on
// the server can open what it makes. Wire it only where rotations run (the
// rotate function, the -dev server), so the api function does not link
// the KEM.
type Sealer struct{}

var _ escrow.QLockSealer = Sealer{}

// Seal locks plaintext for (secretID, version) to each key's subject.
func (Sealer) Seal(secretID string, version int, plaintext []byte, keys []*escrow.QLockKey) ([]byte, error) {
	rs := make([]Recipient, len(keys))
	for i, k := range keys {
		rs[i] = Recipient{Subject: k.Subject, Key: PublicKey(k.PublicKey)}
	}
	return Lock(rand.Reader, secretID, version, plaintext, rs)
}
