package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// RowWriter receives a report's rows as they are read. Run calls Begin
// once, only after the caller's right to the report has been checked and
// audited, then Row for each row, then End. An error from any of them
// stops the report.
type RowWriter interface {
	// Begin starts the output with the report's columns.
	Begin(cols []Column) error
	// Row writes one row, one value per column. vals is reused once Row
	// returns.
	Row(vals []Value) error
	// End completes the output (a JSON array's closing bracket) and
	// flushes it.
	End() error
}

// Formats that NewWriter accepts.
const (
	FormatCSV   = "csv"
	FormatJSON  = "json"  // one JSON array of objects
	FormatJSONL = "jsonl" // JSON lines: one object per line
)

// NewWriter returns the RowWriter of format (csv, json or jsonl) on w.
// Returns ErrInvalid for any other format.
func NewWriter(format string, w io.Writer) (RowWriter, error) {
	switch format {
	case FormatCSV:
		return NewCSVWriter(w), nil
	case FormatJSON:
		return NewJSONWriter(w, false), nil
	case FormatJSONL:
		return NewJSONWriter(w, true), nil
	}
	return nil, invalidf("format %q must be csv, json or jsonl", format)
}

// ContentType is the media type of format's output.
func ContentType(format string) string {
	switch format {
	case FormatCSV:
		return "text/csv; charset=utf-8; header=present"
	case FormatJSONL:
		return "application/x-ndjson"
	}
	return "application/json"
}

// valueKind says which field of a Value holds it.
type valueKind uint8

const (
	kindNull valueKind = iota
	kindString
	kindInt
	kindBool
	kindTime
	kindStructured
)

// Value is one cell. Strings, integers, booleans and times are shown the
// same way in every format; a structured value is a JSON value in JSON
// output and a flat text in CSV.
type Value struct {
	kind valueKind
	s    string
	n    int64
	t    time.Time
	v    any
}

// Str is a text cell.
func Str(s string) Value { return Value{kind: kindString, s: s} }

// Int is an integer cell.
func Int(n int64) Value { return Value{kind: kindInt, n: n} }

// Bool is a true/false cell.
func Bool(b bool) Value {
	if b {
		return Value{kind: kindBool, n: 1}
	}
	return Value{kind: kindBool}
}

// Time is a time cell; the zero time is an empty cell (null in JSON).
func Time(t time.Time) Value {
	if t.IsZero() {
		return Value{}
	}
	return Value{kind: kindTime, t: t}
}

// Null is an empty cell (null in JSON).
func Null() Value { return Value{} }

// Structured is a cell that JSON shows as v and CSV as text.
func Structured(text string, v any) Value { return Value{kind: kindStructured, s: text, v: v} }

// timeLayout is UTC to the millisecond, the precision of audit record IDs.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Text is the value as CSV shows it (before the injection guard).
func (v Value) Text() string {
	switch v.kind {
	case kindString, kindStructured:
		return v.s
	case kindInt:
		return strconv.FormatInt(v.n, 10)
	case kindBool:
		return strconv.FormatBool(v.n != 0)
	case kindTime:
		return v.t.UTC().Format(timeLayout)
	}
	return ""
}

// appendJSON appends v as a JSON value.
func (v Value) appendJSON(b []byte) ([]byte, error) {
	switch v.kind {
	case kindString:
		return appendJSONString(b, v.s), nil
	case kindInt:
		return strconv.AppendInt(b, v.n, 10), nil
	case kindBool:
		return strconv.AppendBool(b, v.n != 0), nil
	case kindTime:
		b = append(b, '"')
		b = v.t.UTC().AppendFormat(b, timeLayout)
		return append(b, '"'), nil
	case kindStructured:
		j, err := json.Marshal(v.v)
		if err != nil {
			return b, fmt.Errorf("encode %T: %w", v.v, err)
		}
		return append(b, j...), nil
	}
	return append(b, "null"...), nil
}

// CSVWriter writes RFC 4180 CSV: a header row, then one record per row,
// CRLF line ends, fields quoted when they hold a comma, quote or line
// break. A cell that a spreadsheet would run as a formula (starting with
// = + - @, a tab or a carriage return) is prefixed with a single quote,
// so a comment like "=HYPERLINK(...)" stays text (CSV injection).
type CSVWriter struct {
	w    *csv.Writer
	cell []string
	rows int64
}

// NewCSVWriter returns a CSVWriter on w.
func NewCSVWriter(w io.Writer) *CSVWriter {
	cw := csv.NewWriter(bufio.NewWriterSize(w, 64<<10))
	cw.UseCRLF = true
	return &CSVWriter{w: cw}
}

// Begin writes the header row.
func (c *CSVWriter) Begin(cols []Column) error {
	c.cell = make([]string, len(cols))
	for i, col := range cols {
		c.cell[i] = guard(col.Name)
	}
	return c.write()
}

// Row writes one record.
func (c *CSVWriter) Row(vals []Value) error {
	for i, v := range vals {
		c.cell[i] = guard(v.Text())
	}
	c.rows++
	return c.write()
}

// End flushes the output.
func (c *CSVWriter) End() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// Rows is the number of rows written, without the header.
func (c *CSVWriter) Rows() int64 { return c.rows }

func (c *CSVWriter) write() error {
	if err := c.w.Write(c.cell); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// guard neutralises a cell a spreadsheet would evaluate as a formula.
func guard(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// JSONWriter writes rows as JSON objects keyed by column name: one array
// (streamed, element by element) or JSON lines.
type JSONWriter struct {
	w     *bufio.Writer
	lines bool
	keys  [][]byte // `"name":` per column
	buf   []byte
	rows  int64
}

// NewJSONWriter returns a JSONWriter on w; lines selects JSON lines over
// an array.
func NewJSONWriter(w io.Writer, lines bool) *JSONWriter {
	return &JSONWriter{w: bufio.NewWriterSize(w, 64<<10), lines: lines}
}

// Begin prepares the keys; an array's opening bracket waits for the first
// row (or End).
func (j *JSONWriter) Begin(cols []Column) error {
	j.keys = make([][]byte, len(cols))
	for i, c := range cols {
		j.keys[i] = append(appendJSONString(nil, c.Name), ':')
	}
	return nil
}

// Row writes one object.
func (j *JSONWriter) Row(vals []Value) error {
	b := j.buf[:0]
	switch {
	case j.lines:
	case j.rows == 0:
		b = append(b, "[\n"...)
	default:
		b = append(b, ",\n"...)
	}
	b = append(b, '{')
	var err error
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, j.keys[i]...)
		if b, err = v.appendJSON(b); err != nil {
			return err
		}
	}
	b = append(b, '}')
	if j.lines {
		b = append(b, '\n')
	}
	j.buf = b
	j.rows++
	if _, err := j.w.Write(b); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// End closes the array and flushes the output.
func (j *JSONWriter) End() error {
	var err error
	switch {
	case j.lines:
	case j.rows == 0:
		_, err = j.w.WriteString("[]\n")
	default:
		_, err = j.w.WriteString("\n]\n")
	}
	if err == nil {
		err = j.w.Flush()
	}
	if err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// Rows is the number of rows written.
func (j *JSONWriter) Rows() int64 { return j.rows }

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and
// U+2028/U+2029 escaped so the output is also safe as JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
