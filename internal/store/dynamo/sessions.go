package dynamo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.SessionStore = (*Store)(nil)

// A web console session is one item in the main table (pk
// SESSION#<id hash>, sk SESSION), kept whole as JSON in body. A partition
// each: sessions are many, and only ever read by their hash, so no index
// is needed. ttlAttr, sessionGrace past Expires in Unix seconds, lets
// DynamoDB's TTL purge them (template.yaml's TimeToLiveSpecification,
// CreateTables); TTL deletes in its own time, days late at worst, which
// the port allows.
const (
	sessionPrefix = "SESSION#"
	sessionSK     = "SESSION"
	ttlAttr       = "ttl"

	// sessionGrace keeps a session a day past its Expires, as store/sqlite
	// does.
	sessionGrace = 24 * time.Hour
)

func sessionPK(idHash string) string { return sessionPrefix + idHash }

func sessionItem(sess *escrow.Session) (item, error) {
	b, err := json.Marshal(sess)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	return item{
		"pk":    s(sessionPK(sess.IDHash)),
		"sk":    s(sessionSK),
		"body":  s(string(b)),
		ttlAttr: n(sess.Expires.Add(sessionGrace).Unix()),
	}, nil
}

// CreateSession puts sess conditional on its key being new, with rec, in
// one transaction: a taken hash cancels both (ErrConflict). See
// escrow.SessionStore.
func (st *Store) CreateSession(ctx context.Context, sess *escrow.Session, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case sess == nil || sess.IDHash == "":
		return escrow.Errorf(escrow.CodeInvalid, "a session needs an id hash")
	case sess.Expires.IsZero():
		// Its TTL would be centuries past, which DynamoDB never purges.
		return escrow.Errorf(escrow.CodeInvalid, "a session needs an expiry")
	}
	it, err := sessionItem(sess)
	if err != nil {
		return err
	}
	var x txn
	x.put(st.tables.Main, it, condNotExists, nil)
	st.audit(&x, rec)
	return st.commit(ctx, "create session", &x, rec)
}

// GetSession is one strongly consistent GetItem: a session read right
// after its login or logout sees it. See escrow.SessionStore.
func (st *Store) GetSession(ctx context.Context, idHash string) (*escrow.Session, error) {
	if idHash == "" {
		// DynamoDB refuses an empty key; no session has that hash.
		return nil, fmt.Errorf("get session: %w", escrow.ErrNotFound)
	}
	// The hash stays out of errors: it names a user's live session.
	it, err := st.getItem(ctx, key(sessionPK(idHash), sessionSK), "session")
	if err != nil {
		return nil, err
	}
	sess := &escrow.Session{}
	if err := decodeBody(it, "session", sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// DeleteSession deletes the session conditional on its existing, with rec,
// in one transaction. The delete asks for the old item when its condition
// fails; it can fail only on a missing item, so nothingToDelete tells that
// (ErrNotFound) from a reused audit ID or a racing transaction
// (ErrConflict), as DeleteReportSchedule does. See escrow.SessionStore.
func (st *Store) DeleteSession(ctx context.Context, idHash string, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	if idHash == "" {
		return fmt.Errorf("delete session: %w", escrow.ErrNotFound)
	}
	var x txn
	x.del(st.tables.Main, key(sessionPK(idHash), sessionSK), condExists, nil)
	x.items[0].Delete.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	st.audit(&x, rec)
	err := st.commit(ctx, "delete session", &x, rec)
	if nothingToDelete(err, 0) {
		return fmt.Errorf("delete session: %w", escrow.ErrNotFound)
	}
	return err
}
