// Command sweeper is the scheduled safety net (EventBridge Scheduler, every
// few minutes): it expires grants past their end, activates booked grants
// whose window has started and times out undecided requests, each with its
// audit record. Access never waits for it: grants are checked against the
// clock on every use. It only wires; the logic is access.Service.Sweep.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "sweeper: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	table, audit := os.Getenv("TABLE_NAME"), os.Getenv("AUDIT_TABLE_NAME")
	if table == "" || audit == "" {
		return fmt.Errorf("missing environment variables TABLE_NAME and/or AUDIT_TABLE_NAME")
	}
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: table, Audit: audit})
	svc := access.New(access.Config{Store: store, Requests: store, Audit: store, Logger: logger})
	lambda.Start(func(ctx context.Context) (access.SweepResult, error) {
		res, err := svc.Sweep(ctx)
		logger.InfoContext(ctx, "sweep", "activated", res.Activated, "expired", res.Expired,
			"timedOut", res.TimedOut, "conflicts", res.Conflicts, "err", err)
		return res, err
	})
	return nil
}
