// Package s3store is the Amazon S3 adapter of auditlog.DigestStore: one
// object per signed digest, in a bucket with S3 Object Lock in compliance
// mode and a default retention, so that for the retention period no one,
// the root user included, can change or delete a stored digest version.
//
// Key format: Prefix + the Seq in 19 zero-padded decimal digits + ".json",
// e.g. "digests/0000000000000000042.json". 19 digits hold every
// non-negative int64, so lexical order (the order ListObjectsV2 returns) is
// Seq order. The base name is exactly auditlog/dir's file name, so a copy of
// the prefix (`aws s3 cp --recursive s3://BUCKET/digests/ DIR`) is a folder
// that auditlog/dir, and so `escrow audit verify`, reads as it is. The key
// holds the Seq only: a digest's period cannot be in it, because the key is
// what makes Put write-once per Seq (two digests with Seq 0 but different
// periods must collide on one key).
//
// Put is write-once through a conditional PutObject (If-None-Match: *): S3
// itself refuses the second write of a key, atomically, so racing writers
// need no lock. Object Lock keeps every version that was ever written; the
// listing (current versions only) is the truth for Latest and Range, and a
// version hidden by a delete marker leaves a gap that auditlog.Verify
// reports. The bucket's IAM and bucket policies should therefore grant
// writers s3:PutObject only (and may require the s3:if-none-match condition
// key), and deny s3:DeleteObject, s3:PutObjectRetention and
// s3:PutBucketObjectLockConfiguration to every role.
//
// The adapter must never overwrite or delete an object, nor send any
// Object Lock or retention setting of its own (the bucket's default
// applies). It trusts nothing it reads: every object goes through
// auditlog.ParseSignedDigest, and must hold the Seq its key names;
// signatures are checked by auditlog.Verify, not here.
//
// IAM actions used: s3:PutObject, s3:GetObject, s3:ListBucket.
package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/escrow"
)

const (
	// Prefix is where the digests live in the bucket.
	Prefix = "digests/"

	seqDigits = 19
	keySuffix = ".json"
	// maxObjectSize bounds what a (possibly hostile) object may make Latest
	// or Range read into memory, as auditlog/dir bounds its files.
	maxObjectSize = 1 << 30
	// putAttempts bounds the retries of a conditional put that S3 answered
	// with 409 ConditionalRequestConflict (another write of the key was in
	// flight): a retry then gets 412 if that write landed, or stores ours if
	// it did not, so a 409 never reads as "stored" when nothing was.
	putAttempts = 3
	// conflictBackoff, times the attempt, is the wait before such a retry.
	conflictBackoff = 50 * time.Millisecond
)

// API is the part of *s3.Client the store uses. Keeping it narrow lets a
// unit test fake one call, and documents which IAM actions the store needs.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Store keeps digests in one S3 bucket, under Prefix. It is safe for
// concurrent use.
type Store struct {
	client API
	bucket string
}

var _ auditlog.DigestStore = (*Store)(nil)

// New returns the store in bucket. The bucket must have Object Lock enabled
// with a default retention rule (compliance mode in production): the store
// sends no retention of its own.
func New(client API, bucket string) *Store {
	return &Store{client: client, bucket: bucket}
}

// Key returns the object key of the digest with seq.
func Key(seq int64) string {
	return fmt.Sprintf("%s%0*d%s", Prefix, seqDigits, seq, keySuffix)
}

// parseKey returns the Seq a digest key holds, or false for any other key
// (objects a person left under the prefix).
func parseKey(key string) (int64, bool) {
	digits, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, keySuffix); !ok || len(digits) != seqDigits {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	return seq, err == nil
}

// Put stores sd as Key(sd.Seq), write-once. See auditlog.DigestStore.
//
// The SHA-256 checksum it sends is required: S3 refuses a PutObject without
// an integrity checksum (Content-MD5 or x-amz-checksum-*) into a bucket with
// Object Lock.
func (s *Store) Put(ctx context.Context, sd *auditlog.SignedDigest) error {
	if sd == nil {
		return escrow.Errorf(escrow.CodeInvalid, "nil digest")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := sd.Marshal()
	if err != nil {
		return escrow.Wrap(escrow.CodeInvalid, err, "digest cannot be encoded")
	}
	key := Key(sd.Seq)
	for attempt := 1; ; attempt++ {
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:            aws.String(s.bucket),
			Key:               aws.String(key),
			Body:              bytes.NewReader(b),
			ContentLength:     aws.Int64(int64(len(b))),
			ContentType:       aws.String("application/json"),
			IfNoneMatch:       aws.String("*"),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		})
		if err == nil || !isCode(err, codeConditionalRequestConflict) || attempt == putAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return convertError(fmt.Sprintf("put digest %d", sd.Seq), ctx.Err())
		case <-time.After(time.Duration(attempt) * conflictBackoff):
		}
	}
	return convertError(fmt.Sprintf("put digest %d", sd.Seq), err)
}

// seqs lists the Seqs of the stored digests, ascending, one ListObjectsV2
// call per 1,000 digests.
func (s *Store) seqs(ctx context.Context) ([]int64, error) {
	var seqs []int64
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(Prefix),
		// Keys under a deeper "folder" are not digests: leave them out.
		Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, convertError("list digests", err)
		}
		for _, o := range page.Contents {
			if seq, ok := parseKey(aws.ToString(o.Key)); ok {
				seqs = append(seqs, seq)
			}
		}
	}
	// S3 lists keys in UTF-8 binary order and digest keys differ only in
	// fixed-width digits, so seqs is sorted already.
	return seqs, nil
}

// read gets and parses the digest of seq, and checks it holds that Seq.
func (s *Store) read(ctx context.Context, seq int64) (*auditlog.SignedDigest, error) {
	key := Key(seq)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, convertError("get "+key, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > maxObjectSize {
		return nil, fmt.Errorf("read %s: %w: object of %d bytes, more than %d", key, auditlog.ErrMalformed, n, maxObjectSize)
	}
	b, err := io.ReadAll(io.LimitReader(out.Body, maxObjectSize+1))
	if err != nil {
		// The body broke off or failed the SDK's checksum check: a
		// transport failure, whatever the error's type.
		return nil, escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("read %s: %w", key, err), msgUnavailable)
	}
	if len(b) > maxObjectSize {
		return nil, fmt.Errorf("read %s: %w: object larger than %d bytes", key, auditlog.ErrMalformed, maxObjectSize)
	}
	sd, err := auditlog.ParseSignedDigest(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if sd.Seq != seq {
		return nil, fmt.Errorf("read %s: %w: object holds digest %d", key, auditlog.ErrMalformed, sd.Seq)
	}
	return sd, nil
}

// Latest lists every digest key and reads only the last. See
// auditlog.DigestStore.
func (s *Store) Latest(ctx context.Context) (*auditlog.SignedDigest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seqs, err := s.seqs(ctx)
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, escrow.Errorf(escrow.CodeNotFound, "no audit digest")
	}
	return s.read(ctx, seqs[len(seqs)-1])
}

// Range lists the digest keys, finds the first digest that ends after from
// by binary search over them (digests of one chain have periods in Seq
// order), then reads forward until a digest starts at or after to. It so
// reads about log2(n) digests besides those it returns, plus one past the
// end. See auditlog.DigestStore.
func (s *Store) Range(ctx context.Context, from, to time.Time) ([]*auditlog.SignedDigest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seqs, err := s.seqs(ctx)
	if err != nil {
		return nil, err
	}
	return auditlog.RangeOf(ctx, len(seqs), func(i int) (*auditlog.SignedDigest, error) { return s.read(ctx, seqs[i]) }, from, to)
}
