// Command audit-stream consumes the audit table's DynamoDB stream: it
// exports each new record to the SIEM bus (EventBridge, when EVENT_BUS_NAME
// is set) and seals every ended period of the log into a signed digest in
// the Object Lock bucket. An hourly schedule invokes it too, so a quiet
// log is still sealed. It only wires; the logic is package auditfeed, the
// same code `escrow server -dev` runs.
//
// The audit table is append-only: a MODIFY or REMOVE on its stream is an
// alarm, and fails the batch (bisected to the offending record and sent to
// the dead-letter queue by the event source mapping).
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awseb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/escrow-pam/escrow/internal/auditfeed"
	"github.com/escrow-pam/escrow/internal/auditlog"
	s3store "github.com/escrow-pam/escrow/internal/auditlog/s3"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/siem/eventbridge"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "audit-stream: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var missing []string
	for _, k := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME", "DIGEST_BUCKET", "AUDIT_SIGNING_KEY"} {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing environment variables %v", missing)
	}
	seed, err := hex.DecodeString(os.Getenv("AUDIT_SIGNING_KEY"))
	if err != nil || len(seed) != 32 {
		return fmt.Errorf("AUDIT_SIGNING_KEY must be 64 hex digits (a 32-byte seed)")
	}
	period := time.Hour
	if p := os.Getenv("DIGEST_PERIOD"); p != "" {
		if period, err = time.ParseDuration(p); err != nil || period < time.Minute {
			return fmt.Errorf("DIGEST_PERIOD %q must be a duration of at least 1m", p)
		}
	}
	// The first digest starts here: before it the log is empty on a new
	// stack, and the table's day partitions need not be walked further.
	genesis := time.Now().UTC().Add(-7 * 24 * time.Hour).Truncate(period)
	if g := os.Getenv("AUDIT_GENESIS"); g != "" {
		if genesis, err = time.Parse(time.RFC3339, g); err != nil {
			return fmt.Errorf("AUDIT_GENESIS %q must be an RFC 3339 time", g)
		}
	}
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: os.Getenv("TABLE_NAME"), Audit: os.Getenv("AUDIT_TABLE_NAME")})
	c := &auditfeed.Consumer{Digester: &auditfeed.Digester{Log: store,
		Store: s3store.New(awss3.NewFromConfig(cfg, func(o *awss3.Options) {
			// Emulators (moto, LocalStack) serve buckets by path.
			o.UsePathStyle = os.Getenv("AWS_S3_USE_PATH_STYLE") == "true"
		}), os.Getenv("DIGEST_BUCKET")),
		Signer: auditlog.NewSigner([32]byte(seed)), Period: period, Grace: 2 * time.Minute, Genesis: genesis,
		Clock: escrow.SystemClock{}, Logger: logger}}
	clear(seed)
	if bus := os.Getenv("EVENT_BUS_NAME"); bus != "" {
		c.Sink = eventbridge.New(awseb.NewFromConfig(cfg), eventbridge.Options{EventBus: bus, Logger: logger})
	}
	lambda.Start(handler(c))
	return nil
}

// handler takes a stream batch (or the schedule's event: any payload
// without Records).
func handler(c *auditfeed.Consumer) func(context.Context, json.RawMessage) error {
	return func(ctx context.Context, payload json.RawMessage) error {
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		recs, err := Records(ev)
		if err != nil {
			return err
		}
		return c.Records(ctx, recs)
	}
}
