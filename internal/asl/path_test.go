package asl

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
)

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := decode(json.RawMessage(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPathGet(t *testing.T) {
	input := mustDecode(t, `{"a":{"b":[10,{"c":"x"}],"dotted key":1,"n":null},"big":12345678901234567890}`)
	ctx := mustDecode(t, `{"Execution":{"Name":"e"}}`)
	cases := []struct {
		path, want string
		ok         bool
	}{
		{"$", `{"a":{"b":[10,{"c":"x"}],"dotted key":1,"n":null},"big":12345678901234567890}`, true},
		{"$.a.b[0]", `10`, true},
		{"$.a.b[1].c", `"x"`, true},
		{"$['a']['dotted key']", `1`, true},
		{"$.a.n", `null`, true},
		{"$.big", `12345678901234567890`, true}, // integers keep their digits
		{"$.a.b[2]", ``, false},
		{"$.a.b.c", ``, false},
		{"$.a[0]", ``, false},
		{"$.missing", ``, false},
		{"$$.Execution.Name", `"e"`, true},
	}
	for _, c := range cases {
		jp, err := parsePath(c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		v, ok := jp.get(input, ctx)
		if ok != c.ok || (ok && string(encode(v)) != string(mustEncodeCompact(t, c.want))) {
			t.Errorf("%s = %s, %v; want %s, %v", c.path, encode(v), ok, c.want, c.ok)
		}
	}
	for _, bad := range []string{"a", "$.a[*]", "$..a", "$.a[?(@.b)]", "$.a[-1]", "$.a[0:2]", "$.", "$[", "$.a b"} {
		if _, err := parsePath(bad); err == nil {
			t.Errorf("parsePath(%q) accepted", bad)
		}
	}
}

func mustEncodeCompact(t *testing.T, s string) []byte {
	t.Helper()
	return encode(mustDecode(t, s))
}

func TestPathSet(t *testing.T) {
	cases := []struct{ root, path, value, want string }{
		{`{"a":1}`, "$", `2`, `2`},
		{`{"a":1}`, "$.b", `2`, `{"a":1,"b":2}`},
		{`{"a":1}`, "$.x.y.z", `2`, `{"a":1,"x":{"y":{"z":2}}}`},
		{`{"a":{"k":1}}`, "$.a.j", `2`, `{"a":{"k":1,"j":2}}`},
		{`{"a":[1,2]}`, "$.a[1]", `9`, `{"a":[1,9]}`},
	}
	for _, c := range cases {
		jp, _ := parsePath(c.path)
		root := mustDecode(t, c.root)
		got, err := jp.set(root, mustDecode(t, c.value))
		if err != nil || string(encode(got)) != string(mustEncodeCompact(t, c.want)) {
			t.Errorf("set %s in %s = %s, %v; want %s", c.path, c.root, encode(got), err, c.want)
		}
		if string(encode(root)) != string(mustEncodeCompact(t, c.root)) {
			t.Errorf("set modified its input: %s", encode(root))
		}
	}
	jp, _ := parsePath("$.a.b")
	var rt *runtimeError
	if _, err := jp.set(mustDecode(t, `{"a":"s"}`), 1); !errors.As(err, &rt) || rt.name != "States.ResultPathMatchFailure" {
		t.Errorf("set into a string: %v", err)
	}
}

func evalDynamic(t *testing.T, expr, input string) (any, error) {
	t.Helper()
	tm, err := parseDynamic(expr)
	if err != nil {
		t.Fatalf("parse %s: %v", expr, err)
	}
	return tm.eval(mustDecode(t, input), mustDecode(t, `{"Execution":{"Name":"run"}}`))
}

func TestIntrinsics(t *testing.T) {
	in := `{"s":"x","n":3,"f":2.5,"arr":[1,"a",{"k":true}],"obj":{"b":1,"a":[2]},"json":"{\"z\":[1,{\"y\":null}]}","nul":null}`
	cases := []struct{ expr, want string }{
		{`States.Format('{} and {}', $.s, $.n)`, `"x and 3"`},
		{`States.Format('{}|{}|{}|{}', $.arr, $.obj, $.nul, $.f)`, `"[1, a, {k=true}]|{a=[2], b=1}|null|2.5"`},
		{`States.Format('esc \{\} \'q\' \\ {}', $$.Execution.Name)`, `"esc {} 'q' \\ run"`},
		{`States.Format('none')`, `"none"`},
		{`States.StringToJson($.json)`, `{"z":[1,{"y":null}]}`},
		{`States.JsonToString($.obj)`, `"{\"a\":[2],\"b\":1}"`},
		{`States.Array()`, `[]`},
		{`States.Array($.s, 1, 'two', true, null, States.MathAdd(1, 2))`, `["x",1,"two",true,null,3]`},
		{`States.MathAdd($.n, -10)`, `-7`},
		{`States.StringToJson(States.JsonToString($.arr))`, `[1,"a",{"k":true}]`},
	}
	for _, c := range cases {
		got, err := evalDynamic(t, c.expr, in)
		if err != nil || string(encode(got)) != string(mustEncodeCompact(t, c.want)) {
			t.Errorf("%s = %s, %v; want %s", c.expr, encode(got), err, c.want)
		}
	}
	u, err := evalDynamic(t, `States.UUID()`, in)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u.(string)) {
		t.Errorf("UUID = %v, %v", u, err)
	}
	for _, bad := range []string{
		`States.Format('{} {}', $.s)`, `States.Format('{}', $.s, $.n)`, `States.StringToJson($.s)`,
		`States.StringToJson($.n)`, `States.MathAdd($.f, 1)`, `States.MathAdd($.s, 1)`, `States.Format('{}', $.missing)`,
	} {
		if _, err := evalDynamic(t, bad, in); err == nil {
			t.Errorf("%s succeeded", bad)
		}
	}
	for _, bad := range []string{`States.Format($.s)`, `States.Nope()`, `States.Array(`, `States.Array('x)`, `States.UUID() extra`, `States.Array(bogus)`} {
		if _, err := parseDynamic(bad); err == nil {
			t.Errorf("parse %s succeeded", bad)
		}
	}
}

func TestChoiceRules(t *testing.T) {
	in := mustDecode(t, `{"s":"abc","n":2,"t":"2026-01-01T00:00:00Z","b":false,"z":null}`)
	cases := []struct {
		rule string
		want bool
	}{
		{`{"Variable":"$.s","StringMatches":"a*c"}`, true},
		{`{"Variable":"$.s","StringMatches":"a\\*c"}`, false},
		{`{"Variable":"$.s","StringEquals":"abc"}`, true},
		{`{"Variable":"$.n","StringEquals":"2"}`, false},
		{`{"Variable":"$.s","NumericEquals":2}`, false},
		{`{"Variable":"$.n","NumericGreaterThanEquals":2.0}`, true},
		{`{"Variable":"$.t","TimestampLessThan":"2026-01-01T00:00:01+00:00"}`, true},
		{`{"Variable":"$.t","TimestampEquals":"2026-01-01T01:00:00+01:00"}`, true},
		{`{"Variable":"$.s","TimestampEquals":"2026-01-01T00:00:00Z"}`, false},
		{`{"Variable":"$.b","BooleanEquals":false}`, true},
		{`{"Variable":"$.z","IsNull":true}`, true},
		{`{"Variable":"$.s","IsNull":false}`, true},
		{`{"Variable":"$.nope","IsPresent":false}`, true},
		{`{"Variable":"$.t","IsTimestamp":true}`, true},
		{`{"Variable":"$.s","IsString":false}`, false},
		{`{"Not":{"Or":[{"Variable":"$.n","NumericLessThan":1},{"Variable":"$.s","StringGreaterThan":"b"}]}}`, true},
		{`{"And":[{"Variable":"$.n","NumericLessThanEquals":2},{"Variable":"$.s","StringLessThanEquals":"abc"}]}`, true},
		{`{"Variable":"$.n","NumericGreaterThanPath":"$.n"}`, false},
	}
	for _, c := range cases {
		r, err := parseRule(json.RawMessage(c.rule), false)
		if err != nil {
			t.Fatalf("%s: %v", c.rule, err)
		}
		got, err := r.eval(in, nil)
		if err != nil || got != c.want {
			t.Errorf("%s = %v, %v; want %v", c.rule, got, err, c.want)
		}
	}
	r, _ := parseRule(json.RawMessage(`{"Variable":"$.n","NumericEqualsPath":"$.missing"}`), false)
	if _, err := r.eval(in, nil); err == nil {
		t.Error("a missing comparand path must be a runtime error")
	}
}
