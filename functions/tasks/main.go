// Command tasks serves the Task states of the Step Functions state machines
// (statemachines/*.asl.json): the payload's "task" field picks the handler
// in package tasks, the same one the embedded ASL runner calls in -dev. It
// only wires.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	awssfn "github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/notify/ses"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
	"github.com/escrow-pam/escrow/internal/tasks"
	"github.com/escrow-pam/escrow/internal/workflow/sfn"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "tasks: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	for _, k := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME"} {
		if os.Getenv(k) == "" {
			return fmt.Errorf("missing environment variable %s", k)
		}
	}
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: os.Getenv("TABLE_NAME"), Audit: os.Getenv("AUDIT_TABLE_NAME")})
	ac := access.Config{Store: store, Requests: store, Audit: store, Logger: logger, PublicURL: os.Getenv("PUBLIC_URL"),
		// Only to answer a token when the decision came first: no ARN
		// needed (and none can be given: the machine refers to this function).
		Workflow: sfn.New(awssfn.NewFromConfig(cfg), "")}
	if from := os.Getenv("MAIL_FROM"); from != "" {
		ac.Notifier = ses.New(sesv2.NewFromConfig(cfg), from, os.Getenv("SES_CONFIGURATION_SET"))
	}
	// The checkout tasks that need no network path to the targets run
	// here (await, expiry, rotation-failed, release); rotate and
	// post-hooks run in the rotate function.
	// No keys: none of these tasks reads a secret value.
	co := checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store,
		Workflow: sfn.New(awssfn.NewFromConfig(cfg), ""), Logger: logger})
	h := &tasks.Handler{Access: access.New(ac), Checkout: co}
	lambda.Start(h.ForLambda())
	return nil
}
