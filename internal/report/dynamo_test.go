package report_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// opGuard fails the test on any DynamoDB operation but Query, GetItem,
// BatchGetItem and writes, and counts the indexes the queries use.
type opGuard struct {
	t       testing.TB
	mu      sync.Mutex
	ops     map[string]int
	indexes map[string]int
}

var allowedOps = map[string]bool{
	"Query": true, "GetItem": true, "BatchGetItem": true,
	"PutItem": true, "TransactWriteItems": true, "BatchWriteItem": true, "UpdateItem": true, "DeleteItem": true,
}

func (g *opGuard) saw(op string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ops[op]++
	if !allowedOps[op] {
		g.t.Errorf("DynamoDB %s: reports and the services they read may only Query, GetItem, BatchGetItem or write (never Scan)", op)
	}
}

func (g *opGuard) reset() {
	g.mu.Lock()
	g.ops, g.indexes = map[string]int{}, map[string]int{}
	g.mu.Unlock()
}

// guardedAPI is the adapter's dynamo.API, passing each call through the
// guard. It has a Scan method only to fail: a type assertion for one finds
// it and the test fails.
type guardedAPI struct {
	api dynamo.API
	g   *opGuard
}

var _ dynamo.API = (*guardedAPI)(nil)

func (a *guardedAPI) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	a.g.saw("GetItem")
	return a.api.GetItem(ctx, in, o...)
}

func (a *guardedAPI) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	a.g.saw("PutItem")
	return a.api.PutItem(ctx, in, o...)
}

func (a *guardedAPI) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	a.g.saw("Query")
	a.g.mu.Lock()
	a.g.indexes[aws.ToString(in.IndexName)]++
	a.g.mu.Unlock()
	return a.api.Query(ctx, in, o...)
}

func (a *guardedAPI) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	a.g.saw("BatchGetItem")
	return a.api.BatchGetItem(ctx, in, o...)
}

func (a *guardedAPI) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	a.g.saw("TransactWriteItems")
	return a.api.TransactWriteItems(ctx, in, o...)
}

func (a *guardedAPI) Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	a.g.saw("Scan")
	return nil, errScan
}

var errScan = &scanError{}

type scanError struct{}

func (*scanError) Error() string { return "scan refused by the test" }

// targetGuard checks the operation of every request on the wire
// (X-Amz-Target), so a call that bypasses dynamo.API is caught too.
type targetGuard struct {
	inner aws.HTTPClient
	g     *opGuard
}

func (h targetGuard) Do(r *http.Request) (*http.Response, error) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "DynamoDB_20120810.")
	if !ok || !allowedOps[op] {
		h.g.saw("wire:" + target)
	}
	return h.inner.Do(r)
}

// TestReportsOnDynamoDB runs every report over the same trail on moto's
// DynamoDB, through a client that fails the test on any Scan (or any other
// operation but Query, GetItem, BatchGetItem and writes).
func TestReportsOnDynamoDB(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	ctx := context.Background()
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(ctx, dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatal(err)
	}
	g := &opGuard{t: t}
	g.reset()
	guarded := cfg.Copy()
	guarded.HTTPClient = targetGuard{inner: cfg.HTTPClient, g: g}
	st := dynamo.New(&guardedAPI{api: dynamodb.NewFromConfig(guarded), g: g}, tables)

	tr := buildTrail(t, st)
	g.reset()
	// Small pages, so that every report follows DynamoDB cursors.
	checkReports(t, report.New(report.Config{Store: st, Requests: st, Audit: st, Clock: tr.clock, PageSize: 8}), tr)

	g.mu.Lock()
	defer g.mu.Unlock()
	for _, idx := range []string{"byActor", "bySecret", "byTicket", "byAction", "allRequests", "openGrants"} {
		if g.indexes[idx] == 0 {
			t.Errorf("no report queried index %s (queries by index: %v)", idx, g.indexes)
		}
	}
	if g.ops["Query"] == 0 {
		t.Errorf("no queries at all: %v", g.ops)
	}
	t.Logf("operations while reporting: %v; queries by index: %v", g.ops, g.indexes)
}

// catchTB records a failure instead of failing.
type catchTB struct {
	testing.TB
	failed bool
}

func (c *catchTB) Errorf(string, ...any) { c.failed = true }

type okHTTP struct{}

func (okHTTP) Do(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
}

// TestGuardCatchesScan checks the guard itself: a Scan through the API,
// or on the wire, fails the test.
func TestGuardCatchesScan(t *testing.T) {
	tb := &catchTB{TB: t}
	g := &opGuard{t: tb}
	g.reset()
	if _, err := (&guardedAPI{g: g}).Scan(context.Background(), &dynamodb.ScanInput{}); err == nil || !tb.failed {
		t.Error("a Scan through the API passed the guard")
	}
	tb.failed = false
	req, _ := http.NewRequest("POST", "http://moto", nil)
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Scan")
	targetGuard{inner: okHTTP{}, g: g}.Do(req)
	if !tb.failed {
		t.Error("a Scan on the wire passed the guard")
	}
	tb.failed = false
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Query")
	targetGuard{inner: okHTTP{}, g: g}.Do(req)
	if tb.failed {
		t.Error("a Query failed the guard")
	}
}
