package asl_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/asl"
)

func TestParseRejects(t *testing.T) {
	task := func(extra string) string {
		return `{"StartAt":"Notify","States":{"Notify":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
		  "Parameters":{"FunctionName":"f","Payload":{}}` + extra + `,"End":true}}}`
	}
	cases := []struct {
		name, def, want string
	}{
		{"state type", `{"StartAt":"S","States":{"S":{"Type":"Sleep","End":true}}}`, `state "S": state type "Sleep" not supported`},
		{"distributed map", `{"StartAt":"Each","States":{"Each":{"Type":"Map","End":true,"ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED"},"StartAt":"X","States":{"X":{"Type":"Succeed"}}}}}}`, `state "Each": field ItemProcessor.ProcessorConfig.Mode "DISTRIBUTED" not supported`},
		{"map reader", `{"StartAt":"Each","States":{"Each":{"Type":"Map","End":true,"ItemReader":{},"Iterator":{"StartAt":"X","States":{"X":{"Type":"Succeed"}}}}}}`, `state "Each": field ItemReader not supported in a Map state`},
		{"map without processor", `{"StartAt":"Each","States":{"Each":{"Type":"Map","End":true}}}`, `state "Each": exactly one of ItemProcessor and Iterator is required`},
		{"unknown field", `{"StartAt":"S","States":{"S":{"Type":"Pass","ItemsPath":"$","End":true}}}`, `state "S": field ItemsPath not supported in a Pass state`},
		{"top-level field", `{"StartAt":"S","TimeoutSeconds":5,"States":{"S":{"Type":"Succeed"}}}`, `field TimeoutSeconds not supported`},
		{"intrinsic", `{"StartAt":"S","States":{"S":{"Type":"Pass","Parameters":{"h.$":"States.Hash($.a, 'SHA-256')"},"End":true}}}`, `state "S": field Parameters: h.$: intrinsic function States.Hash not supported`},
		{"wildcard path", `{"StartAt":"S","States":{"S":{"Type":"Pass","InputPath":"$.a[*]","End":true}}}`, `state "S": InputPath: path "$.a[*]": unsupported step [*]`},
		{"recursive path", `{"StartAt":"S","States":{"S":{"Type":"Pass","OutputPath":"$..a","End":true}}}`, `state "S": OutputPath`},
		{"context in ResultPath", `{"StartAt":"S","States":{"S":{"Type":"Pass","ResultPath":"$$.a","End":true}}}`, `state "S": ResultPath: context object not allowed`},
		{"lambda qualifier", `{"StartAt":"Notify","States":{"Notify":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"f","Qualifier":"1","Payload":{}},"End":true}}}`, `state "Notify": field Parameters.Qualifier not supported`},
		{"lambda dynamic function", `{"StartAt":"Notify","States":{"Notify":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName.$":"$.f","Payload":{}},"End":true}}}`, `state "Notify": field Parameters.FunctionName must be a literal string`},
		{"other lambda integration", `{"StartAt":"Notify","States":{"Notify":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.sync","End":true}}}`, `state "Notify": resource arn:aws:states:::lambda:invoke.sync not supported`},
		{"heartbeat without callback", task(`,"HeartbeatSeconds":5`), `state "Notify": field HeartbeatSeconds not supported without .waitForTaskToken`},
		{"retry field", task(`,"Retry":[{"ErrorEquals":["X"],"MaxDelaySeconds":3}]`), `state "Notify": field Retry[0].MaxDelaySeconds: not supported`},
		{"States.ALL not last", task(`,"Catch":[{"ErrorEquals":["States.ALL"],"Next":"Notify"},{"ErrorEquals":["X"],"Next":"Notify"}]`), `state "Notify": field Catch[0]: States.ALL must appear alone in the last element`},
		{"choice operator", `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","StringEqualsIgnoreCase":"x","Next":"D"}]},"D":{"Type":"Succeed"}}}`, `state "C": field Choices[0]: field StringEqualsIgnoreCase not supported`},
		{"choice literal type", `{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","NumericEquals":"1","Next":"D"}]},"D":{"Type":"Succeed"}}}`, `state "C": field Choices[0]: field NumericEquals: value must be a number`},
		{"next and end", `{"StartAt":"S","States":{"S":{"Type":"Pass","Next":"S","End":true}}}`, `state "S": exactly one of Next and End:true is required`},
		{"unknown next", `{"StartAt":"S","States":{"S":{"Type":"Pass","Next":"Nowhere"}}}`, `state "S": transition to unknown state "Nowhere"`},
		{"bad timestamp", `{"StartAt":"W","States":{"W":{"Type":"Wait","Timestamp":"tomorrow","End":true}}}`, `state "W": field Timestamp:`},
		{"two waits", `{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"SecondsPath":"$.s","End":true}}}`, `state "W": exactly one of Seconds`},
		{"duplicate names", `{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,"Branches":[{"StartAt":"P","States":{"P":{"Type":"Succeed"}}}]}}}`, `state "P": name used twice`},
		{"branch field", `{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,"Branches":[{"StartAt":"X","States":{"X":{"Type":"Task","Resource":"r","Credentials":{},"End":true}}}]}}}`, `state "X": field Credentials not supported in a Task state`},
		{"format arity", `{"StartAt":"S","States":{"S":{"Type":"Pass","Parameters":{"x.$":"States.MathAdd(1)"},"End":true}}}`, `state "S": field Parameters: x.$: States.MathAdd: wrong number of arguments (1)`},
		{"missing substitution", `{"StartAt":"S","States":{"S":{"Type":"Task","Resource":"${Missing}","End":true}}}`, `no substitution for Missing`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := asl.Parse([]byte(c.def), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestNewRejectsUnboundResources(t *testing.T) {
	def := `{"StartAt":"Notify","States":{"Notify":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
	  "Parameters":{"FunctionName":"${Fn}","Payload":{}},"Next":"Raw"},
	  "Raw":{"Type":"Task","Resource":"arn:aws:lambda:eu-west-1:1:function:raw","End":true}}}`
	m, err := asl.Parse([]byte(def), map[string]string{"Fn": `arn:aws:lambda:eu-west-1:1:function:"tasks"`})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Resources(), " "); got != `arn:aws:lambda:eu-west-1:1:function:"tasks" arn:aws:lambda:eu-west-1:1:function:raw` {
		t.Fatalf("Resources() = %s (substitution must be JSON-escaped, then decoded)", got)
	}
	_, err = asl.New(asl.Config{Store: asl.NewMemoryStore()}, map[string]*asl.Machine{"m": m})
	if err == nil || !strings.Contains(err.Error(), `state "Notify": FunctionName arn:aws:lambda:eu-west-1:1:function:"tasks" not bound`) {
		t.Fatalf("New with nothing bound: %v", err)
	}
	_, err = asl.New(asl.Config{Store: asl.NewMemoryStore(), Resources: map[string]asl.Handler{m.Resources()[0]: func(context.Context, json.RawMessage) (json.RawMessage, error) { return nil, nil }}}, map[string]*asl.Machine{"m": m})
	if err == nil || !strings.Contains(err.Error(), `state "Raw": Resource arn:aws:lambda:eu-west-1:1:function:raw not bound`) {
		t.Fatalf("New with one bound: %v", err)
	}
}

// TestParseStateMachines loads every definition the product ships, so an
// unsupported construct there fails here first.
func TestParseStateMachines(t *testing.T) {
	files, _ := filepath.Glob("../../statemachines/*.asl.json")
	if len(files) == 0 {
		t.Skip("no statemachines/*.asl.json yet")
	}
	for _, f := range files {
		def, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		subs := map[string]string{}
		for _, m := range regexpSubst.FindAllStringSubmatch(string(def), -1) {
			subs[m[1]] = "arn:aws:lambda:us-east-1:123456789012:function:" + m[1]
		}
		if _, err := asl.Parse(def, subs); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

var regexpSubst = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)
