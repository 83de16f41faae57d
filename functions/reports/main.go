// Command reports is run every hour by EventBridge Scheduler: it runs each
// report schedule whose window has ended and mails its CSV through SESv2.
// It only wires; the logic is package reportsched, the same code the -dev
// server's ticker runs.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/notify/ses"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "reports: %v\n", err)
		os.Exit(1)
	}
}

// Result is what one tick did.
type Result struct {
	Sent int `json:"sent"`
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var missing []string
	for _, k := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME", "MAIL_FROM"} {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing environment variables %v", missing)
	}
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: os.Getenv("TABLE_NAME"), Audit: os.Getenv("AUDIT_TABLE_NAME")})
	svc := reportsched.New(reportsched.Config{
		Reports: report.New(report.Config{Store: store, Requests: store, Audit: store, Logger: logger}),
		Store:   store, Audit: store, Logger: logger,
		Notifier: ses.New(sesv2.NewFromConfig(cfg), os.Getenv("MAIL_FROM"), os.Getenv("SES_CONFIGURATION_SET")),
	})
	lambda.Start(func(ctx context.Context) (Result, error) {
		n, err := svc.RunDue(ctx)
		logger.InfoContext(ctx, "scheduled reports", "sent", n, "err", err)
		return Result{Sent: n}, err
	})
	return nil
}
