package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// recorder passes every call to the real client and keeps the write calls.
type recorder struct {
	API
	mu   sync.Mutex
	txns []*dynamodb.TransactWriteItemsInput
	puts []*dynamodb.PutItemInput
}

func (r *recorder) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	r.mu.Lock()
	r.txns = append(r.txns, in)
	r.mu.Unlock()
	return r.API.TransactWriteItems(ctx, in, o...)
}

func (r *recorder) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	r.mu.Lock()
	r.puts = append(r.puts, in)
	r.mu.Unlock()
	return r.API.PutItem(ctx, in, o...)
}

var testNow = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func testSecret(id, folder, name string) (*escrow.Secret, *escrow.SecretVersion) {
	s := &escrow.Secret{
		ID: id, Name: name, Folder: folder, Type: escrow.TypePassword,
		ACL:            []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermOwner}},
		CurrentVersion: 1, Revision: 1, CreatedAt: testNow, UpdatedAt: testNow,
	}
	v := &escrow.SecretVersion{SecretID: id, Version: 1, CreatedAt: testNow, KeyID: "k",
		WrappedKey: []byte{0, 1, 2}, Ciphertext: []byte{0xff, 0, 0x80}}
	return s, v
}

// TestAuditInSameTransaction checks that a write's audit record travels in
// the write's own TransactWriteItems (never a separate PutItem), and that a
// write whose condition fails leaves no audit record behind.
func TestAuditInSameTransaction(t *testing.T) {
	client, _ := newClient(t)
	tables := newTables(t, client)
	rec := &recorder{API: client}
	st := New(rec, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	at := testNow

	s, v := testSecret(escrow.NewID(at), "/prod", "db")
	create := escrow.NewAuditRecord(ctx, at, escrow.ActionSecretCreate, escrow.SecretTarget(s.ID))
	create.SecretID = s.ID
	if err := st.CreateSecret(ctx, s, v, create); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	u := *s
	u.Revision, u.Description = 2, "updated"
	update := escrow.NewAuditRecord(ctx, at.Add(time.Second), escrow.ActionSecretUpdate, escrow.SecretTarget(s.ID))
	update.SecretID = s.ID
	if err := st.UpdateSecret(ctx, &u, 1, nil, update); err != nil {
		t.Fatalf("UpdateSecret: %v", err)
	}
	if len(rec.puts) != 0 {
		t.Errorf("writes made %d separate PutItem calls; the audit record belongs in the transaction", len(rec.puts))
	}
	if len(rec.txns) != 2 {
		t.Fatalf("got %d transactions, want 2", len(rec.txns))
	}
	for i, want := range []*escrow.AuditRecord{create, update} {
		var audits, secrets int
		for _, it := range rec.txns[i].TransactItems {
			if it.Put == nil {
				continue
			}
			switch aws.ToString(it.Put.TableName) {
			case tables.Audit:
				audits++
				if got := (&decoder{it: it.Put.Item}).str("sk"); got != want.ID {
					t.Errorf("transaction %d audits %s, want %s", i, got, want.ID)
				}
				if aws.ToString(it.Put.ConditionExpression) != condNotExists {
					t.Errorf("transaction %d puts its audit record without attribute_not_exists", i)
				}
			case tables.Main:
				if (&decoder{it: it.Put.Item}).str("sk") == metaSK {
					secrets++
				}
			}
		}
		if audits != 1 || secrets != 1 {
			t.Errorf("transaction %d has %d audit puts and %d secret puts, want 1 and 1", i, audits, secrets)
		}
	}

	// A stale write fails in DynamoDB itself: the pre-read is fooled by a
	// racing writer, so the transaction's own condition must catch it.
	stale := u
	stale.Revision, stale.Description = 3, "lost"
	lost := escrow.NewAuditRecord(ctx, at.Add(2*time.Second), escrow.ActionSecretUpdate, escrow.SecretTarget(s.ID))
	lost.SecretID = s.ID
	racer := &racingAPI{API: client, before: func() {
		w := stale
		w.Description = "racer"
		r := escrow.NewAuditRecord(ctx, at.Add(3*time.Second), escrow.ActionSecretUpdate, escrow.SecretTarget(s.ID))
		r.SecretID = s.ID
		if err := New(client, tables).UpdateSecret(ctx, &w, 2, nil, r); err != nil {
			t.Errorf("racing UpdateSecret: %v", err)
		}
	}}
	err := New(racer, tables).UpdateSecret(ctx, &stale, 2, nil, lost)
	if !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("UpdateSecret after a racing write: %v, want ErrConflict", err)
	}
	page, err := st.QueryAudit(ctx, escrow.AuditQuery{SecretID: s.ID})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	for _, r := range page.Records {
		if r.ID == lost.ID {
			t.Errorf("the audit record of the failed write landed")
		}
	}
	if len(page.Records) != 3 {
		t.Errorf("QueryAudit(secret) = %d records, want 3 (create, update, racer)", len(page.Records))
	}
	got, err := st.GetSecret(ctx, s.ID)
	if err != nil || got.Description != "racer" {
		t.Errorf("GetSecret = %v, %v; want the racer's write", got, err)
	}
}

// racingAPI runs before just ahead of the first transaction: a writer that
// commits between our read and our write.
type racingAPI struct {
	API
	once   sync.Once
	before func()
}

func (r *racingAPI) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	r.once.Do(r.before)
	return r.API.TransactWriteItems(ctx, in, o...)
}

// TestCursorFromAnotherQuery checks that a cursor only resumes the query
// that made it.
func TestCursorFromAnotherQuery(t *testing.T) {
	client, _ := newClient(t)
	st := New(client, newTables(t, client))
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	for i, name := range []string{"a", "b", "c"} {
		at := testNow.Add(time.Duration(i) * time.Second)
		s, v := testSecret(escrow.NewID(at), "/f", name)
		rec := escrow.NewAuditRecord(ctx, at, escrow.ActionSecretCreate, "")
		rec.SecretID = s.ID
		if err := st.CreateSecret(ctx, s, v, rec); err != nil {
			t.Fatalf("CreateSecret: %v", err)
		}
	}
	lp, err := st.ListSecrets(ctx, escrow.SecretQuery{Folder: "/f", Limit: 1})
	if err != nil || lp.Next == "" {
		t.Fatalf("ListSecrets = %+v, %v; want a next page", lp, err)
	}
	for _, q := range []escrow.SecretQuery{
		{Folder: "/g", Cursor: lp.Next},
		{Folder: "/f", Recursive: true, Cursor: lp.Next},
	} {
		_, err := st.ListSecrets(ctx, q)
		if !errors.Is(err, escrow.ErrInvalid) {
			t.Errorf("ListSecrets(%+v): %v, want ErrInvalid", q, err)
		}
	}
	ap, err := st.QueryAudit(ctx, escrow.AuditQuery{Actor: "alice", Limit: 1})
	if err != nil || ap.Next == "" {
		t.Fatalf("QueryAudit = %+v, %v; want a next page", ap, err)
	}
	for _, q := range []escrow.AuditQuery{
		{Actor: "bob", Cursor: ap.Next},
		{Cursor: ap.Next},
		{Action: escrow.ActionSecretCreate, Cursor: ap.Next},
	} {
		_, err := st.QueryAudit(ctx, q)
		if !errors.Is(err, escrow.ErrInvalid) {
			t.Errorf("QueryAudit(%+v): %v, want ErrInvalid", q, err)
		}
	}
	next, err := st.QueryAudit(ctx, escrow.AuditQuery{Actor: "alice", Limit: 1, Cursor: ap.Next})
	if err != nil || len(next.Records) != 1 || next.Records[0].ID == ap.Records[0].ID {
		t.Errorf("QueryAudit(next page) = %+v, %v; want the next record", next, err)
	}
}

// BenchmarkRevealReads measures the reads of one reveal (GetSecret, then
// GetVersionAndFolders) against moto, and reports the DynamoDB round trips
// they take: one per read.
func BenchmarkRevealReads(b *testing.B) {
	client, counter := newClient(b)
	st := New(client, newTables(b, client))
	ctx := escrow.NewContext(b.Context(), &escrow.Principal{Subject: "alice"})
	s, v := testSecret(escrow.NewID(testNow), "/prod/db", "pg")
	if err := st.CreateSecret(ctx, s, v, escrow.NewAuditRecord(ctx, testNow, escrow.ActionSecretCreate, "")); err != nil {
		b.Fatalf("CreateSecret: %v", err)
	}
	for i, p := range []string{"/", "/prod", "/prod/db"} {
		f := &escrow.Folder{Path: p, Revision: 1, ACL: []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermView}}}
		if err := st.PutFolder(ctx, f, 0, escrow.NewAuditRecord(ctx, testNow.Add(time.Duration(i+1)*time.Millisecond), escrow.ActionFolderACL, "")); err != nil {
			b.Fatalf("PutFolder: %v", err)
		}
	}
	counter.n.Store(0)
	b.ResetTimer()
	for b.Loop() {
		sec, err := st.GetSecret(ctx, s.ID)
		if err != nil {
			b.Fatal(err)
		}
		v, fs, err := st.GetVersionAndFolders(ctx, s.ID, sec.CurrentVersion, escrow.Ancestors(sec.Folder))
		if err != nil || len(fs) != 3 || v.Version != 1 {
			b.Fatalf("GetVersionAndFolders = %d folders, %v", len(fs), err)
		}
	}
	b.ReportMetric(float64(counter.n.Load())/float64(b.N), "roundtrips/op")
}

// TestGetFoldersMany checks the paths that BatchGetItem refuses as such:
// more than 100 keys, and the same key twice.
func TestGetFoldersMany(t *testing.T) {
	client, _ := newClient(t)
	st := New(client, newTables(t, client))
	ctx := t.Context()
	var paths []string
	for i := range 150 {
		p := "/f" + strconv.Itoa(i)
		paths = append(paths, p, p)
		if i%50 == 7 {
			rec := escrow.NewAuditRecord(ctx, testNow.Add(time.Duration(i)*time.Millisecond), escrow.ActionFolderACL, "")
			if err := st.PutFolder(ctx, &escrow.Folder{Path: p, Revision: 1}, 0, rec); err != nil {
				t.Fatalf("PutFolder(%s): %v", p, err)
			}
		}
	}
	fs, err := st.GetFolders(ctx, paths)
	if err != nil {
		t.Fatalf("GetFolders(%d paths): %v", len(paths), err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.Path)
	}
	slices.Sort(got)
	if want := []string{"/f107", "/f57", "/f7"}; !slices.Equal(got, want) {
		t.Errorf("GetFolders = %q, want %q", got, want)
	}
}

// TestCheckoutWrites checks the shape of PutCheckout's one transaction:
// the slot, conditional on its key being new or on the revision, with the
// open-slot index key only while open, and the audit record beside it.
func TestCheckoutWrites(t *testing.T) {
	client, _ := newClient(t)
	tables := newTables(t, client)
	rec := &recorder{API: client}
	st := New(rec, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	id := escrow.NewID(testNow)
	co := &escrow.Checkout{SecretID: id, ID: escrow.NewID(testNow), Status: escrow.CheckoutActive, Revision: 1, UpdatedAt: testNow}
	if err := st.PutCheckout(ctx, co, 0, escrow.NewAuditRecord(ctx, testNow, "checkout.begin", "")); err != nil {
		t.Fatalf("PutCheckout(open): %v", err)
	}
	rel := *co
	rel.Status, rel.Revision, rel.UpdatedAt = escrow.CheckoutReleased, 2, testNow.Add(time.Minute)
	if err := st.PutCheckout(ctx, &rel, 1, escrow.NewAuditRecord(ctx, testNow.Add(time.Minute), "checkout.end", "")); err != nil {
		t.Fatalf("PutCheckout(released): %v", err)
	}
	if len(rec.puts) != 0 || len(rec.txns) != 2 {
		t.Fatalf("got %d PutItem calls and %d transactions, want 0 and 2", len(rec.puts), len(rec.txns))
	}
	for i, want := range []struct {
		cond string
		open bool
	}{{condNotExists, true}, {condRevision, false}} {
		items := rec.txns[i].TransactItems
		if len(items) != 2 || items[0].Put == nil || items[1].Put == nil {
			t.Fatalf("transaction %d has %d items, want two puts", i, len(items))
		}
		slot, audit := items[0].Put, items[1].Put
		d := decoder{it: slot.Item}
		if aws.ToString(slot.TableName) != tables.Main || d.str("pk") != secretPK(id) || d.str("sk") != checkoutSK {
			t.Errorf("transaction %d puts the slot at %s %s/%s", i, aws.ToString(slot.TableName), d.str("pk"), d.str("sk"))
		}
		if got := aws.ToString(slot.ConditionExpression); got != want.cond {
			t.Errorf("transaction %d: slot condition %q, want %q", i, got, want.cond)
		}
		_, hasHash := slot.Item["copk"]
		_, hasRange := slot.Item["cosk"]
		if hasHash != want.open || hasRange != want.open {
			t.Errorf("transaction %d: open-slot index key present = %v/%v, want %v", i, hasHash, hasRange, want.open)
		}
		if aws.ToString(audit.TableName) != tables.Audit || aws.ToString(audit.ConditionExpression) != condNotExists {
			t.Errorf("transaction %d: second put goes to %s with condition %q, want the audit table with attribute_not_exists",
				i, aws.ToString(audit.TableName), aws.ToString(audit.ConditionExpression))
		}
	}
}

// TestQLockKeyRoundTrips checks PutQLockKey's one transaction (the key
// item, conditional on its key being new or on the revision, and the audit
// record beside it) and that GetQLockKeys takes one round trip per 100
// distinct subjects, and none for no subjects.
func TestQLockKeyRoundTrips(t *testing.T) {
	client, counter := newClient(t)
	tables := newTables(t, client)
	rec := &recorder{API: client}
	st := New(rec, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	k := &escrow.QLockKey{Subject: "alice", PublicKey: make([]byte, 1216), Sealed: make([]byte, 1300), Revision: 1, CreatedAt: testNow}
	if err := st.PutQLockKey(ctx, k, 0, escrow.NewAuditRecord(ctx, testNow, "qlock.key.put", "")); err != nil {
		t.Fatalf("PutQLockKey(new): %v", err)
	}
	k2 := *k
	k2.Revision, k2.UpdatedAt = 2, testNow.Add(time.Minute)
	if err := st.PutQLockKey(ctx, &k2, 1, escrow.NewAuditRecord(ctx, testNow.Add(time.Minute), "qlock.key.put", "")); err != nil {
		t.Fatalf("PutQLockKey(update): %v", err)
	}
	if len(rec.puts) != 0 || len(rec.txns) != 2 {
		t.Fatalf("got %d PutItem calls and %d transactions, want 0 and 2", len(rec.puts), len(rec.txns))
	}
	for i, cond := range []string{condNotExists, condRevision} {
		items := rec.txns[i].TransactItems
		if len(items) != 2 || items[0].Put == nil || items[1].Put == nil {
			t.Fatalf("transaction %d has %d items, want two puts", i, len(items))
		}
		key, audit := items[0].Put, items[1].Put
		d := decoder{it: key.Item}
		if aws.ToString(key.TableName) != tables.Main || d.str("pk") != qlockKeyPK("alice") || d.str("sk") != qlockKeySK {
			t.Errorf("transaction %d puts the key at %s %s/%s", i, aws.ToString(key.TableName), d.str("pk"), d.str("sk"))
		}
		if got := aws.ToString(key.ConditionExpression); got != cond {
			t.Errorf("transaction %d: key condition %q, want %q", i, got, cond)
		}
		if aws.ToString(audit.TableName) != tables.Audit || aws.ToString(audit.ConditionExpression) != condNotExists {
			t.Errorf("transaction %d: second put goes to %s with condition %q, want the audit table with attribute_not_exists",
				i, aws.ToString(audit.TableName), aws.ToString(audit.ConditionExpression))
		}
	}

	subjects := []string{"alice"}
	for i := range 149 {
		subjects = append(subjects, "user-"+strconv.Itoa(i))
	}
	for _, tc := range []struct {
		subjects []string
		trips    int64
	}{
		{nil, 0},
		{subjects[:5], 1},
		{append(slices.Clone(subjects[:100]), subjects[:100]...), 1}, // 100 distinct
		{subjects, 2},
	} {
		counter.n.Store(0)
		ks, err := st.GetQLockKeys(ctx, tc.subjects)
		if err != nil || len(ks) != min(len(tc.subjects), 1) {
			t.Fatalf("GetQLockKeys(%d subjects) = %d keys, %v; want alice's", len(tc.subjects), len(ks), err)
		}
		if got := counter.n.Load(); got != tc.trips {
			t.Errorf("GetQLockKeys(%d subjects) took %d round trips, want %d", len(tc.subjects), got, tc.trips)
		}
	}
}

// smallPages caps the Limit of every Query of the report schedules'
// partition, and keeps those queries: a list of a few dozen schedules then
// spans pages, as a list of a few thousand would as deployed.
type smallPages struct {
	API
	limit   int32
	mu      sync.Mutex
	queries []*dynamodb.QueryInput
}

func (p *smallPages) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if (&decoder{it: in.ExpressionAttributeValues}).str(":pk") == reportSchedPK {
		c := *in
		c.Limit = aws.Int32(p.limit)
		in = &c
		p.mu.Lock()
		p.queries = append(p.queries, in)
		p.mu.Unlock()
	}
	return p.API.Query(ctx, in, o...)
}

func testReportSched(name string, rev int64) *escrow.ReportSchedule {
	return &escrow.ReportSchedule{Name: name, Report: "secret-access", Every: "daily", At: 6,
		Recipients: []string{"audit@example.com"}, CreatedBy: "alice", CreatedAt: testNow, Revision: rev}
}

// TestReportScheduleWrites checks the shape of the report schedules'
// transactions: the item in the schedules' one partition, conditional on
// its key being new or on the revision (a delete also asking for the old
// item, which tells a missing schedule from a changed one), and the audit
// record beside it.
func TestReportScheduleWrites(t *testing.T) {
	client, _ := newClient(t)
	tables := newTables(t, client)
	rec := &recorder{API: client}
	st := New(rec, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	at := func(i int) time.Time { return testNow.Add(time.Duration(i) * time.Minute) }
	if err := st.PutReportSchedule(ctx, testReportSched("daily", 1), 0, escrow.NewAuditRecord(ctx, at(0), "report.schedule.put", "")); err != nil {
		t.Fatalf("PutReportSchedule(new): %v", err)
	}
	if err := st.PutReportSchedule(ctx, testReportSched("daily", 2), 1, escrow.NewAuditRecord(ctx, at(1), "report.schedule.put", "")); err != nil {
		t.Fatalf("PutReportSchedule(update): %v", err)
	}
	if err := st.DeleteReportSchedule(ctx, "daily", 2, escrow.NewAuditRecord(ctx, at(2), "report.schedule.delete", "")); err != nil {
		t.Fatalf("DeleteReportSchedule: %v", err)
	}
	if len(rec.puts) != 0 || len(rec.txns) != 3 {
		t.Fatalf("got %d PutItem calls and %d transactions, want 0 and 3", len(rec.puts), len(rec.txns))
	}
	for i, cond := range []string{condNotExists, condRevision, condRevision} {
		items := rec.txns[i].TransactItems
		if len(items) != 2 || items[1].Put == nil {
			t.Fatalf("transaction %d has %d items, want the schedule's and the audit put", i, len(items))
		}
		var table, gotCond string
		var k item
		if i < 2 {
			p := items[0].Put
			if p == nil {
				t.Fatalf("transaction %d does not put the schedule", i)
			}
			table, gotCond, k = aws.ToString(p.TableName), aws.ToString(p.ConditionExpression), p.Item
		} else {
			d := items[0].Delete
			if d == nil {
				t.Fatalf("transaction %d does not delete the schedule", i)
			}
			table, gotCond, k = aws.ToString(d.TableName), aws.ToString(d.ConditionExpression), d.Key
			if d.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
				t.Errorf("the delete asks for %q on a failed condition, want ALL_OLD", d.ReturnValuesOnConditionCheckFailure)
			}
		}
		dec := decoder{it: k}
		if table != tables.Main || dec.str("pk") != reportSchedPK || dec.str("sk") != "daily" {
			t.Errorf("transaction %d writes the schedule at %s %s/%s", i, table, dec.str("pk"), dec.str("sk"))
		}
		if gotCond != cond {
			t.Errorf("transaction %d: schedule condition %q, want %q", i, gotCond, cond)
		}
		audit := items[1].Put
		if aws.ToString(audit.TableName) != tables.Audit || aws.ToString(audit.ConditionExpression) != condNotExists {
			t.Errorf("transaction %d: second item goes to %s with condition %q, want the audit table with attribute_not_exists",
				i, aws.ToString(audit.TableName), aws.ToString(audit.ConditionExpression))
		}
	}
}

// TestReportScheduleListPages checks that the list is one strongly
// consistent Query of the base table per page, and follows the pages to
// the end in name order: one round trip as deployed, five when a page
// holds 7 of 30 schedules.
func TestReportScheduleListPages(t *testing.T) {
	client, counter := newClient(t)
	tables := newTables(t, client)
	st := New(client, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	var want []string
	for i := range 30 {
		name := fmt.Sprintf("sched-%02d", (i*7)%30)
		want = append(want, fmt.Sprintf("sched-%02d", i))
		rec := escrow.NewAuditRecord(ctx, testNow.Add(time.Duration(i)*time.Millisecond), "report.schedule.put", "")
		if err := st.PutReportSchedule(ctx, testReportSched(name, 1), 0, rec); err != nil {
			t.Fatalf("PutReportSchedule(%s): %v", name, err)
		}
	}
	names := func(rs []*escrow.ReportSchedule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}

	counter.n.Store(0)
	got, err := st.ListReportSchedules(ctx)
	if err != nil || !slices.Equal(names(got), want) {
		t.Fatalf("ListReportSchedules = %q, %v; want %q", names(got), err, want)
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("ListReportSchedules of 30 took %d round trips, want 1", n)
	}

	small := &smallPages{API: client, limit: 7}
	got, err = New(small, tables).ListReportSchedules(ctx)
	if err != nil || !slices.Equal(names(got), want) {
		t.Fatalf("ListReportSchedules(pages of 7) = %q, %v; want %q", names(got), err, want)
	}
	if len(small.queries) != 5 {
		t.Errorf("ListReportSchedules(pages of 7) made %d queries, want 5", len(small.queries))
	}
	for i, q := range small.queries {
		if q.IndexName != nil || !aws.ToBool(q.ConsistentRead) || aws.ToString(q.KeyConditionExpression) != "#pk = :pk" {
			t.Errorf("query %d: index %q, consistent %v, key condition %q; want the base table's one partition, consistently",
				i, aws.ToString(q.IndexName), aws.ToBool(q.ConsistentRead), aws.ToString(q.KeyConditionExpression))
		}
		if (i == 0) != (q.ExclusiveStartKey == nil) {
			t.Errorf("query %d: start key %v", i, q.ExclusiveStartKey)
		}
	}
}

// TestSessionWrites checks the shape of the sessions' transactions: the
// item in its own partition, with the TTL attribute a day past Expires in
// Unix seconds, put conditional on its key being new and deleted
// conditional on its existing (asking for the old item, as nothingToDelete
// needs), each with the audit record beside it; and that CreateTables,
// run again, leaves the main table's TTL on, on that attribute.
func TestSessionWrites(t *testing.T) {
	client, _ := newClient(t)
	tables := newTables(t, client)
	rec := &recorder{API: client}
	st := New(rec, tables)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	hash := strings.Repeat("ab", 32)
	sess := &escrow.Session{IDHash: hash, Principal: escrow.Principal{Subject: "alice"},
		AuthTime: testNow, Created: testNow, Expires: testNow.Add(8*time.Hour + 500*time.Millisecond)}
	if err := st.CreateSession(ctx, sess, escrow.NewAuditRecord(ctx, testNow, escrow.ActionSessionLogin, "")); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if err := st.DeleteSession(ctx, hash, escrow.NewAuditRecord(ctx, testNow.Add(time.Minute), escrow.ActionSessionLogout, "")); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if len(rec.puts) != 0 || len(rec.txns) != 2 {
		t.Fatalf("got %d PutItem calls and %d transactions, want 0 and 2", len(rec.puts), len(rec.txns))
	}
	for i, cond := range []string{condNotExists, condExists} {
		items := rec.txns[i].TransactItems
		if len(items) != 2 || items[1].Put == nil {
			t.Fatalf("transaction %d has %d items, want the session's and the audit put", i, len(items))
		}
		var table, gotCond string
		var k item
		if i == 0 {
			p := items[0].Put
			if p == nil {
				t.Fatal("the create does not put the session")
			}
			table, gotCond, k = aws.ToString(p.TableName), aws.ToString(p.ConditionExpression), p.Item
			dec := decoder{it: p.Item}
			if got, want := dec.num(ttlAttr), testNow.Add(32*time.Hour).Unix(); got != want || dec.err != nil {
				t.Errorf("ttl = %d (%v), want %d: Expires plus a day, in whole seconds", got, dec.err, want)
			}
		} else {
			d := items[0].Delete
			if d == nil {
				t.Fatal("the delete does not delete the session")
			}
			table, gotCond, k = aws.ToString(d.TableName), aws.ToString(d.ConditionExpression), d.Key
			if d.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
				t.Errorf("the delete asks for %q on a failed condition, want ALL_OLD", d.ReturnValuesOnConditionCheckFailure)
			}
		}
		dec := decoder{it: k}
		if table != tables.Main || dec.str("pk") != sessionPrefix+hash || dec.str("sk") != sessionSK {
			t.Errorf("transaction %d writes the session at %s %s/%s", i, table, dec.str("pk"), dec.str("sk"))
		}
		if gotCond != cond {
			t.Errorf("transaction %d: session condition %q, want %q", i, gotCond, cond)
		}
		audit := items[1].Put
		if aws.ToString(audit.TableName) != tables.Audit || aws.ToString(audit.ConditionExpression) != condNotExists {
			t.Errorf("transaction %d: second item goes to %s with condition %q, want the audit table with attribute_not_exists",
				i, aws.ToString(audit.TableName), aws.ToString(audit.ConditionExpression))
		}
	}

	if err := CreateTables(t.Context(), client, tables); err != nil {
		t.Fatalf("CreateTables (again): %v", err)
	}
	d, err := client.DescribeTimeToLive(t.Context(), &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(tables.Main)})
	if err != nil {
		t.Fatalf("DescribeTimeToLive: %v", err)
	}
	if ttl := d.TimeToLiveDescription; ttl == nil || ttl.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(ttl.AttributeName) != ttlAttr {
		t.Errorf("main table TTL = %+v, want enabled on %q", ttl, ttlAttr)
	}
}
