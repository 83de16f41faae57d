// Command api is the Lambda function behind the HTTP API: every REST route,
// served by the same http.Handler that `escrow server` runs locally, wired to
// the DynamoDB store and KMS keys. It only wires; it must hold no logic of
// its own and never log a request or response body.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	awssfn "github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/directory/static"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/lambdaenv"
	"github.com/escrow-pam/escrow/internal/notify/ses"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
	"github.com/escrow-pam/escrow/internal/ticket/adapters"
	"github.com/escrow-pam/escrow/internal/ticketing"
	"github.com/escrow-pam/escrow/internal/web"
	"github.com/escrow-pam/escrow/internal/workflow/sfn"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "api: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	env, err := requireEnv("TABLE_NAME", "AUDIT_TABLE_NAME", "KMS_KEY_ID", "OIDC_ISSUER", "OIDC_AUDIENCE")
	if err != nil {
		return err
	}
	// lambdaenv honours AWS_ENDPOINT_URL, which points tests at moto.
	cfg, err := lambdaenv.Config(ctx)
	if err != nil {
		return fmt.Errorf("load aws config: %w", err)
	}
	// API Gateway's JWT authorizer checks the token too; verifying it again
	// here keeps the handler safe if a route is ever left without one.
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer: env["OIDC_ISSUER"], Audience: env["OIDC_AUDIENCE"], JWKSURL: os.Getenv("OIDC_JWKS_URL"),
		Clock: escrow.SystemClock{}, GroupsClaim: os.Getenv("OIDC_GROUPS_CLAIM"), RolesClaim: os.Getenv("OIDC_ROLES_CLAIM"),
	})
	if err != nil {
		return fmt.Errorf("new verifier: %w", err)
	}
	store := dynamo.New(dynamodb.NewFromConfig(cfg), dynamo.Tables{Main: env["TABLE_NAME"], Audit: env["AUDIT_TABLE_NAME"]})
	keys := kms.New(awskms.NewFromConfig(cfg), env["KMS_KEY_ID"])
	svc := secrets.New(secrets.Config{
		Store: store, Audit: store, Grants: store, Checkouts: store, QLockKeys: store, Keys: keys,
		Clock: escrow.SystemClock{}, Logger: logger,
	})
	tix := ticketing.New(ticketing.Config{Systems: store, Store: store, Keys: keys, Audit: store,
		Factory: adapters.Factory(nil, logger), Logger: logger})
	ac := access.Config{Store: store, Requests: store, Audit: store, Logger: logger, PublicURL: os.Getenv("PUBLIC_URL"), Tickets: tix}
	if err := optional(cfg, &ac); err != nil {
		return err
	}
	acc := access.New(ac)
	// Checkout locks, pre-checkout hooks and check-ins run here; the
	// rotation itself runs in the rotate function, started by the checkout
	// state machine (CHECKOUT_STATE_MACHINE_ARN).
	cc := checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys, Grants: store,
		Hooks: hook.New(nil, nil), Tickets: tix, Logger: logger}
	if arn := os.Getenv("CHECKOUT_STATE_MACHINE_ARN"); arn != "" {
		cc.Workflow = sfn.New(awssfn.NewFromConfig(cfg), arn)
	}
	reports := report.New(report.Config{Store: store, Requests: store, Audit: store, Logger: logger})
	// Schedules are defined here; the reports function mails them.
	schedules := reportsched.New(reportsched.Config{Reports: reports, Store: store, Audit: store, Logger: logger})
	co := checkout.New(cc)
	console, err := newConsole(env, verifier, web.Config{Secrets: svc, Access: acc, Checkout: co, Reports: reports, Sessions: store, Logger: logger})
	if err != nil {
		return err
	}
	h := httpapi.New(httpapi.Config{Secrets: svc, Access: acc, Tickets: tix, Checkout: co, Auth: verifier, Logger: logger,
		Reports: reports, Schedules: schedules, Web: console})
	lambda.Start(httpadapter.NewV2(h).ProxyWithContext) // never returns
	return nil
}

// requireEnv returns the named environment variables, or an error naming
// every one that is empty.
// newConsole serves the web console at PUBLIC_URL (https), signing in with
// the OIDC issuer as client OIDC_CLIENT_ID (default: the audience), with
// OIDC_CLIENT_SECRET if the client is confidential. Without PUBLIC_URL there
// is no console (nil).
func newConsole(env map[string]string, verifier *auth.Verifier, cfg web.Config) (http.Handler, error) {
	public := strings.TrimSuffix(os.Getenv("PUBLIC_URL"), "/")
	if public == "" {
		return nil, nil
	}
	client := os.Getenv("OIDC_CLIENT_ID")
	if client == "" {
		client = env["OIDC_AUDIENCE"]
	}
	if client != env["OIDC_AUDIENCE"] {
		// ID tokens are issued to the console's client: check them for it.
		var err error
		if verifier, err = auth.NewVerifier(auth.VerifierConfig{Issuer: env["OIDC_ISSUER"], Audience: client,
			JWKSURL: os.Getenv("OIDC_JWKS_URL"), Clock: escrow.SystemClock{},
			GroupsClaim: os.Getenv("OIDC_GROUPS_CLAIM"), RolesClaim: os.Getenv("OIDC_ROLES_CLAIM")}); err != nil {
			return nil, fmt.Errorf("web console verifier: %w", err)
		}
	}
	rp, err := auth.NewRP(auth.RPConfig{Issuer: env["OIDC_ISSUER"], ClientID: client, ClientSecret: os.Getenv("OIDC_CLIENT_SECRET"),
		RedirectURL: public + "/auth/callback", Verifier: verifier})
	if err != nil {
		return nil, fmt.Errorf("web console sign-in: %w", err)
	}
	cfg.Login, cfg.PublicURL = rp, public
	h, err := web.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	return h, nil
}

func requireEnv(names ...string) (map[string]string, error) {
	env := make(map[string]string, len(names))
	var missing []string
	for _, n := range names {
		if env[n] = os.Getenv(n); env[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing environment variables %v", missing)
	}
	return env, nil
}

// optional wires what a deployment may leave out: the workflow
// (STATE_MACHINE_ARN), mail (MAIL_FROM, SES) and the approvers' directory
// (DIRECTORY_JSON, a static list until a directory service is wired).
func optional(cfg aws.Config, ac *access.Config) error {
	if arn := os.Getenv("STATE_MACHINE_ARN"); arn != "" {
		ac.Workflow = sfn.New(awssfn.NewFromConfig(cfg), arn)
	}
	if from := os.Getenv("MAIL_FROM"); from != "" {
		ac.Notifier = ses.New(sesv2.NewFromConfig(cfg), from, os.Getenv("SES_CONFIGURATION_SET"))
	}
	if dir := os.Getenv("DIRECTORY_JSON"); dir != "" {
		d, err := static.Parse([]byte(dir))
		if err != nil {
			return fmt.Errorf("DIRECTORY_JSON: %w", err)
		}
		ac.Directory = d
	}
	return nil
}
