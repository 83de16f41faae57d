package dynamo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.CheckoutStore = (*Store)(nil)

// A secret's checkout slot is one item in the secret's own partition (pk
// SECRET#<id>, sk CHECKOUT), kept whole as JSON in body beside its
// revision, which every write is conditional on. While the slot is open
// the item also carries the key of the sparse openCheckouts index: copk =
// OPEN and cosk = its update time and secret ID. A Put of a released slot
// drops both, and with them the item from the index.
const (
	checkoutSK       = "CHECKOUT"
	openCheckout     = "OPEN"          // the one hash key of openCheckouts
	idxOpenCheckouts = "openCheckouts" // copk = OPEN while open, cosk = updated#secret id
)

func checkoutItem(c *escrow.Checkout) (item, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode checkout: %w", err)
	}
	it := item{
		"pk":       s(secretPK(c.SecretID)),
		"sk":       s(checkoutSK),
		"body":     s(string(b)),
		"revision": n(c.Revision),
		"secretId": s(c.SecretID),
	}
	putS(it, "status", string(c.Status))
	if c.Open() {
		it["copk"] = s(openCheckout)
		it["cosk"] = s(sortKey(c.UpdatedAt, c.SecretID))
	}
	return it, nil
}

func decodeCheckout(it item) (*escrow.Checkout, error) {
	c := &escrow.Checkout{}
	if err := decodeBody(it, "checkout", c); err != nil {
		return nil, err
	}
	return c, nil
}

// PutCheckout puts the slot conditional on its key being new (prevRevision
// 0) or on the stored revision, with rec, in one transaction: of racing
// writers with the same prevRevision DynamoDB lets exactly one through,
// and a loser's audit record is cancelled with its write. See
// escrow.CheckoutStore.
func (st *Store) PutCheckout(ctx context.Context, c *escrow.Checkout, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case c == nil || c.SecretID == "":
		return escrow.Errorf(escrow.CodeInvalid, "a checkout needs a secret id")
	case prevRevision < 0 || c.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	it, err := checkoutItem(c)
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
	return st.commit(ctx, "put checkout", &x, rec)
}

// GetCheckout is one strongly consistent GetItem. See escrow.CheckoutStore.
func (st *Store) GetCheckout(ctx context.Context, secretID string) (*escrow.Checkout, error) {
	it, err := st.getItem(ctx, key(secretPK(secretID), checkoutSK), "checkout of "+secretID)
	if err != nil {
		return nil, err
	}
	return decodeCheckout(it)
}

// ListOpenCheckouts queries openCheckouts forwards: oldest update first.
// Like every index read it is eventually consistent: a slot opened or
// released a moment ago may be missing or still listed, which the
// sweeper, reading each slot again before it acts, tolerates. See
// escrow.CheckoutStore.
func (st *Store) ListOpenCheckouts(ctx context.Context, cursor string, limit int) (escrow.CheckoutPage, error) {
	iq := &indexQuery{op: "list open checkouts", index: idxOpenCheckouts, hashAttr: "copk", hash: openCheckout,
		rangeAttr: "cosk", sk: checkoutSK, forward: true, pkPrefix: secretPrefix,
		names: map[string]string{}, values: item{}, cursor: cursor, limit: limit}
	page := escrow.CheckoutPage{Checkouts: []*escrow.Checkout{}}
	var err error
	page.Next, err = st.runIndexQuery(ctx, iq, func(it item) error {
		c, err := decodeCheckout(it)
		if err != nil {
			return err
		}
		page.Checkouts = append(page.Checkouts, c)
		return nil
	})
	if err != nil {
		return escrow.CheckoutPage{}, err
	}
	return page, nil
}
