// Command rotate runs the checkout state machine's Rotate and PostHooks
// states: it is the one function that reaches the rotation targets
// (databases, directories, hosts, webhooks), so template.yaml can put it in
// the targets' VPC. It only wires; the logic is in packages checkout and
// rotation, the same code `escrow server -dev` runs.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/qlock"
	"github.com/escrow-pam/escrow/internal/rotate/targets"
	"github.com/escrow-pam/escrow/internal/rotation"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
	"github.com/escrow-pam/escrow/internal/tasks"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "rotate: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	for _, k := range []string{"TABLE_NAME", "AUDIT_TABLE_NAME", "KMS_KEY_ID"} {
		if os.Getenv(k) == "" {
			return fmt.Errorf("missing environment variable %s", k)
		}
	}
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: os.Getenv("TABLE_NAME"), Audit: os.Getenv("AUDIT_TABLE_NAME")})
	keys := kms.New(awskms.NewFromConfig(cfg), os.Getenv("KMS_KEY_ID"))
	rot := rotation.New(rotation.Config{Store: store, Audit: store, Keys: keys, Targets: targets.All(),
		Sealer: qlock.Sealer{}, QLockKeys: store, Logger: logger})
	co := checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys,
		Hooks: hook.New(nil, nil), Rotator: rot, Logger: logger})
	lambda.Start((&tasks.Handler{Checkout: co}).ForLambda())
	return nil
}
