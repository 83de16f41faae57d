// Package kms implements escrow.Keys with AWS KMS: data keys come from
// GenerateDataKey under one KMS key, bound to their encryption context, and
// are unwrapped with Decrypt under that same key.
//
// It must never log or return key material, and never decrypt without
// naming the expected key (so a ciphertext wrapped under some other key an
// attacker controls is refused by KMS itself).
package kms

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// API is the subset of *kms.Client that Keys uses.
type API interface {
	GenerateDataKey(ctx context.Context, params *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, params *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

var _ API = (*kms.Client)(nil)

// Keys wraps data keys under one KMS key.
type Keys struct {
	client API
	keyID  string
}

var _ escrow.Keys = (*Keys)(nil)

// New returns Keys that use the KMS key keyID (a key id, key ARN, alias name
// or alias ARN) through client.
func New(client API, keyID string) *Keys {
	return &Keys{client: client, keyID: keyID}
}

const dataKeySize = 32

// GenerateDataKey asks KMS for a fresh AES-256 data key bound to encCtx.
func (k *Keys) GenerateDataKey(ctx context.Context, encCtx map[string]string) (escrow.DataKey, error) {
	out, err := k.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(k.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return escrow.DataKey{}, convertError(fmt.Errorf("kms generate data key: %w", err))
	}
	if len(out.Plaintext) != dataKeySize || len(out.CiphertextBlob) == 0 {
		clear(out.Plaintext)
		return escrow.DataKey{}, escrow.Errorf(escrow.CodeInternal, "kms returned a %d-byte data key, want %d", len(out.Plaintext), dataKeySize)
	}
	return escrow.DataKey{
		Plaintext: out.Plaintext,
		Wrapped:   out.CiphertextBlob,
		KeyID:     aws.ToString(out.KeyId),
	}, nil
}

// Decrypt unwraps a data key with KMS, passing the key id and encCtx so that
// KMS refuses a blob from another key or context.
func (k *Keys) Decrypt(ctx context.Context, wrapped []byte, encCtx map[string]string) ([]byte, error) {
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(k.keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: encCtx,
	})
	if err != nil {
		return nil, convertError(fmt.Errorf("kms decrypt: %w", err))
	}
	if len(out.Plaintext) != dataKeySize {
		clear(out.Plaintext)
		return nil, escrow.Errorf(escrow.CodeInternal, "decrypt data key: kms returned %d bytes, want %d", len(out.Plaintext), dataKeySize)
	}
	return out.Plaintext, nil
}

// convertError is the one place where KMS errors become escrow errors:
//   - a blob that does not match its key or context is CodeInternal
//     ("decrypt data key"): tampering or a moved ciphertext, never retried;
//   - anything that may pass (KMS down, throttled, key disabled or not
//     reachable, the network) is ErrUnavailable;
//   - the rest (access denied, bad parameters) is a misconfiguration:
//     CodeInternal.
func convertError(err error) error {
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidCiphertextException", "IncorrectKeyException":
			return escrow.Wrap(escrow.CodeInternal, err, "decrypt data key")
		case "KMSInternalException", "DependencyTimeoutException",
			"ThrottlingException", "LimitExceededException", "RequestLimitExceeded",
			"DisabledException", "KeyUnavailableException", "NotFoundException",
			"KMSInvalidStateException", "CustomKeyStoreInvalidStateException",
			"XksProxyUriUnreachableException", "XksProxyInvalidResponseException":
			return escrow.Wrap(escrow.CodeUnavailable, err, "key service unavailable")
		}
		// An answer without a known code (a proxy's 503, say): go by status.
		var respErr interface{ HTTPStatusCode() int }
		if errors.As(err, &respErr) && (respErr.HTTPStatusCode() >= 500 || respErr.HTTPStatusCode() == 429) {
			return escrow.Wrap(escrow.CodeUnavailable, err, "key service unavailable")
		}
		return escrow.Wrap(escrow.CodeInternal, err, "key service error")
	}
	var paramErr smithy.InvalidParamsError
	if errors.As(err, &paramErr) {
		return escrow.Wrap(escrow.CodeInternal, err, "key service error")
	}
	// No answer from KMS at all: the network, a timeout, credentials that
	// could not be fetched. All may pass.
	return escrow.Wrap(escrow.CodeUnavailable, err, "key service unavailable")
}
