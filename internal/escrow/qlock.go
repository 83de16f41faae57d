package escrow

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// QLockField is the value field that holds a QuantumLocked secret's blob
// (internal/qlock's locked-value format, base64). The fields it locks are
// inside it; the secret's other fields stay readable by the server (the
// account's username, host, port... that a rotation needs to reach it).
const QLockField = "qlock"

// QLock marks a secret as QuantumLocked: its locked fields are encrypted,
// in the client, to each member's QuantumLock public key. The server
// stores and returns the blob but can never open it.
type QLock struct {
	// Members are the subjects the current version is locked to.
	Members []string `json:"members"`
	// Fields are the value fields inside the blob.
	Fields   []string  `json:"fields"`
	LockedAt time.Time `json:"lockedAt"`
	LockedBy string    `json:"lockedBy"`
}

// IsMember reports whether subject can open the secret's current version.
func (q *QLock) IsMember(subject string) bool {
	return q != nil && slices.Contains(q.Members, subject)
}

// QLockKey is a user's QuantumLock key: the public key anyone may lock to,
// and the private key sealed under the user's QuantumLock password, which
// the server keeps for the user's other devices and can never open.
type QLockKey struct {
	Subject     string    `json:"subject"`
	PublicKey   []byte    `json:"publicKey"`
	Sealed      []byte    `json:"sealed,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	Revision    int64     `json:"revision"`
}

// QLockKeyStore holds users' QuantumLock keys. Every write commits its
// audit record atomically with the change; rec must not be nil.
//
// Implementations: store/sqlite and store/dynamo; both pass
// store/storetest.
type QLockKeyStore interface {
	// PutQLockKey writes k where the stored revision equals prevRevision
	// (0: the user has no key yet); k.Revision must be prevRevision+1.
	// Returns ErrConflict otherwise.
	PutQLockKey(ctx context.Context, k *QLockKey, prevRevision int64, rec *AuditRecord) error

	// GetQLockKeys returns the keys of the subjects that have one, in any
	// order, in one round trip where the backend allows; subjects without
	// a key are left out, not an error.
	GetQLockKeys(ctx context.Context, subjects []string) ([]*QLockKey, error)
}

// QLockSealer locks a value to members' public keys: what a rotation of a
// QuantumLocked secret needs (it holds the new password only in memory,
// and stores only what the members can open).
//
// Implementation: qlock (linked only into the rotate function and the
// -dev server).
type QLockSealer interface {
	// Seal returns the locked-value blob of plaintext for (secretID,
	// version), wrapped to each key.
	Seal(secretID string, version int, plaintext []byte, keys []*QLockKey) ([]byte, error)
}

// EncodeLocked is the plaintext inside a QuantumLock blob: the JSON object
// of the locked fields. The CLI and a rotation encode it the same way.
func EncodeLocked(fields SecretValue) ([]byte, error) {
	return json.Marshal(map[string]string(fields))
}

// DecodeLocked reads what EncodeLocked wrote.
func DecodeLocked(b []byte) (SecretValue, error) {
	var v map[string]string
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, Errorf(CodeInvalid, "the locked value is not a JSON object of fields")
	}
	return SecretValue(v), nil
}
