package asl

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Rule is one Choice rule: a comparison on Variable, or And/Or/Not.
type Rule struct {
	Next     string
	variable jsonPath
	op       string // comparison operator without the "Path" suffix
	value    any    // literal comparand
	ref      *jsonPath
	and, or  []*Rule
	not      *Rule
	match    *regexp.Regexp // StringMatches
}

var comparisons = map[string]string{
	"StringEquals": "string", "StringLessThan": "string", "StringGreaterThan": "string",
	"StringLessThanEquals": "string", "StringGreaterThanEquals": "string", "StringMatches": "string",
	"NumericEquals": "number", "NumericLessThan": "number", "NumericGreaterThan": "number",
	"NumericLessThanEquals": "number", "NumericGreaterThanEquals": "number",
	"BooleanEquals":   "bool",
	"TimestampEquals": "timestamp", "TimestampLessThan": "timestamp", "TimestampGreaterThan": "timestamp",
	"TimestampLessThanEquals": "timestamp", "TimestampGreaterThanEquals": "timestamp",
	"IsNull": "bool", "IsPresent": "bool", "IsNumeric": "bool", "IsString": "bool",
	"IsBoolean": "bool", "IsTimestamp": "bool",
}

func parseRule(raw json.RawMessage, top bool) (*Rule, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	r := &Rule{}
	if v, ok := m["Next"]; ok {
		if !top {
			return nil, fmt.Errorf("field Next not allowed in a nested rule")
		}
		if err := json.Unmarshal(v, &r.Next); err != nil {
			return nil, fmt.Errorf("field Next: %v", err)
		}
	} else if top {
		return nil, fmt.Errorf("field Next missing")
	}
	n := 0
	for k, v := range m {
		switch k {
		case "Next", "Comment":
			continue
		case "Variable":
			var p string
			if err := json.Unmarshal(v, &p); err != nil {
				return nil, fmt.Errorf("field Variable: %v", err)
			}
			jp, err := parsePath(p)
			if err != nil {
				return nil, fmt.Errorf("field Variable: %v", err)
			}
			r.variable = jp
			continue
		case "And", "Or":
			var subs []json.RawMessage
			if err := json.Unmarshal(v, &subs); err != nil || len(subs) == 0 {
				return nil, fmt.Errorf("field %s must be a non-empty array", k)
			}
			for _, s := range subs {
				sr, err := parseRule(s, false)
				if err != nil {
					return nil, fmt.Errorf("%s: %v", k, err)
				}
				if k == "And" {
					r.and = append(r.and, sr)
				} else {
					r.or = append(r.or, sr)
				}
			}
			r.op = k
		case "Not":
			sr, err := parseRule(v, false)
			if err != nil {
				return nil, fmt.Errorf("field Not: %v", err)
			}
			r.not, r.op = sr, k
		default:
			base := k
			isPath := strings.HasSuffix(k, "Path") && comparisons[strings.TrimSuffix(k, "Path")] != "" &&
				!strings.HasPrefix(k, "Is") && k != "StringMatchesPath"
			if isPath {
				base = strings.TrimSuffix(k, "Path")
				var p string
				if err := json.Unmarshal(v, &p); err != nil {
					return nil, fmt.Errorf("field %s: %v", k, err)
				}
				jp, err := parsePath(p)
				if err != nil {
					return nil, fmt.Errorf("field %s: %v", k, err)
				}
				r.ref = &jp
			} else {
				kind, ok := comparisons[k]
				if !ok {
					return nil, fmt.Errorf("field %s not supported", k)
				}
				val, err := decode(v)
				if err != nil {
					return nil, fmt.Errorf("field %s: %v", k, err)
				}
				if !literalKind(kind, val) {
					return nil, fmt.Errorf("field %s: value must be a %s", k, kind)
				}
				r.value = val
				if k == "StringMatches" {
					r.match = wildcard(val.(string))
				}
			}
			r.op = base
		}
		n++
	}
	if n != 1 {
		return nil, fmt.Errorf("a rule needs exactly one operator")
	}
	if r.op != "And" && r.op != "Or" && r.op != "Not" && r.variable.src == "" {
		return nil, fmt.Errorf("field Variable missing")
	}
	return r, nil
}

func literalKind(kind string, v any) bool {
	switch kind {
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := number(v)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "timestamp":
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := parseTimestamp(s)
		return err == nil
	}
	return false
}

// wildcard compiles a StringMatches pattern: * matches any run of
// characters; \* and \\ are literal.
func wildcard(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			b.WriteString(regexp.QuoteMeta(p[i+1 : i+2]))
			i++
		case p[i] == '*':
			b.WriteString("(?s:.*)")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// eval reports whether the rule matches. A missing Variable (except for
// IsPresent) is a States.Runtime failure, as in Step Functions.
func (r *Rule) eval(input, context any) (bool, error) {
	switch r.op {
	case "And":
		for _, s := range r.and {
			ok, err := s.eval(input, context)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case "Or":
		for _, s := range r.or {
			ok, err := s.eval(input, context)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case "Not":
		ok, err := r.not.eval(input, context)
		return !ok && err == nil, err
	}
	v, present := r.variable.get(input, context)
	if r.op == "IsPresent" {
		return present == r.value.(bool), nil
	}
	if !present {
		return false, pathFailure("States.Runtime", "Choice: Variable %s not found in the input", r.variable.src)
	}
	want := r.value
	if r.ref != nil {
		w, ok := r.ref.get(input, context)
		if !ok {
			return false, pathFailure("States.Runtime", "Choice: path %s not found in the input", r.ref.src)
		}
		want = w
	}
	switch r.op {
	case "IsNull":
		return (v == nil) == want.(bool), nil
	case "IsNumeric":
		_, ok := number(v)
		return ok == want.(bool), nil
	case "IsString":
		_, ok := v.(string)
		return ok == want.(bool), nil
	case "IsBoolean":
		_, ok := v.(bool)
		return ok == want.(bool), nil
	case "IsTimestamp":
		s, ok := v.(string)
		if ok {
			_, err := parseTimestamp(s)
			ok = err == nil
		}
		return ok == want.(bool), nil
	case "BooleanEquals":
		a, ok1 := v.(bool)
		b, ok2 := want.(bool)
		return ok1 && ok2 && a == b, nil
	case "StringMatches":
		s, ok := v.(string)
		return ok && r.match.MatchString(s), nil
	}
	var c int
	switch comparisons[r.op] {
	case "string":
		a, ok1 := v.(string)
		b, ok2 := want.(string)
		if !ok1 || !ok2 {
			return false, nil
		}
		c = strings.Compare(a, b)
	case "number":
		a, ok1 := number(v)
		b, ok2 := number(want)
		if !ok1 || !ok2 {
			return false, nil
		}
		c = cmpFloat(a, b)
	case "timestamp":
		as, ok1 := v.(string)
		bs, ok2 := want.(string)
		if !ok1 || !ok2 {
			return false, nil
		}
		a, err1 := parseTimestamp(as)
		b, err2 := parseTimestamp(bs)
		if err1 != nil || err2 != nil {
			return false, nil
		}
		c = a.Compare(b)
	}
	switch {
	case strings.HasSuffix(r.op, "LessThanEquals"):
		return c <= 0, nil
	case strings.HasSuffix(r.op, "GreaterThanEquals"):
		return c >= 0, nil
	case strings.HasSuffix(r.op, "LessThan"):
		return c < 0, nil
	case strings.HasSuffix(r.op, "GreaterThan"):
		return c > 0, nil
	}
	return c == 0, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
