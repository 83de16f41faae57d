package dynamo

import (
	"context"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Append puts rec under the condition that its key is new; the audit table
// is never updated or deleted from. See escrow.AuditLog.
func (st *Store) Append(ctx context.Context, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	_, err := st.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(st.tables.Audit),
		Item:                     auditItem(rec),
		ConditionExpression:      aws.String(condNotExists),
		ExpressionAttributeNames: condNames(condNotExists),
	})
	return convertError("append audit record", err)
}

// How far an audit query with no index and no From walks back, and how far
// past now it starts when To is open (records stamped by a host whose clock
// runs a little ahead).
const (
	defaultAuditSpan = 400 * 24 * time.Hour
	clockSlack       = 24 * time.Hour
	maxDayWindow     = 16
)

// auditRow is a decoded record and the item it came from (for the cursor).
type auditRow struct {
	rec *escrow.AuditRecord
	it  item
}

// QueryAudit picks the most selective index (byTicket, then bySecret, then
// byActor, then byAction) and filters the other fields; with none of them
// it walks the day partitions newest first. From and To bound the ULID sort key; the
// record's own time then makes the bounds exact. See escrow.AuditLog.
func (st *Store) QueryAudit(ctx context.Context, q escrow.AuditQuery) (escrow.AuditPage, error) {
	limit := pageLimit(q.Limit)
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Audit),
		ScanIndexForward:          aws.Bool(false),
		ExpressionAttributeNames:  map[string]string{"#sk": "sk"},
		ExpressionAttributeValues: item{},
	}
	var index, hashAttr, hash string
	switch {
	case q.Ticket != "":
		index, hashAttr, hash = idxByTicket, "ticket", q.Ticket
	case q.SecretID != "":
		index, hashAttr, hash = idxBySecret, "secretId", q.SecretID
	case q.Actor != "":
		index, hashAttr, hash = idxByActor, "actor", q.Actor
	case q.Action != "":
		index, hashAttr, hash = idxByAction, "action", q.Action
	default:
		hashAttr = "pk"
	}
	if index != "" {
		in.IndexName = aws.String(index)
	}
	in.ExpressionAttributeNames["#h"] = hashAttr
	in.ExpressionAttributeValues[":h"] = s(hash)

	var filters []string
	filter := func(attr, v string) {
		if v != "" && attr != hashAttr {
			filters = append(filters, "#"+attr+" = :"+attr)
			in.ExpressionAttributeNames["#"+attr] = attr
			in.ExpressionAttributeValues[":"+attr] = s(v)
		}
	}
	filter("secretId", q.SecretID)
	filter("actor", q.Actor)
	filter("action", q.Action)
	if len(filters) > 0 {
		in.FilterExpression = aws.String(strings.Join(filters, " AND "))
	}

	cond := "#h = :h"
	lo, hi, empty := skBounds(q.From, q.To)
	switch {
	case lo != "" && hi != "":
		cond += " AND #sk BETWEEN :lo AND :hi"
	case lo != "":
		cond += " AND #sk >= :lo"
	case hi != "":
		cond += " AND #sk <= :hi"
	default:
		delete(in.ExpressionAttributeNames, "#sk")
	}
	if lo != "" {
		in.ExpressionAttributeValues[":lo"] = s(lo)
	}
	if hi != "" {
		in.ExpressionAttributeValues[":hi"] = s(hi)
	}
	in.KeyConditionExpression = aws.String(cond)

	attrs := []string{"pk", "sk"}
	if index != "" {
		attrs = append(attrs, hashAttr)
	}
	var start cursor
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, index, attrs...)
		if err != nil {
			return escrow.AuditPage{}, err
		}
		if index != "" && c.Key[hashAttr] != hash {
			return escrow.AuditPage{}, errCursor("from another query")
		}
		if index == "" {
			if _, err := time.Parse(time.DateOnly, c.Day); err != nil || c.Key["pk"] != dayPrefix+c.Day {
				return escrow.AuditPage{}, errCursor("bad day")
			}
		}
		start = c
		in.ExclusiveStartKey = c.startKey()
	}
	if empty {
		return escrow.AuditPage{Records: []*escrow.AuditRecord{}}, nil
	}

	need := limit + 1
	rows := make([]auditRow, 0, min(need, 64))
	// keep adds the records of one Query response and reports whether the
	// page (plus one) is full.
	keep := func(items []item) (bool, error) {
		for _, it := range items {
			rec, err := decodeAudit(it)
			if err != nil {
				return false, err
			}
			if (!q.From.IsZero() && rec.Time.Before(q.From)) || (!q.To.IsZero() && !rec.Time.Before(q.To)) {
				continue // inside the millisecond of a bound
			}
			rows = append(rows, auditRow{rec, it})
			if len(rows) == need {
				return true, nil
			}
		}
		return false, nil
	}
	// query runs one Query of in; drain keeps its records and follows
	// in's later pages until the page is full or in is exhausted.
	query := func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
		in.Limit = aws.Int32(int32(queryLimit(need-len(rows), in.FilterExpression != nil)))
		resp, err := st.client.Query(ctx, in)
		return resp, convertError("query audit", err)
	}
	drain := func(in *dynamodb.QueryInput, resp *dynamodb.QueryOutput) error {
		for {
			full, err := keep(resp.Items)
			if err != nil || full || resp.LastEvaluatedKey == nil {
				return err
			}
			in.ExclusiveStartKey = resp.LastEvaluatedKey
			if resp, err = query(in); err != nil {
				return err
			}
		}
	}

	if index != "" {
		resp, err := query(in)
		if err == nil {
			err = drain(in, resp)
		}
		if err != nil {
			return escrow.AuditPage{}, err
		}
	} else {
		first, last := st.auditDays(q)
		if start.Day != "" {
			first, _ = time.Parse(time.DateOnly, start.Day)
		}
		var days []time.Time
		for day := first; !day.Before(last); day = day.AddDate(0, 0, -1) {
			days = append(days, day)
		}
		// Most days of a sparse log are empty, and walking them one Query
		// at a time is slow: fetch the first page of a growing window of
		// days at once (1, 2, 4... so that a busy day still costs one
		// Query), then take them in order.
		for i, window := 0, 1; i < len(days) && len(rows) < need; i, window = i+window, min(2*window, maxDayWindow) {
			batch := days[i:min(i+window, len(days))]
			ins := make([]*dynamodb.QueryInput, len(batch))
			outs := make([]*dynamodb.QueryOutput, len(batch))
			errs := make([]error, len(batch))
			var wg sync.WaitGroup
			for j, day := range batch {
				c := *in
				c.ExpressionAttributeValues = maps.Clone(in.ExpressionAttributeValues)
				c.ExpressionAttributeValues[":h"] = s(dayPK(day))
				if i+j > 0 {
					c.ExclusiveStartKey = nil // only the cursor's day resumes
				}
				ins[j] = &c
				wg.Go(func() { outs[j], errs[j] = query(ins[j]) })
			}
			wg.Wait()
			for j := range batch {
				if errs[j] != nil {
					return escrow.AuditPage{}, errs[j]
				}
				if err := drain(ins[j], outs[j]); err != nil {
					return escrow.AuditPage{}, err
				}
				if len(rows) == need {
					break
				}
			}
		}
	}

	page := escrow.AuditPage{Records: make([]*escrow.AuditRecord, 0, min(len(rows), limit))}
	for _, r := range rows[:min(len(rows), limit)] {
		page.Records = append(page.Records, r.rec)
	}
	if len(rows) > limit {
		c := cursor{Index: index, Key: keyOf(rows[limit-1].it, attrs...)}
		if index == "" {
			c.Day = strings.TrimPrefix(c.Key["pk"], dayPrefix)
		}
		page.Next = c.encode()
	}
	return page, nil
}

// auditDays returns the newest and oldest day partitions (UTC midnights)
// that an unindexed query walks.
func (st *Store) auditDays(q escrow.AuditQuery) (first, last time.Time) {
	top := q.To
	if top.IsZero() {
		top = st.now().Add(clockSlack)
	}
	bottom := q.From
	if bottom.IsZero() {
		bottom = top.Add(-defaultAuditSpan)
	}
	return top.UTC().Truncate(24 * time.Hour), bottom.UTC().Truncate(24 * time.Hour)
}

// skBounds turns From (inclusive) and To (exclusive) into inclusive bounds
// on the ULID sort key, at millisecond precision: lo is the smallest ID of
// From's millisecond, hi the largest ID of the last millisecond that can
// hold a time before To. "" means open. empty reports a range that holds
// nothing.
func skBounds(from, to time.Time) (lo, hi string, empty bool) {
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return "", "", true
	}
	if !from.IsZero() {
		lo = ulidBound(max(from.UnixMilli(), 0), '0')
	}
	if !to.IsZero() {
		ms := to.UnixMilli()
		if to.Sub(time.UnixMilli(ms)) > 0 {
			ms++ // a time inside To's millisecond, but before To, counts
		}
		if ms <= 0 {
			return "", "", true
		}
		hi = ulidBound(ms-1, 'Z')
	}
	return lo, hi, false
}

// ulidBound is the ULID of millisecond ms whose 16 random characters are
// all fill ('0' for the smallest, 'Z' for the largest).
func ulidBound(ms int64, fill byte) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [26]byte
	for i := range 10 {
		b[i] = crockford[(ms>>(45-5*i))&31]
	}
	for i := 10; i < 26; i++ {
		b[i] = fill
	}
	return string(b[:])
}
