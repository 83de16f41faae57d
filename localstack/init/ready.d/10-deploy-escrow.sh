#!/bin/bash
# LocalStack init hook (READY stage): deploys Escrow's SAM template, as built
# by `sam build` on the host and mounted at /opt/escrow/build, as the stack
# $ESCROW_STACK_NAME. It packages the built template into a local S3 bucket
# and deploys it with CloudFormation, which is what `sam deploy` does.
# awslocal is LocalStack's aws CLI wrapper, preinstalled in its image.
set -euo pipefail

build=/opt/escrow/build
stack=${ESCROW_STACK_NAME:-escrow}
bucket=escrow-sam-artifacts

log() { echo "escrow-init: $*"; }

if [ ! -f "$build/template.yaml" ]; then
  log "no $build/template.yaml: run 'sam build' in the repository root, then 'docker compose up' again"
  exit 1
fi
: "${ESCROW_OIDC_ISSUER:?ESCROW_OIDC_ISSUER is not set}"

awslocal s3api head-bucket --bucket "$bucket" 2>/dev/null || awslocal s3 mb "s3://$bucket"

log "packaging $build/template.yaml"
awslocal cloudformation package \
  --template-file "$build/template.yaml" \
  --s3-bucket "$bucket" \
  --output-template-file /tmp/escrow-packaged.yaml

# The audit digests' signing seed: ESCROW_AUDIT_SIGNING_KEY (64 hex digits,
# from `escrow audit keygen`), else a throwaway one for this LocalStack.
signing_key="${ESCROW_AUDIT_SIGNING_KEY:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"

log "deploying stack $stack"
awslocal cloudformation deploy \
  --template-file /tmp/escrow-packaged.yaml \
  --stack-name "$stack" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --no-fail-on-empty-changeset \
  --parameter-overrides \
    "OIDCIssuer=$ESCROW_OIDC_ISSUER" \
    "OIDCAudience=${ESCROW_OIDC_AUDIENCE:-escrow}" \
    "AuditSigningKey=$signing_key" \
    "PublicURL=${ESCROW_PUBLIC_URL:-}"

awslocal cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text
log "stack $stack is deployed"
