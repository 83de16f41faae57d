package dynamo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.QLockKeyStore = (*Store)(nil)

// A user's QuantumLock key is one item in the main table (pk
// QLOCKKEY#<subject>, sk KEY), kept whole as JSON in body beside its
// revision, which every write is conditional on. Keys are only ever read
// by subject, so no index is needed. An item is a few KB: far under
// DynamoDB's 400 KB.
const (
	qlockKeyPrefix = "QLOCKKEY#"
	qlockKeySK     = "KEY"
)

func qlockKeyPK(subject string) string { return qlockKeyPrefix + subject }

func qlockKeyItem(k *escrow.QLockKey) (item, error) {
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("encode qlock key: %w", err)
	}
	return item{
		"pk":       s(qlockKeyPK(k.Subject)),
		"sk":       s(qlockKeySK),
		"subject":  s(k.Subject),
		"revision": n(k.Revision),
		"body":     s(string(b)),
	}, nil
}

// PutQLockKey puts k conditional on its key being new (prevRevision 0) or
// on the stored revision, with rec, in one transaction: of racing writers
// with the same prevRevision DynamoDB lets exactly one through, and a
// loser's audit record is cancelled with its write. See
// escrow.QLockKeyStore.
func (st *Store) PutQLockKey(ctx context.Context, k *escrow.QLockKey, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case k == nil || k.Subject == "":
		return escrow.Errorf(escrow.CodeInvalid, "a QuantumLock key needs a subject")
	case prevRevision < 0 || k.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	it, err := qlockKeyItem(k)
	if err != nil {
		return err
	}
	var x txn
	if prevRevision == 0 {
		x.put(st.tables.Main, it, condNotExists, nil)
	} else {
		x.put(st.tables.Main, it, condRevision, item{":prev": n(prevRevision)})
	}
	st.audit(&x, rec)
	return st.commit(ctx, "put qlock key", &x, rec)
}

// GetQLockKeys reads the keys in strongly consistent BatchGetItem calls of
// at most 100 subjects: one round trip for up to 100 distinct subjects.
// See escrow.QLockKeyStore.
func (st *Store) GetQLockKeys(ctx context.Context, subjects []string) ([]*escrow.QLockKey, error) {
	seen := make(map[string]bool, len(subjects))
	keys := make([]item, 0, len(subjects))
	for _, sub := range subjects {
		if !seen[sub] { // BatchGetItem refuses a key named twice
			seen[sub] = true
			keys = append(keys, key(qlockKeyPK(sub), qlockKeySK))
		}
	}
	out := make([]*escrow.QLockKey, 0, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), maxBatchGet)]
		keys = keys[len(chunk):]
		items, err := st.batchGet(ctx, "get qlock keys", chunk)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			k := &escrow.QLockKey{}
			if err := decodeBody(it, "qlock key", k); err != nil {
				return nil, err
			}
			out = append(out, k)
		}
	}
	return out, nil
}
