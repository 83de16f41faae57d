package dynamo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// failing fails the one call named fail with err. Every other call goes to
// the embedded nil API and panics, which also proves that the operation
// under test makes that single call.
type failing struct {
	API
	fail string
	err  error
}

func (f *failing) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if f.fail == "GetItem" {
		return nil, f.err
	}
	return f.API.GetItem(ctx, in, o...)
}

func (f *failing) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if f.fail == "PutItem" {
		return nil, f.err
	}
	return f.API.PutItem(ctx, in, o...)
}

func (f *failing) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if f.fail == "Query" {
		return nil, f.err
	}
	return f.API.Query(ctx, in, o...)
}

func (f *failing) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	if f.fail == "BatchGetItem" {
		return nil, f.err
	}
	return f.API.BatchGetItem(ctx, in, o...)
}

func (f *failing) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if f.fail == "TransactWriteItems" {
		return nil, f.err
	}
	return f.API.TransactWriteItems(ctx, in, o...)
}

// sdkErr wraps err the way the SDK returns it.
func sdkErr(op string, err error) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: op, Err: err}
}

func cancelled(codes ...string) error {
	e := &types.TransactionCanceledException{Message: aws.String("Transaction cancelled")}
	for _, c := range codes {
		e.CancellationReasons = append(e.CancellationReasons, types.CancellationReason{Code: aws.String(c)})
	}
	return e
}

func httpStatus(code int) error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
		Err:      errors.New("upstream said no"),
	}
}

var errorCases = []struct {
	name string
	err  error
	want escrow.Code
}{
	{"condition failed", &types.ConditionalCheckFailedException{}, escrow.CodeConflict},
	{"transaction: condition failed", cancelled("None", "ConditionalCheckFailed", "None"), escrow.CodeConflict},
	{"transaction: racing transaction", cancelled("TransactionConflict", "None"), escrow.CodeConflict},
	{"transaction: throttled", cancelled("None", "ThrottlingError"), escrow.CodeUnavailable},
	{"transaction: capacity", cancelled("ProvisionedThroughputExceeded"), escrow.CodeUnavailable},
	{"transaction: validation wins", cancelled("ConditionalCheckFailed", "ValidationError"), escrow.CodeInternal},
	{"transaction: no reasons", cancelled(), escrow.CodeInternal},
	{"transaction conflict", &types.TransactionConflictException{}, escrow.CodeConflict},
	{"idempotency token reused", &types.IdempotentParameterMismatchException{}, escrow.CodeConflict},
	{"provisioned throughput", &types.ProvisionedThroughputExceededException{}, escrow.CodeUnavailable},
	{"request limit", &types.RequestLimitExceeded{}, escrow.CodeUnavailable},
	{"throttling", &types.ThrottlingException{}, escrow.CodeUnavailable},
	{"internal server error", &types.InternalServerError{}, escrow.CodeUnavailable},
	{"transaction in progress", &types.TransactionInProgressException{}, escrow.CodeUnavailable},
	{"missing table", &types.ResourceNotFoundException{}, escrow.CodeUnavailable},
	{"validation", &smithy.GenericAPIError{Code: "ValidationException", Message: "bad expression"}, escrow.CodeInternal},
	{"generic throttling code", &smithy.GenericAPIError{Code: "ThrottlingException"}, escrow.CodeUnavailable},
	{"unknown server fault", &smithy.GenericAPIError{Code: "Odd", Fault: smithy.FaultServer}, escrow.CodeUnavailable},
	{"unknown client fault", &smithy.GenericAPIError{Code: "Odd", Fault: smithy.FaultClient}, escrow.CodeInternal},
	{"http 503", httpStatus(503), escrow.CodeUnavailable},
	{"http 400", httpStatus(400), escrow.CodeInternal},
	{"network", &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, escrow.CodeUnavailable},
	{"deadline", context.DeadlineExceeded, escrow.CodeUnavailable},
	{"cancelled", context.Canceled, escrow.CodeUnavailable},
	{"unknown", errors.New("boom"), escrow.CodeInternal},
	{"already coded", escrow.Errorf(escrow.CodeNotFound, "gone"), escrow.CodeNotFound},
}

func TestConvertError(t *testing.T) {
	if convertError("op", nil) != nil {
		t.Fatal("convertError(nil) != nil")
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			err := convertError("do thing", sdkErr("PutItem", tc.err))
			if got := escrow.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the SDK error is not in the chain of %v", err)
			}
			if !strings.Contains(err.Error(), "do thing") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
	err := convertError("get item", &types.ResourceNotFoundException{})
	if !strings.Contains(err.Error(), "misconfigured") {
		t.Errorf("a missing table should read as a misconfiguration in the log: %v", err)
	}
	if msg := escrow.ErrorMessage(convertError("get item", errors.New("secret detail"))); strings.Contains(msg, "secret detail") {
		t.Errorf("client message %q leaks the internal cause", msg)
	}
}

// TestErrorMapping runs every operation of the store against an API that
// fails its one call, for each error: the mapping holds on every path, not
// just in convertError.
func TestErrorMapping(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := func() *escrow.AuditRecord { return escrow.NewAuditRecord(ctx, now, escrow.ActionSecretCreate, "") }
	sec := &escrow.Secret{ID: "S1", Name: "n", Folder: "/f", Type: escrow.TypeGeneric, CurrentVersion: 1, Revision: 1}
	ver := &escrow.SecretVersion{SecretID: "S1", Version: 1}
	ops := []struct {
		call string
		run  func(st *Store) error
	}{
		{"GetItem", func(st *Store) error { _, err := st.GetSecret(ctx, "S1"); return err }},
		{"GetItem", func(st *Store) error { _, err := st.GetVersion(ctx, "S1", 1); return err }},
		{"GetItem", func(st *Store) error { _, err := st.GetSecretByPath(ctx, "/f", "n"); return err }},
		{"GetItem", func(st *Store) error {
			return st.UpdateSecret(ctx, &escrow.Secret{ID: "S1", Name: "n", Folder: "/f", Revision: 2}, 1, nil, rec())
		}},
		{"PutItem", func(st *Store) error { return st.Append(ctx, rec()) }},
		{"Query", func(st *Store) error { _, err := st.ListVersions(ctx, "S1"); return err }},
		{"Query", func(st *Store) error { _, err := st.ListSecrets(ctx, escrow.SecretQuery{Folder: "/"}); return err }},
		{"Query", func(st *Store) error { _, err := st.ListACLGrants(ctx, []string{"user:a"}); return err }},
		{"Query", func(st *Store) error { _, err := st.QueryAudit(ctx, escrow.AuditQuery{Actor: "a"}); return err }},
		{"Query", func(st *Store) error { _, err := st.QueryAudit(ctx, escrow.AuditQuery{}); return err }},
		{"BatchGetItem", func(st *Store) error { _, err := st.GetFolders(ctx, []string{"/", "/f"}); return err }},
		{"TransactWriteItems", func(st *Store) error { return st.CreateSecret(ctx, sec, ver, rec()) }},
		{"TransactWriteItems", func(st *Store) error { return st.PutFolder(ctx, &escrow.Folder{Path: "/f", Revision: 1}, 0, rec()) }},
		{"GetItem", func(st *Store) error { _, err := st.GetCheckout(ctx, "S1"); return err }},
		{"Query", func(st *Store) error { _, err := st.ListOpenCheckouts(ctx, "", 10); return err }},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutCheckout(ctx, &escrow.Checkout{SecretID: "S1", Status: escrow.CheckoutActive, Revision: 1}, 0, rec())
		}},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutCheckout(ctx, &escrow.Checkout{SecretID: "S1", Status: escrow.CheckoutReleased, Revision: 3}, 2, rec())
		}},
		{"BatchGetItem", func(st *Store) error { _, _, err := st.GetVersionAndFolders(ctx, "S1", 1, []string{"/"}); return err }},
		{"BatchGetItem", func(st *Store) error { _, err := st.GetQLockKeys(ctx, []string{"alice", "bob", "alice"}); return err }},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutQLockKey(ctx, &escrow.QLockKey{Subject: "alice", PublicKey: []byte{1}, Revision: 1}, 0, rec())
		}},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutQLockKey(ctx, &escrow.QLockKey{Subject: "alice", PublicKey: []byte{1}, Revision: 4}, 3, rec())
		}},
		{"GetItem", func(st *Store) error { _, err := st.GetReportSchedule(ctx, "weekly"); return err }},
		{"Query", func(st *Store) error { _, err := st.ListReportSchedules(ctx); return err }},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutReportSchedule(ctx, &escrow.ReportSchedule{Name: "weekly", Revision: 1}, 0, rec())
		}},
		{"TransactWriteItems", func(st *Store) error {
			return st.PutReportSchedule(ctx, &escrow.ReportSchedule{Name: "weekly", Revision: 3}, 2, rec())
		}},
		{"TransactWriteItems", func(st *Store) error { return st.DeleteReportSchedule(ctx, "weekly", 2, rec()) }},
	}
	for _, tc := range errorCases {
		for _, op := range ops {
			st := New(&failing{fail: op.call, err: sdkErr(op.call, tc.err)}, Tables{Main: "m", Audit: "a"})
			err := op.run(st)
			if got := escrow.ErrorCode(err); got != tc.want {
				t.Errorf("%s via %s: code %q, want %q (%v)", tc.name, op.call, got, tc.want, err)
			}
		}
	}
}

func TestULIDBounds(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 30, 15, 123_000_000, time.UTC)
	id := escrow.NewID(at)
	lo, hi := ulidBound(at.UnixMilli(), '0'), ulidBound(at.UnixMilli(), 'Z')
	if lo[:10] != id[:10] || !(lo <= id && id <= hi) {
		t.Fatalf("bounds %s..%s do not hold %s", lo, hi, id)
	}
	if next := escrow.NewID(at.Add(time.Millisecond)); next <= hi {
		t.Errorf("ID of the next millisecond %s is not above %s", next, hi)
	}

	ms := at.UnixMilli()
	for _, tc := range []struct {
		name           string
		from, to       time.Time
		wantLo, wantHi string
		empty          bool
	}{
		{"open", time.Time{}, time.Time{}, "", "", false},
		{"from", at, time.Time{}, ulidBound(ms, '0'), "", false},
		{"from inside a millisecond", at.Add(500 * time.Microsecond), time.Time{}, ulidBound(ms, '0'), "", false},
		{"to is exclusive", time.Time{}, at, "", ulidBound(ms-1, 'Z'), false},
		{"to inside a millisecond", time.Time{}, at.Add(500 * time.Microsecond), "", ulidBound(ms, 'Z'), false},
		{"both", at, at.Add(time.Second), ulidBound(ms, '0'), ulidBound(ms+999, 'Z'), false},
		{"from after to", at, at, "", "", true},
		{"to before the epoch", time.Time{}, time.Unix(0, 0), "", "", true},
	} {
		lo, hi, empty := skBounds(tc.from, tc.to)
		if lo != tc.wantLo || hi != tc.wantHi || empty != tc.empty {
			t.Errorf("%s: skBounds = %q, %q, %v; want %q, %q, %v", tc.name, lo, hi, empty, tc.wantLo, tc.wantHi, tc.empty)
		}
	}
}

// TestDeleteCancellation checks how DeleteReportSchedule and DeleteSession
// read a cancelled transaction: their delete (item 0) asks for the old
// item on a failed condition, so a failure without one is a missing item,
// and any other conflict, including a reused audit ID (item 1), stays a
// conflict.
func TestDeleteCancellation(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	old := map[string]types.AttributeValue{"pk": s(reportSchedPK), "sk": s("weekly"), "revision": n(3)}
	withItem := func(e error) error {
		e.(*types.TransactionCanceledException).CancellationReasons[0].Item = old
		return e
	}
	for _, tc := range []struct {
		name string
		err  error
		want escrow.Code
	}{
		{"no item", cancelled("ConditionalCheckFailed", "None"), escrow.CodeNotFound},
		{"item at another revision", withItem(cancelled("ConditionalCheckFailed", "None")), escrow.CodeConflict},
		{"audit ID taken", cancelled("None", "ConditionalCheckFailed"), escrow.CodeConflict},
		{"both", cancelled("ConditionalCheckFailed", "ConditionalCheckFailed"), escrow.CodeNotFound},
		{"racing transaction", cancelled("TransactionConflict", "None"), escrow.CodeConflict},
		{"validation wins", cancelled("ConditionalCheckFailed", "ValidationError"), escrow.CodeInternal},
		{"throttled", cancelled("None", "ThrottlingError"), escrow.CodeUnavailable},
		{"condition failed, not in a transaction", &types.ConditionalCheckFailedException{}, escrow.CodeConflict},
		{"no reasons", cancelled(), escrow.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := New(&failing{fail: "TransactWriteItems", err: sdkErr("TransactWriteItems", tc.err)}, Tables{Main: "m", Audit: "a"})
			for _, del := range []struct {
				name string
				run  func() error
			}{
				{"DeleteReportSchedule", func() error {
					return st.DeleteReportSchedule(ctx, "weekly", 2, escrow.NewAuditRecord(ctx, now, "report.schedule.delete", ""))
				}},
				{"DeleteSession", func() error {
					return st.DeleteSession(ctx, "00ff", escrow.NewAuditRecord(ctx, now, escrow.ActionSessionLogout, ""))
				}},
			} {
				err := del.run()
				if got := escrow.ErrorCode(err); got != tc.want {
					t.Errorf("%s: code %q, want %q (%v)", del.name, got, tc.want, err)
				}
				// One code each: a missing item must not also read as a
				// conflict, nor the other way round.
				if errors.Is(err, escrow.ErrNotFound) && errors.Is(err, escrow.ErrConflict) {
					t.Errorf("%s: %v is both not found and a conflict", del.name, err)
				}
			}
		})
	}
}
