package escrow

import (
	"sort"
	"time"
	"unicode/utf8"
)

// SecretType says what a secret holds and which value fields it requires.
type SecretType string

// The secret types.
const (
	TypePassword SecretType = "password" // fields: password (required), username, host, port, database, url, notes
	TypeSSHKey   SecretType = "ssh_key"  // fields: private_key (required), public_key, passphrase, username, host
	TypeAPIKey   SecretType = "api_key"  // fields: key (required), key_id, url, notes
	TypeGeneric  SecretType = "generic"  // any fields, at least one
)

// requiredField is the field each type must carry.
var requiredField = map[SecretType]string{
	TypePassword: "password",
	TypeSSHKey:   "private_key",
	TypeAPIKey:   "key",
	TypeGeneric:  "",
}

// Limits on secret shapes.
const (
	MaxValueBytes  = 64 << 10
	MaxFields      = 64
	MaxTags        = 50
	MaxDescription = 1024
)

// Secret is a secret's metadata. Its value lives, encrypted, in versions.
type Secret struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Folder      string            `json:"folder"`
	Type        SecretType        `json:"type"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	ACL         []ACE             `json:"acl"`
	// Policy, if set, is the secret's own policy (else its folders' apply).
	Policy *Policy `json:"policy,omitempty"`
	// Rotation, if set, says how the password is changed on its target.
	Rotation *RotationConfig `json:"rotation,omitempty"`
	// QLock, if set, says the value is QuantumLocked and to whom.
	QLock          *QLock `json:"qlock,omitempty"`
	CurrentVersion int    `json:"currentVersion"`
	// PendingVersion, if not 0, is a rotation's new password: stored
	// before the target is changed, promoted to current once the target
	// takes it (AWSPENDING in Secrets Manager's terms). Reveals never
	// return it; only the rotation reads it.
	PendingVersion int `json:"pendingVersion,omitempty"`
	// Revision increases by one on every write; updates are conditional on it.
	Revision  int64      `json:"revision"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy"`
	UpdatedAt time.Time  `json:"updatedAt"`
	UpdatedBy string     `json:"updatedBy"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
}

// Path is the secret's full path: folder + "/" + name.
func (s *Secret) Path() string {
	if s.Folder == "/" {
		return "/" + s.Name
	}
	return s.Folder + "/" + s.Name
}

// Deleted reports whether the secret is soft-deleted.
func (s *Secret) Deleted() bool { return s.DeletedAt != nil }

// SecretVersion is one immutable, encrypted value of a secret. Ciphertext is
// the envelope package's format (a version byte, the nonce, then AES-256-GCM
// under a data key that only the Keys port can unwrap), bound to (SecretID,
// Version) both by the key's encryption context and by the AEAD's associated
// data.
type SecretVersion struct {
	SecretID   string    `json:"secretId"`
	Version    int       `json:"version"`
	CreatedAt  time.Time `json:"createdAt"`
	CreatedBy  string    `json:"createdBy"`
	KeyID      string    `json:"keyId"`
	WrappedKey []byte    `json:"-"`
	Ciphertext []byte    `json:"-"`
}

// SecretValue is a secret's plaintext: named fields. It never goes into a
// log, an audit record or an error.
type SecretValue map[string]string

// ValidateValue checks a value against its type's required field and the
// size limits.
func ValidateValue(t SecretType, v SecretValue) error {
	req, ok := requiredField[t]
	if !ok {
		return Errorf(CodeInvalid, "type %q must be one of password, ssh_key, api_key, generic", t)
	}
	if len(v) == 0 {
		return Errorf(CodeInvalid, "value must have at least one field")
	}
	if len(v) > MaxFields {
		return Errorf(CodeInvalid, "value has %d fields; at most %d", len(v), MaxFields)
	}
	if req != "" && v[req] == "" {
		return Errorf(CodeInvalid, "a %s secret needs a non-empty %q field", t, req)
	}
	size := 0
	for k, val := range v {
		if k == "" || len(k) > 64 {
			return Errorf(CodeInvalid, "field names must be 1 to 64 characters")
		}
		if !utf8.ValidString(val) {
			return Errorf(CodeInvalid, "field %q is not valid UTF-8", k)
		}
		size += len(k) + len(val)
	}
	if size > MaxValueBytes {
		return Errorf(CodeInvalid, "value is larger than %d bytes", MaxValueBytes)
	}
	return nil
}

// FieldNames returns the value's field names, sorted: safe to log or audit.
func (v SecretValue) FieldNames() []string {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// ValidateMeta checks a secret's name, folder, type, description and tags,
// and normalises the folder in place.
func (s *Secret) ValidateMeta() error {
	if err := validName(s.Name, "name"); err != nil {
		return err
	}
	f, err := CleanFolder(s.Folder)
	if err != nil {
		return err
	}
	s.Folder = f
	if _, ok := requiredField[s.Type]; !ok {
		return Errorf(CodeInvalid, "type %q must be one of password, ssh_key, api_key, generic", s.Type)
	}
	if len(s.Description) > MaxDescription {
		return Errorf(CodeInvalid, "description is longer than %d bytes", MaxDescription)
	}
	if len(s.Tags) > MaxTags {
		return Errorf(CodeInvalid, "at most %d tags", MaxTags)
	}
	for k, v := range s.Tags {
		if k == "" || len(k) > 64 || len(v) > 256 {
			return Errorf(CodeInvalid, "tag keys must be 1 to 64 characters and values at most 256")
		}
	}
	if err := s.Policy.Validate(); err != nil {
		return err
	}
	if err := s.Rotation.Validate(); err != nil {
		return err
	}
	return ValidateACL(s.ACL)
}

// SecretQuery selects secrets for listing, ordered by Path() (byte order).
type SecretQuery struct {
	// Folder restricts results to secrets directly in this folder; with
	// Recursive, to this folder and everything below it ("/" + Recursive is
	// everything). Must be clean (CleanFolder).
	Folder         string
	Recursive      bool
	IncludeDeleted bool
	// Cursor is the opaque Next of a previous page; Limit defaults to 100
	// and is capped at 1000.
	Cursor string
	Limit  int
}

// SecretPage is one page of secrets; Next is "" on the last page.
type SecretPage struct {
	Secrets []*Secret
	Next    string
}

// Clock tells the time. Tests pass a settable clock.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
