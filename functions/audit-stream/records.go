package main

import (
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/store/dynamo"
)

// Records decodes the new audit records of a stream batch. Anything but an
// INSERT is an error: the audit table is never updated or deleted from, so
// a MODIFY or REMOVE means someone bypassed the deny policies.
func Records(ev events.DynamoDBEvent) ([]*escrow.AuditRecord, error) {
	var out []*escrow.AuditRecord
	for _, r := range ev.Records {
		if r.EventName != "INSERT" {
			return nil, fmt.Errorf("ALERT: %s on the append-only audit table (event %s): the audit log was changed", r.EventName, r.EventID)
		}
		it, err := attributes(r.Change.NewImage)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", r.EventID, err)
		}
		rec, err := dynamo.DecodeAuditItem(it)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", r.EventID, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// attributes converts a stream image to the SDK's attribute values.
func attributes(img map[string]events.DynamoDBAttributeValue) (map[string]types.AttributeValue, error) {
	out := make(map[string]types.AttributeValue, len(img))
	for k, v := range img {
		av, err := attribute(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		out[k] = av
	}
	return out, nil
}

func attribute(v events.DynamoDBAttributeValue) (types.AttributeValue, error) {
	switch v.DataType() {
	case events.DataTypeString:
		return &types.AttributeValueMemberS{Value: v.String()}, nil
	case events.DataTypeNumber:
		return &types.AttributeValueMemberN{Value: v.Number()}, nil
	case events.DataTypeBoolean:
		return &types.AttributeValueMemberBOOL{Value: v.Boolean()}, nil
	case events.DataTypeNull:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case events.DataTypeBinary:
		return &types.AttributeValueMemberB{Value: v.Binary()}, nil
	case events.DataTypeStringSet:
		return &types.AttributeValueMemberSS{Value: v.StringSet()}, nil
	case events.DataTypeNumberSet:
		return &types.AttributeValueMemberNS{Value: v.NumberSet()}, nil
	case events.DataTypeBinarySet:
		return &types.AttributeValueMemberBS{Value: v.BinarySet()}, nil
	case events.DataTypeList:
		var l []types.AttributeValue
		for _, e := range v.List() {
			av, err := attribute(e)
			if err != nil {
				return nil, err
			}
			l = append(l, av)
		}
		return &types.AttributeValueMemberL{Value: l}, nil
	case events.DataTypeMap:
		m, err := attributes(v.Map())
		if err != nil {
			return nil, err
		}
		return &types.AttributeValueMemberM{Value: m}, nil
	}
	return nil, fmt.Errorf("unknown attribute type %v", v.DataType())
}
