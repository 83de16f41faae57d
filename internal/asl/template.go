package asl

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// template is a payload template (Parameters, ResultSelector, Payload):
// literal JSON in which object keys ending in ".$" hold a path or an
// intrinsic function call.
type template struct {
	kind   tmplKind
	lit    any          // tmplLiteral
	fields []tmplField  // tmplObject, in key order
	elems  []*template  // tmplArray
	path   jsonPath     // tmplPath
	call   *intrinsicFn // tmplIntrinsic
}

type tmplKind int

const (
	tmplLiteral tmplKind = iota
	tmplObject
	tmplArray
	tmplPath
	tmplIntrinsic
)

type tmplField struct {
	key string // without ".$"
	val *template
}

func parseTemplate(raw json.RawMessage) (*template, error) {
	v, err := decode(raw)
	if err != nil {
		return nil, err
	}
	return buildTemplate(v)
}

func buildTemplate(v any) (*template, error) {
	switch c := v.(type) {
	case map[string]any:
		t := &template{kind: tmplObject}
		keys := make([]string, 0, len(c))
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		seen := map[string]bool{}
		for _, k := range keys {
			var f tmplField
			if strings.HasSuffix(k, ".$") {
				f.key = strings.TrimSuffix(k, ".$")
				s, ok := c[k].(string)
				if !ok {
					return nil, fmt.Errorf("%s: value must be a string", k)
				}
				dyn, err := parseDynamic(s)
				if err != nil {
					return nil, fmt.Errorf("%s: %v", k, err)
				}
				f.val = dyn
			} else {
				f.key = k
				sub, err := buildTemplate(c[k])
				if err != nil {
					return nil, fmt.Errorf("%s.%v", k, err)
				}
				f.val = sub
			}
			if seen[f.key] {
				return nil, fmt.Errorf("key %s given twice", f.key)
			}
			seen[f.key] = true
			t.fields = append(t.fields, f)
		}
		return t, nil
	case []any:
		t := &template{kind: tmplArray}
		for i, e := range c {
			sub, err := buildTemplate(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %v", i, err)
			}
			t.elems = append(t.elems, sub)
		}
		return t, nil
	}
	return &template{kind: tmplLiteral, lit: v}, nil
}

// parseDynamic parses the value of a ".$" key: a path or an intrinsic call.
func parseDynamic(s string) (*template, error) {
	if strings.HasPrefix(s, "$") {
		p, err := parsePath(s)
		if err != nil {
			return nil, err
		}
		return &template{kind: tmplPath, path: p}, nil
	}
	if strings.HasPrefix(s, "States.") {
		p := &intrinsicParser{src: s}
		fn, err := p.call()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos != len(p.src) {
			return nil, fmt.Errorf("intrinsic %q: trailing text", s)
		}
		return &template{kind: tmplIntrinsic, call: fn}, nil
	}
	return nil, fmt.Errorf("%q is neither a path nor an intrinsic function", s)
}

// eval builds the template's value from input and the context object.
func (t *template) eval(input, context any) (any, error) {
	switch t.kind {
	case tmplLiteral:
		return t.lit, nil
	case tmplObject:
		out := make(map[string]any, len(t.fields))
		for _, f := range t.fields {
			v, err := f.val.eval(input, context)
			if err != nil {
				return nil, err
			}
			out[f.key] = v
		}
		return out, nil
	case tmplArray:
		out := make([]any, 0, len(t.elems))
		for _, e := range t.elems {
			v, err := e.eval(input, context)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case tmplPath:
		return t.path.mustGet("Parameters", input, context)
	case tmplIntrinsic:
		return t.call.eval(input, context)
	}
	return nil, fmt.Errorf("unknown template kind %d", t.kind)
}

// intrinsicFn is a parsed call such as States.Format('{}', $.a).
type intrinsicFn struct {
	name string
	args []intrinsicArg
}

type intrinsicArg struct {
	lit    any          // literal string, json.Number, bool or nil
	rawStr string       // a string literal as written, for Format's escapes
	isStr  bool         // lit is a string literal
	path   *jsonPath    // a path argument
	call   *intrinsicFn // a nested call
}

// arity gives the minimum and maximum (-1: any) argument count.
var intrinsics = map[string][2]int{
	"States.Format":       {1, -1},
	"States.StringToJson": {1, 1},
	"States.JsonToString": {1, 1},
	"States.Array":        {0, -1},
	"States.MathAdd":      {2, 2},
	"States.UUID":         {0, 0},
}

type intrinsicParser struct {
	src string
	pos int
}

func (p *intrinsicParser) skipSpace() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
}

func (p *intrinsicParser) call() (*intrinsicFn, error) {
	open := strings.IndexByte(p.src[p.pos:], '(')
	if open < 0 {
		return nil, fmt.Errorf("intrinsic %q: missing (", p.src)
	}
	name := strings.TrimSpace(p.src[p.pos : p.pos+open])
	arity, ok := intrinsics[name]
	if !ok {
		return nil, fmt.Errorf("intrinsic function %s not supported", name)
	}
	p.pos += open + 1
	fn := &intrinsicFn{name: name}
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == ')' {
		p.pos++
	} else {
		for {
			p.skipSpace()
			a, err := p.arg()
			if err != nil {
				return nil, err
			}
			fn.args = append(fn.args, a)
			p.skipSpace()
			if p.pos >= len(p.src) {
				return nil, fmt.Errorf("intrinsic %q: missing )", p.src)
			}
			c := p.src[p.pos]
			p.pos++
			if c == ')' {
				break
			}
			if c != ',' {
				return nil, fmt.Errorf("intrinsic %q: unexpected %q", p.src, c)
			}
		}
	}
	if len(fn.args) < arity[0] || (arity[1] >= 0 && len(fn.args) > arity[1]) {
		return nil, fmt.Errorf("%s: wrong number of arguments (%d)", name, len(fn.args))
	}
	if name == "States.Format" && !fn.args[0].isStr {
		return nil, fmt.Errorf("States.Format: first argument must be a string literal")
	}
	return fn, nil
}

func (p *intrinsicParser) arg() (intrinsicArg, error) {
	rest := p.src[p.pos:]
	switch {
	case strings.HasPrefix(rest, "'"):
		var b, raw strings.Builder
		i := 1
		for ; i < len(rest); i++ {
			c := rest[i]
			if c == '\\' && i+1 < len(rest) {
				raw.WriteByte(c)
				raw.WriteByte(rest[i+1])
				b.WriteByte(rest[i+1])
				i++
				continue
			}
			if c == '\'' {
				break
			}
			raw.WriteByte(c)
			b.WriteByte(c)
		}
		if i >= len(rest) {
			return intrinsicArg{}, fmt.Errorf("intrinsic %q: unterminated string", p.src)
		}
		p.pos += i + 1
		return intrinsicArg{lit: b.String(), rawStr: raw.String(), isStr: true}, nil
	case strings.HasPrefix(rest, "States."):
		fn, err := p.call()
		if err != nil {
			return intrinsicArg{}, err
		}
		return intrinsicArg{call: fn}, nil
	}
	end := strings.IndexAny(rest, ",)")
	if end < 0 {
		end = len(rest)
	}
	tok := strings.TrimSpace(rest[:end])
	p.pos += end
	switch {
	case strings.HasPrefix(tok, "$"):
		jp, err := parsePath(tok)
		if err != nil {
			return intrinsicArg{}, err
		}
		return intrinsicArg{path: &jp}, nil
	case tok == "true" || tok == "false":
		return intrinsicArg{lit: tok == "true"}, nil
	case tok == "null":
		return intrinsicArg{}, nil
	}
	if _, err := strconv.ParseFloat(tok, 64); err != nil {
		return intrinsicArg{}, fmt.Errorf("intrinsic %q: bad argument %q", p.src, tok)
	}
	return intrinsicArg{lit: json.Number(tok)}, nil
}

func (a intrinsicArg) eval(input, context any) (any, error) {
	switch {
	case a.call != nil:
		return a.call.eval(input, context)
	case a.path != nil:
		return a.path.mustGet("intrinsic argument", input, context)
	}
	return a.lit, nil
}

func intrinsicFailure(name, format string, args ...any) error {
	return pathFailure("States.IntrinsicFailure", name+": "+format, args...)
}

func (f *intrinsicFn) eval(input, context any) (any, error) {
	vals := make([]any, len(f.args))
	for i, a := range f.args {
		v, err := a.eval(input, context)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	switch f.name {
	case "States.Format":
		return formatIntrinsic(f.args[0].rawStr, vals[1:])
	case "States.StringToJson":
		s, ok := vals[0].(string)
		if !ok {
			return nil, intrinsicFailure(f.name, "argument is not a string")
		}
		v, err := decode(json.RawMessage(s))
		if err != nil || strings.TrimSpace(s) == "" {
			return nil, intrinsicFailure(f.name, "argument is not JSON")
		}
		return v, nil
	case "States.JsonToString":
		return string(encode(vals[0])), nil
	case "States.Array":
		return append([]any{}, vals...), nil
	case "States.MathAdd":
		var sum int64
		for _, v := range vals {
			n, ok := v.(json.Number)
			if !ok {
				return nil, intrinsicFailure(f.name, "arguments must be integers")
			}
			i, err := n.Int64()
			if err != nil {
				fl, ferr := n.Float64()
				if ferr != nil || fl != math.Trunc(fl) {
					return nil, intrinsicFailure(f.name, "arguments must be integers")
				}
				i = int64(fl)
			}
			sum += i
		}
		return json.Number(strconv.FormatInt(sum, 10)), nil
	case "States.UUID":
		return newUUID(), nil
	}
	return nil, intrinsicFailure(f.name, "not supported")
}

// formatIntrinsic implements States.Format on the literal as written, so
// that \{ and \} stay literal braces and only bare {} are placeholders.
func formatIntrinsic(raw string, args []any) (any, error) {
	var b strings.Builder
	n := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			b.WriteByte(raw[i+1])
			i++
		case c == '{' && i+1 < len(raw) && raw[i+1] == '}':
			if n >= len(args) {
				return nil, intrinsicFailure("States.Format", "more {} than arguments")
			}
			b.WriteString(formatValue(args[n]))
			n++
			i++
		default:
			b.WriteByte(c)
		}
	}
	if n != len(args) {
		return nil, intrinsicFailure("States.Format", "%d arguments for %d {}", len(args), n)
	}
	return b.String(), nil
}

// formatValue renders a value inside States.Format the way Step Functions
// does: strings bare, arrays [a, b], objects {k=v, ...}, others as JSON.
func formatValue(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case []any:
		parts := make([]string, len(c))
		for i, e := range c {
			parts[i] = formatValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(c))
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + formatValue(c[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return string(encode(v))
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
