package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/auditlog/digeststoretest"
	"github.com/escrow-pam/escrow/internal/auditlog/dir"
	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// One moto server serves the whole package, behind serialPuts; every test
// gets its own bucket on it, which is far cheaper than a server per test.
var (
	motoOnce  sync.Once
	motoSrv   *awstest.Moto
	motoProxy *httptest.Server
	motoDir   string
	motoErr   error
	bucketSeq atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if motoProxy != nil {
		motoProxy.Close()
	}
	if motoSrv != nil {
		motoSrv.Stop()
	}
	if motoDir != "" {
		os.RemoveAll(motoDir)
	}
	os.Exit(code)
}

// newClient returns an S3 client on the package's moto server, starting it
// on first use; it skips (or, under CI=true, fails) when moto is missing.
func newClient(tb testing.TB) *s3.Client {
	tb.Helper()
	if !awstest.Available() {
		awstest.Skip(tb)
	}
	motoOnce.Do(func() {
		motoDir, motoErr = os.MkdirTemp("", "escrow-s3-moto-")
		if motoErr == nil {
			motoSrv, motoErr = awstest.StartProcess(motoDir)
		}
		if motoErr == nil {
			var target *url.URL
			if target, motoErr = url.Parse(motoSrv.Endpoint); motoErr == nil {
				motoProxy = httptest.NewServer(&serialPuts{next: httputil.NewSingleHostReverseProxy(target)})
			}
		}
	})
	if motoErr != nil {
		tb.Fatalf("start moto: %v", motoErr)
	}
	cfg := motoSrv.MustConfig(tb)
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(motoProxy.URL)
		// moto serves every bucket on one host, so buckets go in the path.
		o.UsePathStyle = true
	})
}

// serialPuts passes requests to moto, one conditional PUT at a time. S3
// checks If-None-Match and stores the object atomically; moto 5.2.1 checks
// it, then stores, without a lock, so two racing conditional puts of one key
// can both succeed (seen in 5 of 2,000 runs of the conformance suite's race
// test). Serialising them here restores the guarantee the store relies on
// in S3. (The fix belongs in awstest's moto wrapper, beside its DynamoDB
// lock.)
type serialPuts struct {
	mu   sync.Mutex
	n    atomic.Int64 // conditional puts seen
	next http.Handler
}

func (s *serialPuts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" {
		s.n.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	s.next.ServeHTTP(w, r)
}

// newBucket creates a fresh bucket as production has it: Object Lock on,
// with a default retention of one day in compliance mode.
func newBucket(tb testing.TB, client *s3.Client) string {
	tb.Helper()
	ctx := context.Background()
	bucket := fmt.Sprintf("escrow-digests-%d", bucketSeq.Add(1))
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                     aws.String(bucket),
		ObjectLockEnabledForBucket: aws.Bool(true),
	}); err != nil {
		tb.Fatalf("CreateBucket: %v", err)
	}
	if _, err := client.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
		Bucket: aws.String(bucket),
		ObjectLockConfiguration: &types.ObjectLockConfiguration{
			ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{
				Mode: types.ObjectLockRetentionModeCompliance,
				Days: aws.Int32(1),
			}},
		},
	}); err != nil {
		tb.Fatalf("PutObjectLockConfiguration: %v", err)
	}
	return bucket
}

func TestConformance(t *testing.T) {
	client := newClient(t)
	before := motoProxy.Config.Handler.(*serialPuts).n.Load()
	t.Cleanup(func() { // after the parallel subtests
		if motoProxy.Config.Handler.(*serialPuts).n.Load() == before {
			t.Error("no conditional put reached serialPuts: the race test ran unguarded")
		}
	})
	digeststoretest.Run(t, func(t *testing.T) auditlog.DigestStore {
		return New(client, newBucket(t, client))
	})
}

// seal returns a chain of n empty hourly digests.
func seal(t *testing.T, n int) []*auditlog.SignedDigest {
	t.Helper()
	s, err := auditlog.NewSealer(auditlog.NewSigner([32]byte{1}), time.Hour, nil, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Advance(time.Date(2026, 1, 1, n, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawPut writes an object as a person with write access could, bypassing
// the store (with the checksum an Object Lock bucket requires).
func rawPut(t *testing.T, client *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket:            aws.String(bucket),
		Key:               aws.String(key),
		Body:              strings.NewReader(string(body)),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	}); err != nil {
		t.Fatalf("PutObject %s: %v", key, err)
	}
}

// TestObjectLock: a digest the store put carries the bucket's default
// compliance retention, and moto refuses to delete its version, even with
// the governance bypass. (moto 5.2.1 does not refuse shortening a
// compliance retention with PutObjectRetention, as S3 does, so that is not
// tested here.)
func TestObjectLock(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	bucket := newBucket(t, client)
	s := New(client, bucket)
	sd := seal(t, 1)[0]
	if err := s.Put(t.Context(), sd); err != nil {
		t.Fatal(err)
	}
	key := Key(sd.Seq)
	vs, err := client.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Versions) != 1 {
		t.Fatalf("%d versions of %s, want 1", len(vs.Versions), key)
	}
	version := vs.Versions[0].VersionId

	// HeadObject, not GetObjectRetention: moto 5.2.1 does not serve the
	// latter (it answers with the object).
	head, err := client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: version})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if head.ObjectLockMode != types.ObjectLockModeCompliance {
		t.Fatalf("lock mode %q, want COMPLIANCE", head.ObjectLockMode)
	}
	if until := aws.ToTime(head.ObjectLockRetainUntilDate); until.Before(time.Now().Add(23 * time.Hour)) {
		t.Errorf("retained until %v, want about a day from now", until)
	}

	for _, bypass := range []bool{false, true} {
		_, err := client.DeleteObject(t.Context(), &s3.DeleteObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), VersionId: version,
			BypassGovernanceRetention: aws.Bool(bypass),
		})
		if !isCode(err, "AccessDenied") {
			t.Fatalf("DeleteObject of a locked version (bypass %v) = %v, want AccessDenied", bypass, err)
		}
	}
	got, err := s.Latest(t.Context())
	if err != nil || got.Seq != sd.Seq {
		t.Fatalf("after the refused deletes, Latest = %v, %v", got, err)
	}
}

// TestKeys: keys sort as their Seqs do, parse back, and end in auditlog/dir's
// file name, so a copy of the prefix is a digest folder.
func TestKeys(t *testing.T) {
	t.Parallel()
	seqs := []int64{0, 1, 9, 10, 99, 100, 1 << 40, 1<<63 - 1}
	for i, seq := range seqs {
		k := Key(seq)
		if got, ok := parseKey(k); !ok || got != seq {
			t.Errorf("parseKey(%s) = %d, %v", k, got, ok)
		}
		if !strings.HasPrefix(k, Prefix) || path.Base(k) != dir.FileName(seq) {
			t.Errorf("Key(%d) = %s, want %s%s", seq, k, Prefix, dir.FileName(seq))
		}
		if i > 0 && Key(seqs[i-1]) >= k {
			t.Errorf("Key(%d) does not sort before Key(%d)", seqs[i-1], seq)
		}
	}
	if Key(42) != "digests/0000000000000000042.json" {
		t.Errorf("Key(42) = %s", Key(42))
	}
	for _, key := range []string{"digests/1.json", "digests/000000000000000000a.json", "0000000000000000001.json",
		"digests/0000000000000000001.json.tmp", "digests/9999999999999999999.json", "digests/x/0000000000000000001.json", "other/0000000000000000001.json"} {
		if seq, ok := parseKey(key); ok {
			t.Errorf("parseKey(%q) = %d, want not a digest key", key, seq)
		}
	}
}

// TestHostileObjects: objects that are not digests, or not the digest their
// key says, are errors (or ignored, for keys that are not digest keys),
// never panics or wrong answers.
func TestHostileObjects(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	chain := seal(t, 2)
	good, err := chain[1].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		content []byte
		wantErr bool
	}{
		{"garbage", Key(1), []byte("\x00\xffnot json"), true},
		{"empty", Key(1), nil, true},
		{"digest under another seq's key", Key(7), good, true},
		{"not canonical", Key(1), append([]byte(" "), good...), true},
		{"stray object", Prefix + "notes.txt", []byte("hello"), false},
		{"deeper folder", Prefix + "old/" + dir.FileName(9), good, false},
		{"outside the prefix", dir.FileName(9), good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bucket := newBucket(t, client)
			s := New(client, bucket)
			if err := s.Put(t.Context(), chain[0]); err != nil {
				t.Fatal(err)
			}
			rawPut(t, client, bucket, tt.key, tt.content)
			got, err := s.Latest(t.Context())
			if tt.wantErr {
				if !errors.Is(err, auditlog.ErrMalformed) {
					t.Fatalf("Latest = %v, %v; want ErrMalformed", got, err)
				}
			} else if err != nil || got.Seq != 0 {
				t.Fatalf("Latest = %v, %v; want digest 0", got, err)
			}
			_, err = s.Range(t.Context(), time.Time{}, time.Time{})
			if tt.wantErr != (err != nil) {
				t.Fatalf("Range error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestManyPages: Latest and Range page through more than one listing page.
func TestManyPages(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	s := New(client, newBucket(t, client))
	chain := seal(t, 1003)
	var wg sync.WaitGroup
	errs := make(chan error, len(chain))
	sem := make(chan struct{}, 16)
	for _, sd := range chain {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- s.Put(context.WithoutCancel(t.Context()), sd)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Latest(t.Context())
	if err != nil || got.Seq != 1002 {
		t.Fatalf("Latest = %v, %v; want digest 1002", got, err)
	}
	from := chain[1000].From.Add(time.Minute)
	r, err := s.Range(t.Context(), from, chain[1002].To)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, sd := range r {
		seqs = append(seqs, sd.Seq)
	}
	if !slices.Equal(seqs, []int64{1000, 1001, 1002}) {
		t.Fatalf("Range = %v, want [1000 1001 1002]", seqs)
	}
}

// TestMissingBucket: a bucket that does not exist reads as an unavailable,
// misconfigured store on every path.
func TestMissingBucket(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	s := New(client, "escrow-no-such-bucket")
	checks := map[string]error{
		"Put": s.Put(t.Context(), seal(t, 1)[0]),
	}
	_, checks["Latest"] = s.Latest(t.Context())
	_, checks["Range"] = s.Range(t.Context(), time.Time{}, time.Time{})
	for op, err := range checks {
		if !errors.Is(err, escrow.ErrUnavailable) || !strings.Contains(err.Error(), "misconfigured") {
			t.Errorf("%s on a missing bucket = %v, want ErrUnavailable naming a misconfiguration", op, err)
		}
	}
}
