package auditlog

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// recordLabel separates record hashes from every other SHA-256 in Escrow.
const recordLabel = "escrow/audit/record/v1\n"

// timeLayout is RFC 3339 in UTC with exactly nine fractional digits, so a
// time has one spelling (encoding/json's RFC3339Nano trims zeros and keeps
// the zone offset, which gives one instant many spellings).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// RecordHash returns SHA-256(recordLabel ‖ CanonicalRecord(rec)), the value
// a digest's leaf holds for rec. It returns ErrInvalidRecord (wrapped, naming
// the field) if rec is nil, a string in it is not valid UTF-8, or its time
// lies outside years 0000-9999: such a record has no canonical form, and
// hashing a repaired copy would let two different records share a hash.
func RecordHash(rec *escrow.AuditRecord) ([32]byte, error) {
	var h recordHasher
	return h.hash(rec)
}

// CanonicalRecord returns the canonical JSON of rec that RecordHash hashes
// (the format is in the package doc). It returns ErrInvalidRecord like
// RecordHash.
func CanonicalRecord(rec *escrow.AuditRecord) ([]byte, error) {
	var h recordHasher
	return h.appendRecord(nil, rec)
}

// recordHasher reuses its buffers across records; it is not safe for
// concurrent use.
type recordHasher struct {
	buf  []byte
	keys []string
	err  error
}

func (h *recordHasher) hash(rec *escrow.AuditRecord) ([32]byte, error) {
	b, err := h.appendRecord(append(h.buf[:0], recordLabel...), rec)
	h.buf = b
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// appendRecord appends rec's canonical JSON to b. It mirrors the json tags
// of escrow.AuditRecord and escrow.Actor field by field, in struct order;
// TestCanonicalRecordCoversEveryField fails when a field is added there and
// not here.
func (h *recordHasher) appendRecord(b []byte, rec *escrow.AuditRecord) ([]byte, error) {
	if rec == nil {
		return b, fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	h.err = nil
	b = append(b, `{"id":`...)
	b = h.str(b, "id", rec.ID)
	b = append(b, `,"time":`...)
	b = h.time(b, "time", rec.Time)
	b = append(b, `,"actor":{"sub":`...)
	b = h.str(b, "actor.sub", rec.Actor.Subject)
	b = h.optStr(b, `,"email":`, "actor.email", rec.Actor.Email)
	b = h.strs(b, `,"groups":`, "actor.groups", rec.Actor.Groups)
	b = h.strs(b, `,"roles":`, "actor.roles", rec.Actor.Roles)
	b = append(b, `},"action":`...)
	b = h.str(b, "action", rec.Action)
	b = h.optStr(b, `,"secretId":`, "secretId", rec.SecretID)
	b = h.optStr(b, `,"target":`, "target", rec.Target)
	b = append(b, `,"outcome":`...)
	b = h.str(b, "outcome", string(rec.Outcome))
	b = h.optStr(b, `,"errorCode":`, "errorCode", string(rec.ErrorCode))
	b = h.optStr(b, `,"reason":`, "reason", rec.Reason)
	b = h.optStr(b, `,"requestId":`, "requestId", rec.RequestID)
	b = h.optStr(b, `,"sourceIp":`, "sourceIp", rec.SourceIP)
	b = h.optStr(b, `,"userAgent":`, "userAgent", rec.UserAgent)
	b = h.optStr(b, `,"comment":`, "comment", rec.Comment)
	b = h.optStr(b, `,"ticket":`, "ticket", rec.Ticket)
	if len(rec.Details) > 0 {
		h.keys = h.keys[:0]
		for k := range rec.Details {
			h.keys = append(h.keys, k)
		}
		slices.Sort(h.keys) // bytewise, as encoding/json sorts map keys
		for i, k := range h.keys {
			if i == 0 {
				b = append(b, `,"details":{`...)
			} else {
				b = append(b, ',')
			}
			b = h.str(b, "details key", k)
			b = append(b, ':')
			b = h.str(b, "details value", rec.Details[k])
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	if h.err != nil {
		return b, h.err
	}
	return b, nil
}

// optStr appends key and s unless s is empty (omitempty).
func (h *recordHasher) optStr(b []byte, key, field, s string) []byte {
	if s == "" {
		return b
	}
	return h.str(append(b, key...), field, s)
}

// strs appends key and ss as an array unless ss is empty (omitempty omits
// nil and empty slices alike).
func (h *recordHasher) strs(b []byte, key, field string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, key...)
	for i, s := range ss {
		if i == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		b = h.str(b, field, s)
	}
	return append(b, ']')
}

func (h *recordHasher) time(b []byte, field string, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		h.fail(field, "year outside 0000-9999")
		return b
	}
	// By hand, as timeLayout: AppendFormat was a tenth of Verify's time.
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z', '"')
}

// appendDigits appends the n lowest decimal digits of v (v >= 0),
// zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	b = append(b, make([]byte, n)...)
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

func (h *recordHasher) fail(field, why string) {
	if h.err == nil {
		h.err = fmt.Errorf("%w: %s: %s", ErrInvalidRecord, field, why)
	}
}

const hexDigits = "0123456789abcdef"

// str appends s as a JSON string: '"' and '\' escaped, control characters
// as \b \t \n \f \r or \u00xx, everything else as its UTF-8 bytes.
func (h *recordHasher) str(b []byte, field, s string) []byte {
	if !utf8.ValidString(s) {
		h.fail(field, "not valid UTF-8")
		return b
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
