package asl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Values are handled as decoded JSON: map[string]any, []any, string,
// json.Number (so integers keep their exact form), bool and nil.

func decode(b json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

func encode(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Values only ever come from decode or from this package's own
		// constructors, so they always marshal.
		panic(fmt.Sprintf("asl: marshal value: %v", err))
	}
	return b
}

// segment is one step of a path: a field name or an array index.
type segment struct {
	key   string
	index int
	isIdx bool
}

// jsonPath is a parsed reference path: $ or $$ followed by .name, ['name']
// and [n] steps. Wildcards, slices, filters and recursive descent are not
// supported and are rejected by parsePath.
type jsonPath struct {
	context bool
	segs    []segment
	src     string
}

func parsePath(p string) (jsonPath, error) {
	jp := jsonPath{src: p}
	rest := p
	switch {
	case strings.HasPrefix(p, "$$"):
		jp.context = true
		rest = p[2:]
	case strings.HasPrefix(p, "$"):
		rest = p[1:]
	default:
		return jp, fmt.Errorf("path %q must start with $", p)
	}
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			if name == "" || strings.ContainsAny(name, "*@?()'\" ") {
				return jp, fmt.Errorf("path %q: unsupported step %q", p, "."+name)
			}
			jp.segs = append(jp.segs, segment{key: name})
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return jp, fmt.Errorf("path %q: unclosed [", p)
			}
			inner := rest[1:end]
			rest = rest[end+1:]
			if len(inner) >= 2 && inner[0] == '\'' && inner[len(inner)-1] == '\'' {
				jp.segs = append(jp.segs, segment{key: inner[1 : len(inner)-1]})
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil || n < 0 {
				return jp, fmt.Errorf("path %q: unsupported step [%s]", p, inner)
			}
			jp.segs = append(jp.segs, segment{index: n, isIdx: true})
		default:
			return jp, fmt.Errorf("path %q: unexpected %q", p, rest[:1])
		}
	}
	return jp, nil
}

// get resolves the path in input (or in the context object for $$).
func (jp jsonPath) get(input, context any) (any, bool) {
	v := input
	if jp.context {
		v = context
	}
	for _, s := range jp.segs {
		switch c := v.(type) {
		case map[string]any:
			if s.isIdx {
				return nil, false
			}
			x, ok := c[s.key]
			if !ok {
				return nil, false
			}
			v = x
		case []any:
			if !s.isIdx || s.index >= len(c) {
				return nil, false
			}
			v = c[s.index]
		default:
			return nil, false
		}
	}
	return v, true
}

// runtimeError is a States.Runtime failure: it fails the execution and is
// never caught or retried, as in Step Functions.
type runtimeError struct{ name, cause string }

func (e *runtimeError) Error() string { return e.name + ": " + e.cause }

func pathFailure(name, format string, args ...any) error {
	return &runtimeError{name: name, cause: fmt.Sprintf(format, args...)}
}

// mustGet resolves a path that must exist.
func (jp jsonPath) mustGet(field string, input, context any) (any, error) {
	v, ok := jp.get(input, context)
	if !ok {
		return nil, pathFailure("States.Runtime", "%s: path %s not found in the input", field, jp.src)
	}
	return v, nil
}

// set returns root with value placed at the path (ResultPath semantics:
// missing objects on the way are created; $ replaces root).
func (jp jsonPath) set(root, value any) (any, error) {
	if len(jp.segs) == 0 {
		return value, nil
	}
	return setIn(root, jp.segs, value, jp.src)
}

func setIn(cur any, segs []segment, value any, src string) (any, error) {
	s := segs[0]
	if s.isIdx {
		arr, ok := cur.([]any)
		if !ok || s.index >= len(arr) {
			return nil, pathFailure("States.ResultPathMatchFailure", "ResultPath %s does not match the input", src)
		}
		out := append([]any(nil), arr...)
		if len(segs) == 1 {
			out[s.index] = value
			return out, nil
		}
		v, err := setIn(out[s.index], segs[1:], value, src)
		out[s.index] = v
		return out, err
	}
	var obj map[string]any
	switch c := cur.(type) {
	case map[string]any:
		obj = make(map[string]any, len(c)+1)
		for k, v := range c {
			obj[k] = v
		}
	case nil:
		obj = map[string]any{}
	default:
		return nil, pathFailure("States.ResultPathMatchFailure", "ResultPath %s does not match the input", src)
	}
	if len(segs) == 1 {
		obj[s.key] = value
		return obj, nil
	}
	next, ok := obj[s.key]
	if !ok {
		next = map[string]any{}
	}
	v, err := setIn(next, segs[1:], value, src)
	obj[s.key] = v
	return obj, err
}

// number returns v as a float64 when it is a JSON number.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// parseTimestamp accepts RFC 3339 timestamps, the only form ASL defines.
func parseTimestamp(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// formatTimestamp renders times the way Step Functions does in $$ fields.
func formatTimestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
