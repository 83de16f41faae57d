package kms_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdkkms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/keystest"
	"github.com/escrow-pam/escrow/internal/keys/kms"
)

// newKey creates a symmetric KMS key on moto and returns a client and its id.
func newKey(t *testing.T, m *awstest.Moto) (*sdkkms.Client, string) {
	t.Helper()
	client := sdkkms.NewFromConfig(m.MustConfig(t))
	out, err := client.CreateKey(context.Background(), &sdkkms.CreateKeyInput{
		KeySpec:  types.KeySpecSymmetricDefault,
		KeyUsage: types.KeyUsageTypeEncryptDecrypt,
	})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return client, aws.ToString(out.KeyMetadata.KeyId)
}

// TestMoto runs the adapter against one moto server; each case makes its
// own key.
func TestMoto(t *testing.T) {
	m := awstest.Start(t)
	t.Run("Conformance", func(t *testing.T) { testConformanceMoto(t, m) })
	t.Run("KeyIDAndAlias", func(t *testing.T) { testMotoKeyIDAndAlias(t, m) })
	t.Run("OtherKeyRefused", func(t *testing.T) { testMotoOtherKeyRefused(t, m) })
	t.Run("UnknownKeyUnavailable", func(t *testing.T) { testMotoUnknownKeyUnavailable(t, m) })
}

func testConformanceMoto(t *testing.T, m *awstest.Moto) {
	client, keyID := newKey(t, m)
	keystest.Run(t, kms.New(client, keyID), keystest.Limits{
		AmbiguousContext: "moto's KMS concatenates encryption-context pairs into its AAD; real KMS tells them apart",
	})
}

func testMotoKeyIDAndAlias(t *testing.T, m *awstest.Moto) {
	client, keyID := newKey(t, m)
	ctx := context.Background()
	if _, err := client.CreateAlias(ctx, &sdkkms.CreateAliasInput{AliasName: aws.String("alias/escrow"), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("create alias: %v", err)
	}
	k := kms.New(client, "alias/escrow")
	encCtx := map[string]string{"escrow:secret": "s1", "escrow:version": "1"}
	dk, err := k.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatalf("GenerateDataKey via alias: %v", err)
	}
	if dk.KeyID == "" || !bytes.Contains([]byte(dk.KeyID), []byte(keyID)) {
		t.Fatalf("DataKey.KeyID = %q, want the ARN of %s", dk.KeyID, keyID)
	}
	plain, err := kms.New(client, keyID).Decrypt(ctx, dk.Wrapped, encCtx)
	if err != nil || !bytes.Equal(plain, dk.Plaintext) {
		t.Fatalf("Decrypt by key id of a key made via alias: %v", err)
	}
}

func testMotoOtherKeyRefused(t *testing.T, m *awstest.Moto) {
	client, keyA := newKey(t, m)
	_, keyB := newKey(t, m)
	ctx := context.Background()
	dk, err := kms.New(client, keyA).GenerateDataKey(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Naming key B must not unwrap a blob of key A, even though this
	// caller may use both.
	_, err = kms.New(client, keyB).Decrypt(ctx, dk.Wrapped, nil)
	if escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Fatalf("Decrypt under the wrong key = %v, want a non-retryable internal error", err)
	}
}

// A disabled key is not tested here: moto 5.2.1 keeps serving it. The
// mapping of DisabledException is pinned by TestConvertError.

func testMotoUnknownKeyUnavailable(t *testing.T, m *awstest.Moto) {
	client := sdkkms.NewFromConfig(m.MustConfig(t))
	_, err := kms.New(client, "11111111-2222-3333-4444-555555555555").GenerateDataKey(context.Background(), nil)
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("GenerateDataKey with a missing key = %v, want ErrUnavailable", err)
	}
}

func TestMotoDownUnavailable(t *testing.T) {
	m := awstest.Start(t)
	client, keyID := newKey(t, m)
	m.Stop()
	_, err := kms.New(client, keyID).GenerateDataKey(context.Background(), nil)
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("GenerateDataKey with KMS down = %v, want ErrUnavailable", err)
	}
}
