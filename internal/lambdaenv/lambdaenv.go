// Package lambdaenv builds the AWS SDK config of a Lambda function from the
// environment Lambda gives it (region, the execution role's temporary
// credentials, and AWS_ENDPOINT_URL where tests point it at moto).
//
// It exists to keep function binaries small and fast to start:
// config.LoadDefaultConfig links the SSO, SSO-OIDC, STS and sign-in
// clients and the shared-config parser, none of which a function uses. It
// must never be used outside a function's main.
package lambdaenv

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Config returns the SDK config for a function. Credentials come from
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, which
// Lambda sets from the execution role (and refreshes by starting new
// environments).
func Config(_ context.Context) (aws.Config, error) {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if region == "" || id == "" || secret == "" {
		return aws.Config{}, fmt.Errorf("lambda environment lacks AWS_REGION, AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY")
	}
	cfg := aws.Config{
		Region:      region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, os.Getenv("AWS_SESSION_TOKEN"))),
	}
	if ep := os.Getenv("AWS_ENDPOINT_URL"); ep != "" {
		cfg.BaseEndpoint = aws.String(ep)
	}
	return cfg, nil
}
