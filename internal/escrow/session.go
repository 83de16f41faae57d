package escrow

import (
	"context"
	"time"
)

// Audit actions of the web console's sessions.
const (
	ActionSessionLogin  = "session.login"
	ActionSessionLogout = "session.logout"
)

// Session is a signed-in web console session. Its ID is a random value that
// only the browser's cookie holds; the store keys the session by IDHash, the
// hex SHA-256 of that value, so a copy of the table cannot be replayed as a
// cookie.
type Session struct {
	IDHash    string    `json:"idHash"`
	Principal Principal `json:"principal"`
	// AuthTime is when the user last authenticated at the identity
	// provider: the clock of step-up checks (approving needs a recent one).
	AuthTime time.Time `json:"authTime"`
	Created  time.Time `json:"created"`
	// Expires ends the session whatever the store still holds; callers
	// check it against their clock.
	Expires time.Time `json:"expires"`
}

// SessionStore holds web console sessions. Writes commit their audit record
// atomically with the change, as Store's do; rec must not be nil.
//
// Implementations: store/sqlite and store/dynamo; both pass store/storetest.
type SessionStore interface {
	// CreateSession stores s. Returns ErrConflict if s.IDHash exists.
	CreateSession(ctx context.Context, s *Session, rec *AuditRecord) error

	// GetSession returns the session keyed by idHash, even past its
	// Expires (the caller checks the clock; stores purge expired sessions
	// in their own time). Returns ErrNotFound.
	GetSession(ctx context.Context, idHash string) (*Session, error)

	// DeleteSession removes the session (logout, or replacement by a
	// fresh login). Returns ErrNotFound if there is none.
	DeleteSession(ctx context.Context, idHash string, rec *AuditRecord) error
}
