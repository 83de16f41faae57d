package dynamo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.TicketSystemStore = (*Store)(nil)

// Ticket system configurations live in the main table, each kept whole as
// JSON in body. The byKind index (kpk = kind, ksk = name) lists one kind of
// configuration item in name order; the default ticket system is a
// settings singleton.
const (
	ticketSysPrefix   = "TICKETSYS#"
	kindTicketSys     = "TICKETSYS" // kpk of every ticket system
	ticketDefaultPK   = "SETTING#ticket-default"
	idxByKind         = "byKind" // kpk = kind, ksk = name
	settingValueAttr  = "value"
	ticketSysListPage = 100
)

func ticketSysPK(name string) string { return ticketSysPrefix + name }

// PutTicketSystem puts c conditional on its key being new (prevRevision 0)
// or on the stored revision, with rec, in one transaction. A missing system
// and a stale revision are both ErrConflict, as the port says. See
// escrow.TicketSystemStore.
func (st *Store) PutTicketSystem(ctx context.Context, c *escrow.TicketSystemConfig, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case c == nil || c.Name == "":
		return escrow.Errorf(escrow.CodeInvalid, "a ticket system needs a name")
	case c.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode ticket system: %w", err)
	}
	it := item{
		"pk":       s(ticketSysPK(c.Name)),
		"sk":       s(metaSK),
		"body":     s(string(b)),
		"revision": n(c.Revision),
		"kpk":      s(kindTicketSys),
		"ksk":      s(c.Name),
	}
	var x txn
	if prevRevision == 0 {
		x.put(st.tables.Main, it, condNotExists, nil)
	} else {
		x.put(st.tables.Main, it, condRevision, item{":prev": n(prevRevision)})
	}
	st.audit(&x, rec)
	return st.commit(ctx, "put ticket system", &x, rec)
}

// GetTicketSystem is one strongly consistent GetItem. See
// escrow.TicketSystemStore.
func (st *Store) GetTicketSystem(ctx context.Context, name string) (*escrow.TicketSystemConfig, error) {
	it, err := st.getBody(ctx, ticketSysPK(name), "ticket system "+name)
	if err != nil {
		return nil, err
	}
	c := &escrow.TicketSystemConfig{}
	if err := decodeBody(it, "ticket system", c); err != nil {
		return nil, err
	}
	return c, nil
}

// ListTicketSystems queries byKind, which sorts by name. Like every index
// read it is eventually consistent: a system created a moment ago may be
// missing. See escrow.TicketSystemStore.
func (st *Store) ListTicketSystems(ctx context.Context) ([]*escrow.TicketSystemConfig, error) {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Main),
		IndexName:                 aws.String(idxByKind),
		KeyConditionExpression:    aws.String("#h = :h"),
		ExpressionAttributeNames:  map[string]string{"#h": "kpk"},
		ExpressionAttributeValues: item{":h": s(kindTicketSys)},
		Limit:                     aws.Int32(ticketSysListPage),
	}
	out := []*escrow.TicketSystemConfig{}
	for {
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return nil, convertError("list ticket systems", err)
		}
		for _, it := range resp.Items {
			c := &escrow.TicketSystemConfig{}
			if err := decodeBody(it, "ticket system", c); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if resp.LastEvaluatedKey == nil {
			return out, nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// SetDefaultTicketSystem puts (or, for "", deletes) the default's setting
// item with rec, in one transaction. It does not check that the system
// exists: that is the caller's rule to apply. See escrow.TicketSystemStore.
func (st *Store) SetDefaultTicketSystem(ctx context.Context, name string, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	var x txn
	if name == "" {
		x.del(st.tables.Main, key(ticketDefaultPK, metaSK), "", nil)
	} else {
		x.put(st.tables.Main, item{"pk": s(ticketDefaultPK), "sk": s(metaSK), settingValueAttr: s(name)}, "", nil)
	}
	st.audit(&x, rec)
	return st.commit(ctx, "set default ticket system", &x, rec)
}

// DefaultTicketSystem is one strongly consistent GetItem. See
// escrow.TicketSystemStore.
func (st *Store) DefaultTicketSystem(ctx context.Context) (string, error) {
	out, err := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.tables.Main),
		Key:            key(ticketDefaultPK, metaSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return "", convertError("get default ticket system", err)
	}
	if out.Item == nil {
		return "", nil
	}
	d := decoder{it: out.Item}
	name := d.str(settingValueAttr)
	if d.err != nil {
		return "", escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode default ticket system: %w", d.err), "corrupt record")
	}
	return name, nil
}
