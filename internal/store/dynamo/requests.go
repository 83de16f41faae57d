package dynamo

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.RequestStore = (*Store)(nil)

// Requests and grants live in the main table, each kept whole as JSON in
// body, beside the attributes of their indexes. Every list index sorts by
// csk (created time, then ID), newest first when queried backwards. The
// sparse indexes (byStatus, openGrants) hold only what is not terminal:
// a Put of a terminal request or grant drops their key attribute, and with
// it the item from the index.
const (
	requestPrefix = "REQUEST#"
	grantPrefix   = "GRANT#"
	openGrant     = "OPEN"    // the one hash key of openGrants
	anyRequest    = "REQUEST" // the one hash key of allRequests

	idxByRequester     = "byRequester"     // rpk = requester subject, csk
	idxByRequestSecret = "byRequestSecret" // rspk = secret id, csk
	idxByStatus        = "byStatus"        // stpk = status while not terminal, csk
	idxAllRequests     = "allRequests"     // apk = REQUEST, csk
	idxByGrantee       = "byGrantee"       // gepk = secret id + subject, gesk = end#id
	idxByGrantSubject  = "byGrantSubject"  // gspk = subject, csk
	idxByGrantSecret   = "byGrantSecret"   // gxpk = secret id, csk
	idxOpenGrants      = "openGrants"      // opk = OPEN while not terminal, csk
)

// sortTime formats times so that they sort as strings: fixed width, UTC.
const sortTime = "2006-01-02T15:04:05.000000000Z"

func sortKey(t time.Time, id string) string { return t.UTC().Format(sortTime) + "#" + id }

// granteeKey names one subject on one secret. The length prefix keeps the
// pair unambiguous whatever either contains.
func granteeKey(secretID, subject string) string {
	return strconv.Itoa(len(secretID)) + "#" + secretID + "#" + subject
}

func requestPK(id string) string { return requestPrefix + id }
func grantPK(id string) string   { return grantPrefix + id }

func requestItem(r *escrow.Request) (item, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	it := item{
		"pk":       s(requestPK(r.ID)),
		"sk":       s(metaSK),
		"body":     s(string(b)),
		"revision": n(r.Revision),
		"status":   s(string(r.Status)),
		"csk":      s(sortKey(r.CreatedAt, r.ID)),
		"apk":      s(anyRequest),
	}
	putS(it, "requester", r.Requester.Subject)
	putS(it, "secretId", r.SecretID)
	putS(it, "rpk", r.Requester.Subject)
	putS(it, "rspk", r.SecretID)
	if !r.Status.Terminal() {
		putS(it, "stpk", string(r.Status))
	}
	return it, nil
}

func grantItem(g *escrow.Grant) (item, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode grant: %w", err)
	}
	it := item{
		"pk":       s(grantPK(g.ID)),
		"sk":       s(metaSK),
		"body":     s(string(b)),
		"revision": n(g.Revision),
		"status":   s(string(g.Status)),
		"csk":      s(sortKey(g.CreatedAt, g.ID)),
		"gepk":     s(granteeKey(g.SecretID, g.Subject)),
		"gesk":     s(sortKey(g.End, g.ID)),
	}
	putS(it, "subject", g.Subject)
	putS(it, "secretId", g.SecretID)
	putS(it, "gspk", g.Subject)
	putS(it, "gxpk", g.SecretID)
	if !g.Status.Terminal() {
		it["opk"] = s(openGrant)
	}
	return it, nil
}

// decodeBody reads the JSON body of a request or grant item into v.
func decodeBody(it item, what string, v any) error {
	d := decoder{it: it}
	raw := d.str("body")
	if d.err == nil && raw == "" {
		d.err = errors.New("no body")
	}
	if d.err == nil {
		d.err = json.Unmarshal([]byte(raw), v)
	}
	if d.err != nil {
		return escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode %s: %w", what, d.err), "corrupt record")
	}
	return nil
}

func decodeRequest(it item) (*escrow.Request, error) {
	r := &escrow.Request{}
	if err := decodeBody(it, "request", r); err != nil {
		return nil, err
	}
	return r, nil
}

func decodeGrantItem(it item) (*escrow.Grant, error) {
	g := &escrow.Grant{}
	if err := decodeBody(it, "grant", g); err != nil {
		return nil, err
	}
	return g, nil
}

// CreateRequest puts the request if its key is new, with rec, in one
// transaction. See escrow.RequestStore.
func (st *Store) CreateRequest(ctx context.Context, r *escrow.Request, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case r == nil || r.ID == "":
		return escrow.Errorf(escrow.CodeInvalid, "a new request needs an id")
	case r.Revision != 1:
		return escrow.Errorf(escrow.CodeInvalid, "a new request starts at revision 1")
	}
	it, err := requestItem(r)
	if err != nil {
		return err
	}
	var x txn
	x.put(st.tables.Main, it, condNotExists, nil)
	st.audit(&x, rec)
	return st.commit(ctx, "create request", &x, rec)
}

// UpdateRequest puts the request conditional on prevRevision and, with
// it, the new grant conditional on its key being new. Only when that
// fails does it read the request, to tell a missing one (ErrNotFound) from
// a conflict. See escrow.RequestStore.
func (st *Store) UpdateRequest(ctx context.Context, r *escrow.Request, prevRevision int64, g *escrow.Grant, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case r == nil || r.ID == "":
		return escrow.Errorf(escrow.CodeInvalid, "a request needs an id")
	case r.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	case g != nil && (g.ID == "" || g.Revision != 1):
		return escrow.Errorf(escrow.CodeInvalid, "a new grant needs an id and starts at revision 1")
	}
	it, err := requestItem(r)
	if err != nil {
		return err
	}
	var x txn
	x.put(st.tables.Main, it, condRevision, item{":prev": n(prevRevision)})
	if g != nil {
		git, err := grantItem(g)
		if err != nil {
			return err
		}
		x.put(st.tables.Main, git, condNotExists, nil)
	}
	st.audit(&x, rec)
	err = st.commit(ctx, "update request", &x, rec)
	return st.notFoundOr(ctx, err, requestPK(r.ID), "request "+r.ID)
}

// UpdateGrant puts the grant conditional on prevRevision, with rec. See
// escrow.RequestStore.
func (st *Store) UpdateGrant(ctx context.Context, g *escrow.Grant, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case g == nil || g.ID == "":
		return escrow.Errorf(escrow.CodeInvalid, "a grant needs an id")
	case g.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	it, err := grantItem(g)
	if err != nil {
		return err
	}
	var x txn
	x.put(st.tables.Main, it, condRevision, item{":prev": n(prevRevision)})
	st.audit(&x, rec)
	err = st.commit(ctx, "update grant", &x, rec)
	return st.notFoundOr(ctx, err, grantPK(g.ID), "grant "+g.ID)
}

// notFoundOr turns the conflict of a revision-conditional write into
// ErrNotFound when the item at pk does not exist; any other result passes.
func (st *Store) notFoundOr(ctx context.Context, err error, pk, what string) error {
	if !errors.Is(err, escrow.ErrConflict) {
		return err
	}
	out, gerr := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(st.tables.Main),
		Key:                      key(pk, metaSK),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#pk"),
		ExpressionAttributeNames: map[string]string{"#pk": "pk"},
	})
	if gerr != nil {
		return err // the conflict is still the better answer
	}
	if out.Item == nil {
		return fmt.Errorf("update %s: %w", what, escrow.ErrNotFound)
	}
	return err
}

// getBody is one strongly consistent GetItem of a META item.
func (st *Store) getBody(ctx context.Context, pk, what string) (item, error) {
	return st.getItem(ctx, key(pk, metaSK), what)
}

// getItem is one strongly consistent GetItem. Returns ErrNotFound.
func (st *Store) getItem(ctx context.Context, k item, what string) (item, error) {
	out, err := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.tables.Main),
		Key:            k,
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, convertError("get "+what, err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("get %s: %w", what, escrow.ErrNotFound)
	}
	return out.Item, nil
}

// GetRequest is one strongly consistent GetItem. See escrow.RequestStore.
func (st *Store) GetRequest(ctx context.Context, id string) (*escrow.Request, error) {
	it, err := st.getBody(ctx, requestPK(id), "request "+id)
	if err != nil {
		return nil, err
	}
	return decodeRequest(it)
}

// GetGrant is one strongly consistent GetItem. See escrow.RequestStore.
func (st *Store) GetGrant(ctx context.Context, id string) (*escrow.Grant, error) {
	it, err := st.getBody(ctx, grantPK(id), "grant "+id)
	if err != nil {
		return nil, err
	}
	return decodeGrantItem(it)
}

// GrantsFor queries byGrantee for the pair's grants whose End is after
// since (the sort key starts with End). Like every index read it is
// eventually consistent: a grant made a moment ago may be missing, which
// refuses access rather than grant it. See escrow.RequestStore.
func (st *Store) GrantsFor(ctx context.Context, secretID, subject string, since time.Time) ([]*escrow.Grant, error) {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Main),
		IndexName:                 aws.String(idxByGrantee),
		KeyConditionExpression:    aws.String("#h = :h AND #r >= :lo"),
		ExpressionAttributeNames:  map[string]string{"#h": "gepk", "#r": "gesk"},
		ExpressionAttributeValues: item{":h": s(granteeKey(secretID, subject)), ":lo": s(since.Add(time.Nanosecond).UTC().Format(sortTime))},
	}
	out := []*escrow.Grant{}
	for {
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return nil, convertError("grants for", err)
		}
		for _, it := range resp.Items {
			g, err := decodeGrantItem(it)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		if resp.LastEvaluatedKey == nil {
			return out, nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// indexQuery is one list over an index: newest first by csk unless
// rangeAttr and forward say otherwise. Its items are at sort key sk (META
// unless set) under pkPrefix.
type indexQuery struct {
	op, index, hashAttr, hash, pkPrefix string
	rangeAttr, sk                       string // "" means csk, META
	forward                             bool   // oldest first
	filters                             []string
	names                               map[string]string
	values                              item
	cursor                              string
	limit                               int
}

// filter adds "attr = v" to the query's filter, unless v is empty.
func (q *indexQuery) filter(attr, v string) {
	if v == "" {
		return
	}
	q.filters = append(q.filters, "#f"+attr+" = :f"+attr)
	q.names["#f"+attr] = attr
	q.values[":f"+attr] = s(v)
}

// runIndexQuery reads one page, calling decode for each item on it, and returns the
// cursor of the next page ("" on the last).
func (st *Store) runIndexQuery(ctx context.Context, q *indexQuery, decode func(item) error) (string, error) {
	q.names["#h"] = q.hashAttr
	q.values[":h"] = s(q.hash)
	rangeAttr, sk := cmp.Or(q.rangeAttr, "csk"), cmp.Or(q.sk, metaSK)
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Main),
		IndexName:                 aws.String(q.index),
		KeyConditionExpression:    aws.String("#h = :h"),
		ScanIndexForward:          aws.Bool(q.forward),
		ExpressionAttributeNames:  q.names,
		ExpressionAttributeValues: q.values,
	}
	if len(q.filters) > 0 {
		in.FilterExpression = aws.String(strings.Join(q.filters, " AND "))
	}
	attrs := []string{"pk", "sk", q.hashAttr, rangeAttr}
	if q.cursor != "" {
		c, err := decodeCursor(q.cursor, q.index, attrs...)
		if err != nil {
			return "", err
		}
		if c.Key[q.hashAttr] != q.hash || !strings.HasPrefix(c.Key["pk"], q.pkPrefix) || c.Key["sk"] != sk {
			return "", errCursor("from another query")
		}
		in.ExclusiveStartKey = c.startKey()
	}
	limit := pageLimit(q.limit)
	need := limit + 1 // one more than the page, to know whether a next page exists
	var items []item
	for len(items) < need {
		in.Limit = aws.Int32(int32(queryLimit(need-len(items), in.FilterExpression != nil)))
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return "", convertError(q.op, err)
		}
		items = append(items, resp.Items[:min(len(resp.Items), need-len(items))]...)
		if resp.LastEvaluatedKey == nil {
			break
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = cursor{Index: q.index, Key: keyOf(items[limit-1], attrs...)}.encode()
	}
	for _, it := range items {
		if err := decode(it); err != nil {
			return "", err
		}
	}
	return next, nil
}

// ListRequests queries byRequester, else byRequestSecret, else byStatus,
// filtering by the other fields; with no field set, allRequests. byStatus
// holds only requests that are not terminal, so a status alone must be one
// of those. See escrow.RequestStore.
func (st *Store) ListRequests(ctx context.Context, q escrow.RequestQuery) (escrow.RequestPage, error) {
	iq := &indexQuery{op: "list requests", pkPrefix: requestPrefix, names: map[string]string{}, values: item{},
		cursor: q.Cursor, limit: q.Limit}
	switch {
	case q.Requester != "":
		iq.index, iq.hashAttr, iq.hash = idxByRequester, "rpk", q.Requester
	case q.SecretID != "":
		iq.index, iq.hashAttr, iq.hash = idxByRequestSecret, "rspk", q.SecretID
	case q.Status != "" && !q.Status.Terminal():
		iq.index, iq.hashAttr, iq.hash = idxByStatus, "stpk", string(q.Status)
	case q.Status != "":
		return escrow.RequestPage{}, escrow.Errorf(escrow.CodeInvalid,
			"requests that are %s can be listed by requester or secret only", q.Status)
	default:
		iq.index, iq.hashAttr, iq.hash = idxAllRequests, "apk", anyRequest
	}
	// Filter by what the index does not already fix.
	if iq.index != idxByRequester {
		iq.filter("requester", q.Requester)
	}
	if iq.index != idxByRequestSecret {
		iq.filter("secretId", q.SecretID)
	}
	if iq.index != idxByStatus {
		iq.filter("status", string(q.Status))
	}
	page := escrow.RequestPage{Requests: []*escrow.Request{}}
	var err error
	page.Next, err = st.runIndexQuery(ctx, iq, func(it item) error {
		r, err := decodeRequest(it)
		if err != nil {
			return err
		}
		page.Requests = append(page.Requests, r)
		return nil
	})
	if err != nil {
		return escrow.RequestPage{}, err
	}
	return page, nil
}

// ListGrants queries byGrantSubject, else byGrantSecret, else openGrants,
// filtering by the other fields (Open: the openGrants key is present). See
// escrow.RequestStore.
func (st *Store) ListGrants(ctx context.Context, q escrow.GrantQuery) (escrow.GrantPage, error) {
	iq := &indexQuery{op: "list grants", pkPrefix: grantPrefix, names: map[string]string{}, values: item{},
		cursor: q.Cursor, limit: q.Limit}
	switch {
	case q.Subject != "":
		iq.index, iq.hashAttr, iq.hash = idxByGrantSubject, "gspk", q.Subject
	case q.SecretID != "":
		iq.index, iq.hashAttr, iq.hash = idxByGrantSecret, "gxpk", q.SecretID
	case q.Open:
		iq.index, iq.hashAttr, iq.hash = idxOpenGrants, "opk", openGrant
	default:
		return escrow.GrantPage{}, escrow.Errorf(escrow.CodeInvalid, "list grants by subject, secret or open")
	}
	if iq.index != idxByGrantSubject {
		iq.filter("subject", q.Subject)
	}
	if iq.index != idxByGrantSecret {
		iq.filter("secretId", q.SecretID)
	}
	if q.Open && iq.index != idxOpenGrants {
		iq.filters = append(iq.filters, "attribute_exists(#fopen)")
		iq.names["#fopen"] = "opk"
	}
	page := escrow.GrantPage{Grants: []*escrow.Grant{}}
	var err error
	page.Next, err = st.runIndexQuery(ctx, iq, func(it item) error {
		g, err := decodeGrantItem(it)
		if err != nil {
			return err
		}
		page.Grants = append(page.Grants, g)
		return nil
	})
	if err != nil {
		return escrow.GrantPage{}, err
	}
	return page, nil
}
