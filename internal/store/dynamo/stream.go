package dynamo

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// DecodeAuditItem reads an audit record from an item of the audit table
// as the table's stream delivers it (the NewImage of an INSERT), for the
// audit-stream function. Returns ErrInvalid-coded errors for an item that
// is not an audit record.
func DecodeAuditItem(it map[string]types.AttributeValue) (*escrow.AuditRecord, error) {
	rec, err := decodeAudit(it)
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInvalid, err, "not an audit record")
	}
	if rec.ID == "" || rec.Time.IsZero() || rec.Action == "" {
		return nil, escrow.Errorf(escrow.CodeInvalid, "not an audit record: id, time or action missing")
	}
	return rec, nil
}

// AuditItem is the item the store writes for rec: what the stream shows.
// Tests use it to build stream fixtures.
func AuditItem(rec *escrow.AuditRecord) map[string]types.AttributeValue {
	return auditItem(rec)
}
