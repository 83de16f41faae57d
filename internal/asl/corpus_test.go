package asl_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/asl/asltest"
	"github.com/escrow-pam/escrow/internal/awstest"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus/*.golden.json from the embedded runner")

const tasksArn = "arn:aws:lambda:us-east-1:123456789012:function:tasks"

var corpusSubs = map[string]string{"TasksFunctionArn": tasksArn}

// corpusHandlers returns the deterministic Go task handlers of the corpus,
// one "tasks" function dispatching on payload.task like the real one.
func corpusHandlers() map[string]asl.Handler {
	var mu sync.Mutex
	flakyCalls := 0
	return map[string]asl.Handler{tasksArn: func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
		var p map[string]any
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, err
		}
		var out any
		switch p["task"] {
		case "lookup":
			groups := []string{"ops"}
			if p["user"] == "root" {
				groups = []string{}
			}
			out = map[string]any{"name": p["user"], "groups": groups}
		case "enrich":
			prof, _ := p["profile"].(map[string]any)
			groups, _ := prof["groups"].([]any)
			out = map[string]any{"name": prof["name"], "admin": len(groups) > 0}
		case "echo":
			out = p
		case "flaky":
			mu.Lock()
			flakyCalls++
			n := flakyCalls
			mu.Unlock()
			if n < 3 {
				return nil, &asl.TaskError{Name: "Flaky", Cause: fmt.Sprintf("call %d fails", n)}
			}
			out = map[string]any{"calls": n}
		case "fail":
			return nil, &asl.TaskError{Name: p["error"].(string), Cause: "failed on purpose"}
		case "approve", "reject", "ignore":
			out = nil // callbacks: the decision comes later
		default:
			return nil, fmt.Errorf("unknown task %v", p["task"])
		}
		return json.Marshal(out)
	}}
}

func corpusRespond(payload json.RawMessage) (json.RawMessage, error, bool) {
	var p map[string]any
	_ = json.Unmarshal(payload, &p)
	switch p["task"] {
	case "approve":
		return json.RawMessage(fmt.Sprintf(`{"approved":true,"by":%q}`, p["who"])), nil, true
	case "reject":
		return nil, &asl.TaskError{Name: "Rejected", Cause: "no way"}, true
	}
	return nil, nil, false
}

type corpusCase struct {
	name    string // file base + input index
	machine *asl.Machine
	c       asltest.Case
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*.asl.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var out []corpusCase
	for _, f := range files {
		def, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := asl.Parse(def, corpusSubs)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := strings.TrimSuffix(filepath.Base(f), ".asl.json")
		raw, err := os.ReadFile(strings.TrimSuffix(f, ".asl.json") + ".inputs.json")
		if err != nil {
			t.Fatal(err)
		}
		var inputs []json.RawMessage
		if err := json.Unmarshal(raw, &inputs); err != nil {
			t.Fatalf("%s inputs: %v", base, err)
		}
		for i, in := range inputs {
			name := fmt.Sprintf("%s-%d", base, i)
			out = append(out, corpusCase{name: name, machine: m, c: asltest.Case{
				Name: name, Definition: def, Substitutions: corpusSubs, Input: in,
				Handlers: corpusHandlers, Respond: corpusRespond,
			}})
		}
	}
	return out
}

// TestCorpusGolden runs every corpus machine in the embedded runner and
// checks the result against its golden file (the same results moto gives,
// see TestCorpusAgreesWithMoto).
func TestCorpusGolden(t *testing.T) {
	for _, cc := range loadCorpus(t) {
		t.Run(cc.name, func(t *testing.T) {
			got := asltest.RunLocal(t, cc.c)
			golden := filepath.Join("testdata/corpus", cc.name+".golden.json")
			if *update {
				b, _ := json.MarshalIndent(got, "", "  ")
				if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("golden (run with -update to create): %v", err)
			}
			var want asltest.Result
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			asltest.Compare(t, cc.machine, got, want)
		})
	}
}

// TestCorpusAgreesWithMoto runs every corpus machine in the embedded
// runner and in moto's Step Functions and compares the states entered and
// the final output (DESIGN 7a).
func TestCorpusAgreesWithMoto(t *testing.T) {
	m := awstest.Start(t)
	client := sfn.NewFromConfig(m.MustConfig(t))
	for _, cc := range loadCorpus(t) {
		t.Run(cc.name, func(t *testing.T) {
			local := asltest.RunLocal(t, cc.c)
			moto := asltest.RunMoto(t, client, cc.c)
			asltest.Compare(t, cc.machine, local, moto)
		})
	}
}
