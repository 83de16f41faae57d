package escrow

import "context"

// Store holds secrets, their versions and folders. Every write takes the
// audit record of the action and commits it atomically with the change (in
// the audit log's append-only table), so a change never lands unaudited and
// an audit record never describes a change that did not happen. rec must not
// be nil.
//
// Implementations: store/sqlite (embedded) and store/dynamo. Both pass
// store/storetest.
type Store interface {
	// CreateSecret stores s and its first version v (v.Version == 1 ==
	// s.CurrentVersion, s.Revision == 1). Returns ErrConflict if the ID
	// exists, or if a secret with the same folder and name exists (deleted
	// or not).
	CreateSecret(ctx context.Context, s *Secret, v *SecretVersion, rec *AuditRecord) error

	// UpdateSecret replaces s's metadata where the stored revision equals
	// prevRevision (s.Revision must be prevRevision+1), and, if v is not nil,
	// adds version v (v.Version == s.CurrentVersion). Renames and moves keep
	// the folder+name unique. Returns ErrNotFound if s.ID does not exist and
	// ErrConflict if the revision moved on, the version exists, or the new
	// folder+name is taken.
	UpdateSecret(ctx context.Context, s *Secret, prevRevision int64, v *SecretVersion, rec *AuditRecord) error

	// GetSecret returns the secret with id, deleted or not. Returns
	// ErrNotFound.
	GetSecret(ctx context.Context, id string) (*Secret, error)

	// GetSecretByPath returns the secret named name in folder. Returns
	// ErrNotFound.
	GetSecretByPath(ctx context.Context, folder, name string) (*Secret, error)

	// GetVersion returns one version with its ciphertext. Returns
	// ErrNotFound.
	GetVersion(ctx context.Context, id string, version int) (*SecretVersion, error)

	// GetVersionAndFolders returns one version with its ciphertext together
	// with the folders that exist among paths, in one round trip where the
	// backend allows: it is the second and last read of a reveal, after
	// GetSecret (DESIGN 8). Returns ErrNotFound if the version does not
	// exist.
	GetVersionAndFolders(ctx context.Context, id string, version int, paths []string) (*SecretVersion, []Folder, error)

	// ListVersions returns every version of a secret, oldest first, with
	// ciphertexts omitted. Returns an empty list for an unknown id.
	ListVersions(ctx context.Context, id string) ([]*SecretVersion, error)

	// ListSecrets returns a page of secrets matching q, ordered by path.
	// Returns ErrInvalid for a malformed cursor.
	ListSecrets(ctx context.Context, q SecretQuery) (SecretPage, error)

	// GetFolders returns the folders that exist among paths (in any order);
	// missing paths are not an error.
	GetFolders(ctx context.Context, paths []string) ([]Folder, error)

	// PutFolder creates f (prevRevision 0) or replaces it where the stored
	// revision equals prevRevision; f.Revision must be prevRevision+1.
	// Returns ErrConflict otherwise.
	PutFolder(ctx context.Context, f *Folder, prevRevision int64, rec *AuditRecord) error

	// ListACLGrants returns every ACL entry, on secrets and folders, naming
	// one of principals ("user:x", "group:y"), by index. Entries on
	// soft-deleted secrets are included; callers filter.
	ListACLGrants(ctx context.Context, principals []string) ([]ACLGrant, error)
}

// AuditLog is the append-only audit trail. Nothing can update or delete a
// record through it, or through the tables behind it.
type AuditLog interface {
	// Append durably writes rec. Returns ErrConflict if rec.ID exists and
	// ErrUnavailable if the log cannot be written; callers fail the action
	// ("fail closed").
	Append(ctx context.Context, rec *AuditRecord) error

	// QueryAudit returns a page of records matching q, newest first, by
	// index (never a scan). Returns ErrInvalid for a malformed cursor.
	QueryAudit(ctx context.Context, q AuditQuery) (AuditPage, error)
}

// DataKey is a fresh data key, in plaintext (to use once and forget) and
// wrapped (to store).
type DataKey struct {
	Plaintext []byte
	Wrapped   []byte
	KeyID     string
}

// Keys wraps and unwraps 256-bit data keys under a master key. The
// encryption context is bound to the wrapped key: unwrapping with any other
// context fails.
//
// Implementations: keys/kms (AWS KMS) and keys/local (a master key file).
type Keys interface {
	// GenerateDataKey returns a fresh 256-bit data key bound to encCtx.
	// Returns ErrUnavailable if the key service cannot be reached.
	GenerateDataKey(ctx context.Context, encCtx map[string]string) (DataKey, error)

	// Decrypt unwraps a data key. Returns an error with CodeInternal if the
	// wrapped key or context do not match (tampering or a moved ciphertext)
	// and ErrUnavailable if the key service cannot be reached.
	Decrypt(ctx context.Context, wrapped []byte, encCtx map[string]string) ([]byte, error)
}
