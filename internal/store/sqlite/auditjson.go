package sqlite

import (
	"encoding/json"
	"time"

	"github.com/valyala/fastjson"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Decoding the stored audit records was most of a report's time with
// encoding/json (reflection per field). decodeAudit reads the fields the
// record has with fastjson instead, and falls back to encoding/json for
// anything it does not expect, so the result is always what
// json.Unmarshal gives (a test checks both agree).

var auditParsers fastjson.ParserPool

func decodeAudit(raw []byte) (*escrow.AuditRecord, error) {
	if rec, ok := fastAudit(raw); ok {
		return rec, nil
	}
	rec := &escrow.AuditRecord{}
	if err := json.Unmarshal(raw, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

func fastAudit(raw []byte) (*escrow.AuditRecord, bool) {
	p := auditParsers.Get()
	defer auditParsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return nil, false
	}
	o, err := v.Object()
	if err != nil {
		return nil, false
	}
	rec := &escrow.AuditRecord{}
	ok := true
	str := func(v *fastjson.Value, dst *string) {
		b, err := v.StringBytes()
		if err != nil {
			ok = false
			return
		}
		*dst = string(b)
	}
	strs := func(v *fastjson.Value, dst *[]string) {
		a, err := v.Array()
		if err != nil {
			ok = false
			return
		}
		out := make([]string, len(a))
		for i, e := range a {
			str(e, &out[i])
		}
		*dst = out
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !ok {
			return
		}
		switch string(k) {
		case "id":
			str(v, &rec.ID)
		case "time":
			var s string
			if str(v, &s); ok {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					ok = false
					return
				}
				rec.Time = t
			}
		case "actor":
			ao, err := v.Object()
			if err != nil {
				ok = false
				return
			}
			ao.Visit(func(k []byte, v *fastjson.Value) {
				switch string(k) {
				case "sub":
					str(v, &rec.Actor.Subject)
				case "email":
					str(v, &rec.Actor.Email)
				case "groups":
					strs(v, &rec.Actor.Groups)
				case "roles":
					strs(v, &rec.Actor.Roles)
				default:
					ok = false
				}
			})
		case "action":
			str(v, &rec.Action)
		case "secretId":
			str(v, &rec.SecretID)
		case "target":
			str(v, &rec.Target)
		case "outcome":
			var s string
			str(v, &s)
			rec.Outcome = escrow.Outcome(s)
		case "errorCode":
			var s string
			str(v, &s)
			rec.ErrorCode = escrow.Code(s)
		case "reason":
			str(v, &rec.Reason)
		case "requestId":
			str(v, &rec.RequestID)
		case "sourceIp":
			str(v, &rec.SourceIP)
		case "userAgent":
			str(v, &rec.UserAgent)
		case "comment":
			str(v, &rec.Comment)
		case "ticket":
			str(v, &rec.Ticket)
		case "details":
			do, err := v.Object()
			if err != nil {
				ok = false
				return
			}
			rec.Details = make(map[string]string, do.Len())
			do.Visit(func(k []byte, v *fastjson.Value) {
				var s string
				str(v, &s)
				rec.Details[string(k)] = s
			})
		default:
			ok = false
		}
	})
	return rec, ok
}
