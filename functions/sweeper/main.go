// Command sweeper is the scheduled safety net (EventBridge Scheduler, every
// few minutes): it expires grants past their end, activates booked grants
// whose window has started and times out undecided requests, each with its
// audit record. Access never waits for it: grants are checked against the
// clock on every use. It only wires; the logic is access.Service.Sweep.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssfn "github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
	"github.com/escrow-pam/escrow/internal/workflow/sfn"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "sweeper: %v\n", err)
		os.Exit(1)
	}
}

// Result is what one sweep did: the access half's counts, and the
// checkouts'.
type Result struct {
	access.SweepResult
	Checkouts checkout.SweepResult `json:"checkouts"`
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
	// Checkouts: end those past their expiry the workflow missed, and hand
	// a stuck rotation to a fresh execution (this function cannot reach
	// the targets itself; the rotate function can).
	cc := checkout.Config{Store: store, Checkouts: store, Audit: store, Logger: logger}
	if arn := os.Getenv("CHECKOUT_STATE_MACHINE_ARN"); arn != "" {
		cc.Workflow = sfn.New(awssfn.NewFromConfig(cfg), arn)
	}
	co := checkout.New(cc)
	lambda.Start(func(ctx context.Context) (Result, error) {
		res, err := svc.Sweep(ctx)
		logger.InfoContext(ctx, "sweep", "activated", res.Activated, "expired", res.Expired,
			"timedOut", res.TimedOut, "conflicts", res.Conflicts, "err", err)
		cres, cerr := co.Sweep(ctx)
		logger.InfoContext(ctx, "checkout sweep", "expired", cres.Expired, "restarted", cres.Restarted, "err", cerr)
		return Result{SweepResult: res, Checkouts: cres}, errors.Join(err, cerr)
	})
	return nil
}
