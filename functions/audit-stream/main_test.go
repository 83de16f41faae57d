package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/escrow-pam/escrow/internal/auditlog"
	s3store "github.com/escrow-pam/escrow/internal/auditlog/s3"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/lambdatest"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

var update = flag.Bool("update", false, "rewrite the stream fixtures")

// fixtureRecords are the two records of testdata/insert.json.
func fixtureRecords() []*escrow.AuditRecord {
	at := time.Date(2026, 12, 6, 9, 15, 0, 123456789, time.UTC)
	return []*escrow.AuditRecord{
		{ID: "01KBV3N0ZV0000000000000001", Time: at, Actor: escrow.Actor{Subject: "alice", Email: "alice@example.com", Groups: []string{"engineering"}},
			Action: escrow.ActionSecretReveal, SecretID: "01KBV3MZZZ0000000000000009", Target: "secret:01KBV3MZZZ0000000000000009",
			Outcome: escrow.OutcomeSuccess, RequestID: "req-1", SourceIP: "192.0.2.10", UserAgent: "escrow-cli/1",
			Comment: "CHG0012345 restore", Ticket: "CHG0012345", Details: map[string]string{"path": "/prod/db/pg", "version": "3"}},
		{ID: "01KBV3N1000000000000000002", Time: at.Add(time.Second), Actor: escrow.Actor{Subject: "bob"},
			Action: escrow.ActionCheckout, Outcome: escrow.OutcomeDenied, ErrorCode: escrow.CodeForbidden,
			Reason: "you need view permission", Target: "secret:x", SecretID: "x"},
	}
}

// streamEvent is a DynamoDB stream event of eventName records whose images
// are the items the store writes for recs.
func streamEvent(eventName string, recs []*escrow.AuditRecord) events.DynamoDBEvent {
	var ev events.DynamoDBEvent
	for i, r := range recs {
		img := toStream(dynamo.AuditItem(r))
		ev.Records = append(ev.Records, events.DynamoDBEventRecord{
			AWSRegion: "eu-west-1", EventID: fmt.Sprintf("event-%d", i+1), EventName: eventName,
			EventSource: "aws:dynamodb", EventVersion: "1.1",
			EventSourceArn: "arn:aws:dynamodb:eu-west-1:123456789012:table/escrow-audit/stream/2026-12-06T00:00:00.000",
			Change: events.DynamoDBStreamRecord{
				ApproximateCreationDateTime: events.SecondsEpochTime{Time: r.Time.Truncate(time.Second)},
				Keys:                        map[string]events.DynamoDBAttributeValue{"pk": img["pk"], "sk": img["sk"]},
				NewImage:                    img, SequenceNumber: fmt.Sprintf("%021d", i+1), SizeBytes: 512,
				StreamViewType: "NEW_IMAGE",
			},
		})
	}
	return ev
}

// toStream converts SDK attribute values to the stream's.
func toStream(it map[string]types.AttributeValue) map[string]events.DynamoDBAttributeValue {
	out := map[string]events.DynamoDBAttributeValue{}
	for k, v := range it {
		out[k] = toStreamValue(v)
	}
	return out
}

func toStreamValue(v types.AttributeValue) events.DynamoDBAttributeValue {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return events.NewStringAttribute(v.Value)
	case *types.AttributeValueMemberN:
		return events.NewNumberAttribute(v.Value)
	case *types.AttributeValueMemberBOOL:
		return events.NewBooleanAttribute(v.Value)
	case *types.AttributeValueMemberSS:
		return events.NewStringSetAttribute(v.Value)
	case *types.AttributeValueMemberL:
		var l []events.DynamoDBAttributeValue
		for _, e := range v.Value {
			l = append(l, toStreamValue(e))
		}
		return events.NewListAttribute(l)
	case *types.AttributeValueMemberM:
		return events.NewMapAttribute(toStream(v.Value))
	case *types.AttributeValueMemberB:
		return events.NewBinaryAttribute(v.Value)
	}
	panic(fmt.Sprintf("attribute type %T", v))
}

func fixture(t *testing.T, name string, ev events.DynamoDBEvent) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		b, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	return b
}

// TestStreamFixtures: the recorded INSERT batch decodes to exactly the
// records the store wrote, field for field; the fixture round-trips
// through aws-lambda-go's type; a MODIFY or REMOVE is an alarm.
func TestStreamFixtures(t *testing.T) {
	want := fixtureRecords()
	raw := fixture(t, "insert.json", streamEvent("INSERT", want))
	var ev events.DynamoDBEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	got, err := Records(ev)
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("decoded\n%s\nwant\n%s", gj, wj)
	}
	for _, name := range []string{"MODIFY", "REMOVE"} {
		if _, err := Records(streamEvent(name, want[:1])); err == nil || !strings.Contains(err.Error(), "ALERT: "+name) {
			t.Errorf("%s: %v, want an alarm", name, err)
		}
	}
}

// TestBootstrapSealsFromTheStream runs the real bootstrap on moto: records
// written two hours ago, then the stream batch of them, are sealed into
// digests in an Object Lock bucket, which verify clean against the log; a
// redelivered batch changes nothing; a MODIFY fails the batch.
func TestBootstrapSealsFromTheStream(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	if err := dynamo.CreateTables(t.Context(), dynamodb.NewFromConfig(cfg), tables); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	s3c := awss3.NewFromConfig(cfg, func(o *awss3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(t.Context(), &awss3.CreateBucketInput{Bucket: aws.String("digests"), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObjectLockConfiguration(t.Context(), &awss3.PutObjectLockConfigurationInput{Bucket: aws.String("digests"),
		ObjectLockConfiguration: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}}}}); err != nil {
		t.Fatal(err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), tables)
	var recs []*escrow.AuditRecord
	base := time.Now().UTC().Add(-2 * time.Hour)
	for i := range 5 {
		at := base.Add(time.Duration(i) * 7 * time.Minute)
		r := &escrow.AuditRecord{ID: escrow.NewID(at), Time: at, Actor: escrow.Actor{Subject: "alice"},
			Action: escrow.ActionSecretReveal, SecretID: "s1", Target: "secret:s1", Outcome: escrow.OutcomeSuccess}
		if err := store.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	seed := bytes.Repeat([]byte{0x42}, 32)
	bin := lambdatest.Build(t, ".")
	rt := lambdatest.NewRuntime(t)
	env := append(rt.Env(), "AWS_ENDPOINT_URL="+m.Endpoint, "AWS_S3_USE_PATH_STYLE=true", "TABLE_NAME="+tables.Main,
		"AUDIT_TABLE_NAME="+tables.Audit, "DIGEST_BUCKET=digests", "AUDIT_SIGNING_KEY="+hex.EncodeToString(seed), "DIGEST_PERIOD=30m",
		"AUDIT_GENESIS="+base.Add(-time.Hour).Truncate(30*time.Minute).Format(time.RFC3339))
	fn := lambdatest.Start(t, bin, env)

	batch, _ := json.Marshal(streamEvent("INSERT", recs))
	if out := rt.Invoke(t, fn, batch); out.Failed {
		t.Fatalf("batch: %s %s", out.ErrorType, out.ErrorMessage)
	}
	digests := s3store.New(s3c, "digests")
	ds, err := digests.Range(t.Context(), time.Time{}, time.Time{})
	if err != nil || len(ds) == 0 {
		t.Fatalf("digests after the batch: %d %v", len(ds), err)
	}
	sealed := 0
	for _, d := range ds {
		sealed += d.Count
	}
	if sealed != 5 {
		t.Fatalf("%d records sealed, want 5", sealed)
	}
	keys := auditlog.NewSigner([32]byte(seed)).PublicKeys()
	seq := iter.Seq2[*escrow.AuditRecord, error](func(yield func(*escrow.AuditRecord, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	})
	rep, err := auditlog.Verify(t.Context(), seq, ds, keys)
	if err != nil || !rep.Clean() || rep.Records != 5 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Redelivered, and the hourly schedule's event: nothing new.
	for _, ev := range [][]byte{batch, fixtureEvent(t, "scheduled-event.json")} {
		if out := rt.Invoke(t, fn, ev); out.Failed {
			t.Fatalf("again: %s %s", out.ErrorType, out.ErrorMessage)
		}
	}
	again, _ := digests.Range(t.Context(), time.Time{}, time.Time{})
	if len(again) != len(ds) {
		t.Fatalf("%d digests after a redelivery, want %d", len(again), len(ds))
	}
	mod, _ := json.Marshal(streamEvent("MODIFY", recs[:1]))
	if out := rt.Invoke(t, fn, mod); !out.Failed || !strings.Contains(out.ErrorMessage, "ALERT: MODIFY") {
		t.Fatalf("MODIFY: %+v", out)
	}
}

func fixtureEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBootstrapFailsWithoutConfig: a misconfigured function exits naming
// what is missing, before it takes any invocation.
func TestBootstrapFailsWithoutConfig(t *testing.T) {
	bin := lambdatest.Build(t, ".")
	for _, tc := range []struct {
		env     []string
		missing string
	}{
		{nil, "DIGEST_BUCKET"},
		{[]string{"TABLE_NAME=t", "AUDIT_TABLE_NAME=a", "DIGEST_BUCKET=b", "AUDIT_SIGNING_KEY=zz"}, "AUDIT_SIGNING_KEY must be 64 hex digits"},
	} {
		rt := lambdatest.NewRuntime(t)
		fn := lambdatest.Start(t, bin, append(rt.Env(), tc.env...))
		if code := fn.ExitCode(t); code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		if stderr := string(fn.Stderr(t)); !strings.Contains(stderr, tc.missing) {
			t.Errorf("stderr does not say %q:\n%s", tc.missing, stderr)
		}
		if n := rt.NextCalls(); n != 0 {
			t.Errorf("asked for %d invocations before failing", n)
		}
	}
}

func TestDeployBinaryIsStaticARM64(t *testing.T) {
	size := lambdatest.AssertDeployBinary(t, lambdatest.BuildARM64(t, "."))
	t.Logf("stripped linux/arm64 bootstrap: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
}

// TestMotoStreamDecodes: records written through the store are read back
// from moto's real DynamoDB stream, converted as Lambda delivers them, and
// decode to the records written, field for field.
func TestMotoStreamDecodes(t *testing.T) {
	m := awstest.Start(t)
	cfg := m.MustConfig(t)
	tables := dynamo.Tables{Main: "escrow-main", Audit: "escrow-audit"}
	ddb := dynamodb.NewFromConfig(cfg)
	if err := dynamo.CreateTables(t.Context(), ddb, tables); err != nil {
		t.Fatal(err)
	}
	store := dynamo.New(ddb, tables)
	want := fixtureRecords()
	now := time.Now().UTC()
	for i, r := range want {
		r.Time = now.Add(time.Duration(i) * time.Millisecond)
		r.ID = escrow.NewID(r.Time)
		if err := store.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	desc, err := ddb.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(tables.Audit)})
	if err != nil || desc.Table.LatestStreamArn == nil {
		t.Fatalf("the audit table has no stream: %v", err)
	}
	streams := dynamodbstreams.NewFromConfig(cfg)
	sd, err := streams.DescribeStream(t.Context(), &dynamodbstreams.DescribeStreamInput{StreamArn: desc.Table.LatestStreamArn})
	if err != nil {
		t.Fatal(err)
	}
	var ev events.DynamoDBEvent
	for _, sh := range sd.StreamDescription.Shards {
		it, err := streams.GetShardIterator(t.Context(), &dynamodbstreams.GetShardIteratorInput{StreamArn: desc.Table.LatestStreamArn,
			ShardId: sh.ShardId, ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		out, err := streams.GetRecords(t.Context(), &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records {
			img := map[string]types.AttributeValue{}
			for k, v := range r.Dynamodb.NewImage {
				img[k] = fromStreamType(v)
			}
			ev.Records = append(ev.Records, events.DynamoDBEventRecord{EventName: string(r.EventName), EventID: aws.ToString(r.EventID),
				Change: events.DynamoDBStreamRecord{NewImage: toStream(img)}})
		}
	}
	got, err := Records(ev)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b *escrow.AuditRecord) int { return strings.Compare(a.ID, b.ID) })
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("from moto's stream\n%s\nwant\n%s", gj, wj)
	}
}

// fromStreamType converts the streams API's attribute values to DynamoDB's.
func fromStreamType(v streamtypes.AttributeValue) types.AttributeValue {
	switch v := v.(type) {
	case *streamtypes.AttributeValueMemberS:
		return &types.AttributeValueMemberS{Value: v.Value}
	case *streamtypes.AttributeValueMemberN:
		return &types.AttributeValueMemberN{Value: v.Value}
	case *streamtypes.AttributeValueMemberBOOL:
		return &types.AttributeValueMemberBOOL{Value: v.Value}
	case *streamtypes.AttributeValueMemberSS:
		return &types.AttributeValueMemberSS{Value: v.Value}
	case *streamtypes.AttributeValueMemberB:
		return &types.AttributeValueMemberB{Value: v.Value}
	case *streamtypes.AttributeValueMemberL:
		var l []types.AttributeValue
		for _, e := range v.Value {
			l = append(l, fromStreamType(e))
		}
		return &types.AttributeValueMemberL{Value: l}
	case *streamtypes.AttributeValueMemberM:
		m := map[string]types.AttributeValue{}
		for k, e := range v.Value {
			m[k] = fromStreamType(e)
		}
		return &types.AttributeValueMemberM{Value: m}
	}
	panic(fmt.Sprintf("stream attribute type %T", v))
}
