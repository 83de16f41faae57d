package asl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/asl"
)

// BenchmarkPassChain measures a 10-state execution (Pass, Choice and a
// lambda:invoke task) from Start to SUCCEEDED on the memory store.
func BenchmarkPassChain(b *testing.B) {
	var states []string
	for i := 0; i < 8; i++ {
		states = append(states, fmt.Sprintf(`"P%d":{"Type":"Pass","Parameters":{"i":%d,"prev.$":"$"},"Next":"P%d"}`, i, i, i+1))
	}
	states = append(states, `"P8":{"Type":"Choice","Choices":[{"Variable":"$.i","NumericEquals":7,"Next":"T"}],"Default":"T"}`,
		`"T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"f","Payload.$":"$"},"End":true}`)
	def := `{"StartAt":"P0","States":{` + strings.Join(states, ",") + `}}`
	m, err := asl.Parse([]byte(def), nil)
	if err != nil {
		b.Fatal(err)
	}
	echo := func(ctx context.Context, in json.RawMessage) (json.RawMessage, error) { return in, nil }
	r, err := asl.New(asl.Config{Store: asl.NewMemoryStore(), Resources: map[string]asl.Handler{"f": echo}}, map[string]*asl.Machine{"m": m})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, err := r.Start(ctx, "m", "", json.RawMessage(`{"x":1}`))
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Settle(ctx); err != nil {
			b.Fatal(err)
		}
		if d, _ := r.Describe(ctx, id); d.Status != asl.Succeeded {
			b.Fatalf("status %s", d.Status)
		}
	}
}
