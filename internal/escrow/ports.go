package escrow

import (
	"context"
	"time"
)

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
	// adds version v (v.Version == s.CurrentVersion, or, for a rotation's
	// pending version, v.Version == s.PendingVersion). Renames and moves keep
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

// RequestStore holds access requests and grants. Like Store, every write
// commits its audit record atomically with the change; rec must not be nil.
//
// Implementations: store/sqlite and store/dynamo; both pass
// store/storetest.
type RequestStore interface {
	// CreateRequest stores a new request (Revision 1). Returns ErrConflict
	// if the ID exists.
	CreateRequest(ctx context.Context, r *Request, rec *AuditRecord) error

	// UpdateRequest replaces r where the stored revision equals
	// prevRevision (r.Revision must be prevRevision+1) and, if g is not
	// nil, creates grant g (Revision 1) in the same transaction. Returns
	// ErrNotFound if r.ID does not exist and ErrConflict if the revision
	// moved on or the grant exists.
	UpdateRequest(ctx context.Context, r *Request, prevRevision int64, g *Grant, rec *AuditRecord) error

	// GetRequest returns one request. Returns ErrNotFound.
	GetRequest(ctx context.Context, id string) (*Request, error)

	// ListRequests returns requests matching q, newest first, by index.
	// Returns ErrInvalid for a malformed cursor.
	ListRequests(ctx context.Context, q RequestQuery) (RequestPage, error)

	// UpdateGrant replaces g where the stored revision equals
	// prevRevision (g.Revision must be prevRevision+1). Returns ErrNotFound
	// and ErrConflict as UpdateRequest.
	UpdateGrant(ctx context.Context, g *Grant, prevRevision int64, rec *AuditRecord) error

	// GetGrant returns one grant. Returns ErrNotFound.
	GetGrant(ctx context.Context, id string) (*Grant, error)

	// GrantsFor returns every grant of subject on secretID that has not
	// ended before since (by End), in one indexed read: the check on the
	// reveal path of a secret under approval.
	GrantsFor(ctx context.Context, secretID, subject string, since time.Time) ([]*Grant, error)

	// ListGrants returns grants matching q, newest first, by index.
	ListGrants(ctx context.Context, q GrantQuery) (GrantPage, error)
}

// RequestQuery selects requests. Exactly one of Requester, SecretID or
// Status is used as the index (in that order of preference); the others
// filter.
type RequestQuery struct {
	Requester string // subject
	SecretID  string
	Status    RequestStatus // e.g. pending, for "pending for me"
	Cursor    string
	Limit     int // default 100, capped at 1000
}

// RequestPage is one page of requests; Next is "" on the last page.
type RequestPage struct {
	Requests []*Request
	Next     string
}

// GrantQuery selects grants, newest first: by Subject, else by SecretID,
// else (Open) every grant whose status is not terminal, by a sparse index:
// the sweeper's query for grants to expire. Open also filters the others.
type GrantQuery struct {
	Subject  string
	SecretID string
	Open     bool
	Cursor   string
	Limit    int
}

// GrantPage is one page of grants; Next is "" on the last page.
type GrantPage struct {
	Grants []*Grant
	Next   string
}

// Person is someone a notification can reach.
type Person struct {
	Subject string `json:"sub"`
	Email   string `json:"email"`
	Name    string `json:"name,omitempty"`
}

// Directory resolves the principals a policy names ("user:x", "group:y")
// to the people behind them, for notifications. Unknown names resolve to
// nobody; it returns ErrUnavailable if it cannot be read.
type Directory interface {
	Members(ctx context.Context, principals []string) ([]Person, error)
}

// Workflow runs the access-request state machine (statemachines/
// access-request.asl.json): Step Functions in AWS, the embedded ASL runner
// in -dev.
//
// Implementations: workflow/sfn and workflow/local.
type Workflow interface {
	// StartRequest starts the execution of a request, named after it (a
	// second start of the same request is refused by the engine). Returns
	// ErrUnavailable if the engine cannot be reached.
	StartRequest(ctx context.Context, requestID string, pendingTimeout time.Duration) error

	// SendTaskSuccess answers a task token with output (marshalled as
	// JSON). Returns ErrNotFound for an unknown or finished token.
	SendTaskSuccess(ctx context.Context, token string, output any) error
}

// RequestWorkflowInput is the input of an access-request execution.
type RequestWorkflowInput struct {
	RequestID      string `json:"requestId"`
	PendingSeconds int64  `json:"pendingSeconds"`
}

// NewRequestWorkflowInput builds it; the wait is at least one second.
func NewRequestWorkflowInput(requestID string, pending time.Duration) RequestWorkflowInput {
	secs := int64(pending / time.Second)
	if pending%time.Second != 0 {
		secs++
	}
	return RequestWorkflowInput{RequestID: requestID, PendingSeconds: max(1, secs)}
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
