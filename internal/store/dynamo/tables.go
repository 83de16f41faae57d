package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateTables creates the main and audit tables with the schema that
// template.yaml declares, waits until both are ACTIVE, and enables the main
// table's TTL. A table that already exists keeps its schema. It is for
// tests and local use: in AWS the stack owns the tables.
func CreateTables(ctx context.Context, client *dynamodb.Client, tables Tables) error {
	for _, in := range []*dynamodb.CreateTableInput{mainTable(tables.Main), auditTable(tables.Audit)} {
		_, err := client.CreateTable(ctx, in)
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: %w", aws.ToString(in.TableName), err)
		}
	}
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	for _, name := range []string{tables.Main, tables.Audit} {
		if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 5*time.Minute); err != nil {
			return fmt.Errorf("wait for table %s: %w", name, err)
		}
	}
	return enableTTL(ctx, client, tables.Main)
}

// enableTTL turns on the main table's TTL on ttlAttr (sessions.go), as
// template.yaml does. DynamoDB refuses to enable TTL that is already on
// (ValidationException), so it asks first rather than reading error text.
func enableTTL(ctx context.Context, client *dynamodb.Client, table string) error {
	d, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("describe time to live of %s: %w", table, err)
	}
	if ttl := d.TimeToLiveDescription; ttl != nil && aws.ToString(ttl.AttributeName) == ttlAttr {
		switch ttl.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			return nil
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(ttlAttr),
			Enabled:       aws.Bool(true),
		},
	})
	if err != nil {
		return fmt.Errorf("enable time to live of %s: %w", table, err)
	}
	return nil
}

func attrS(names ...string) []types.AttributeDefinition {
	out := make([]types.AttributeDefinition, len(names))
	for i, n := range names {
		out[i] = types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: types.ScalarAttributeTypeS}
	}
	return out
}

func keySchema(hash, rng string) []types.KeySchemaElement {
	return []types.KeySchemaElement{
		{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
	}
}

func gsi(name, hash, rng string) types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName:  aws.String(name),
		KeySchema:  keySchema(hash, rng),
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
	}
}

// mainKeyAttrs are the key attributes of the main table and its indexes;
// the second line is those of requests and grants (requests.go), the third
// those of configuration items (ticketsystems.go) and checkout slots
// (checkouts.go).
var mainKeyAttrs = []string{"pk", "sk", "fpk", "fsk", "ppk", "psk", "gpk", "gsk",
	"rpk", "rspk", "stpk", "apk", "csk", "gepk", "gesk", "gspk", "gxpk", "opk",
	"kpk", "ksk", "copk", "cosk"}

func mainTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: attrS(mainKeyAttrs...),
		KeySchema:            keySchema("pk", "sk"),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			gsi(idxByFolder, "fpk", "fsk"),
			gsi(idxByPath, "ppk", "psk"),
			gsi(idxByPrincipal, "gpk", "gsk"),
			// Access requests and grants (requests.go).
			gsi(idxByRequester, "rpk", "csk"),
			gsi(idxByRequestSecret, "rspk", "csk"),
			gsi(idxByStatus, "stpk", "csk"),
			gsi(idxAllRequests, "apk", "csk"),
			gsi(idxByGrantee, "gepk", "gesk"),
			gsi(idxByGrantSubject, "gspk", "csk"),
			gsi(idxByGrantSecret, "gxpk", "csk"),
			gsi(idxOpenGrants, "opk", "csk"),
			// Configuration items by kind, then name (ticketsystems.go).
			gsi(idxByKind, "kpk", "ksk"),
			// Sparse: open checkout slots, oldest update first (checkouts.go).
			gsi(idxOpenCheckouts, "copk", "cosk"),
		},
	}
}

func auditTable(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: attrS("pk", "sk", "actor", "secretId", "action", "ticket"),
		KeySchema:            keySchema("pk", "sk"),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			gsi(idxByActor, "actor", "sk"),
			gsi(idxBySecret, "secretId", "sk"),
			gsi(idxByAction, "action", "sk"),
			// Sparse: only records with a ticket number.
			gsi(idxByTicket, "ticket", "sk"),
		},
		StreamSpecification: &types.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: types.StreamViewTypeNewImage,
		},
	}
}
