package dynamo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.ReportScheduleStore = (*Store)(nil)

// Report schedules share one partition of the main table (pk REPORTSCHED,
// sk = name), each kept whole as JSON in body beside its revision, which
// every write is conditional on. There are few (a handful per admin team),
// so one partition stays far under its limits, and listing them is one
// strongly consistent Query of the base table, in name order, without an
// index or a Scan.
const (
	reportSchedPK       = "REPORTSCHED"
	reportSchedListPage = 100
)

func reportSchedItem(rs *escrow.ReportSchedule) (item, error) {
	b, err := json.Marshal(rs)
	if err != nil {
		return nil, fmt.Errorf("encode report schedule: %w", err)
	}
	return item{
		"pk":       s(reportSchedPK),
		"sk":       s(rs.Name),
		"revision": n(rs.Revision),
		"body":     s(string(b)),
	}, nil
}

func decodeReportSched(it item) (*escrow.ReportSchedule, error) {
	rs := &escrow.ReportSchedule{}
	if err := decodeBody(it, "report schedule", rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// PutReportSchedule puts rs conditional on its key being new (prevRevision
// 0) or on the stored revision, with rec, in one transaction: of racing
// writers with the same prevRevision DynamoDB lets exactly one through,
// and a loser's audit record is cancelled with its write. A missing
// schedule and a stale revision are both ErrConflict, as the port says.
// See escrow.ReportScheduleStore.
func (st *Store) PutReportSchedule(ctx context.Context, rs *escrow.ReportSchedule, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case rs == nil || rs.Name == "":
		return escrow.Errorf(escrow.CodeInvalid, "a report schedule needs a name")
	case prevRevision < 0 || rs.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	it, err := reportSchedItem(rs)
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
	return st.commit(ctx, "put report schedule", &x, rec)
}

// GetReportSchedule is one strongly consistent GetItem. See
// escrow.ReportScheduleStore.
func (st *Store) GetReportSchedule(ctx context.Context, name string) (*escrow.ReportSchedule, error) {
	if name == "" {
		// DynamoDB refuses an empty key; no schedule has that name.
		return nil, fmt.Errorf("get report schedule: %w", escrow.ErrNotFound)
	}
	it, err := st.getItem(ctx, key(reportSchedPK, name), "report schedule "+name)
	if err != nil {
		return nil, err
	}
	return decodeReportSched(it)
}

// ListReportSchedules queries the schedules' one partition, which sorts
// by name, strongly consistently, a page of reportSchedListPage at a time.
// See escrow.ReportScheduleStore.
func (st *Store) ListReportSchedules(ctx context.Context) ([]*escrow.ReportSchedule, error) {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Main),
		KeyConditionExpression:    aws.String("#pk = :pk"),
		ExpressionAttributeNames:  map[string]string{"#pk": "pk"},
		ExpressionAttributeValues: item{":pk": s(reportSchedPK)},
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(reportSchedListPage),
	}
	out := []*escrow.ReportSchedule{}
	for {
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return nil, convertError("list report schedules", err)
		}
		for _, it := range resp.Items {
			rs, err := decodeReportSched(it)
			if err != nil {
				return nil, err
			}
			out = append(out, rs)
		}
		if resp.LastEvaluatedKey == nil {
			return out, nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// DeleteReportSchedule deletes name conditional on its revision, with rec,
// in one transaction. The delete asks for the old item when its condition
// fails, which DynamoDB returns only if there is one: a failure without it
// is a missing schedule (ErrNotFound), with it a changed one
// (ErrConflict), told apart in the same call, without a racy read. See
// escrow.ReportScheduleStore.
func (st *Store) DeleteReportSchedule(ctx context.Context, name string, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case name == "":
		return escrow.Errorf(escrow.CodeInvalid, "name the report schedule to delete")
	case prevRevision < 1:
		return escrow.Errorf(escrow.CodeInvalid, "name the revision to delete")
	}
	var x txn
	x.del(st.tables.Main, key(reportSchedPK, name), condRevision, item{":prev": n(prevRevision)})
	x.items[0].Delete.ReturnValuesOnConditionCheckFailure = types.ReturnValuesOnConditionCheckFailureAllOld
	st.audit(&x, rec)
	err := st.commit(ctx, "delete report schedule", &x, rec)
	if nothingToDelete(err, 0) {
		return fmt.Errorf("delete report schedule %s: %w", name, escrow.ErrNotFound)
	}
	return err
}
