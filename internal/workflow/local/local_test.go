package local

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/escrow"
)

const def = `{"StartAt":"Await","States":{"Await":{"Type":"Task",
 "Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
 "Parameters":{"FunctionName":"fn","Payload":{"requestId.$":"$.requestId","token.$":"$$.Task.Token"}},
 "TimeoutSecondsPath":"$.pendingSeconds","ResultPath":"$.decision","End":true}}}`

func TestStartAndAnswer(t *testing.T) {
	ctx := context.Background()
	w := New("m")
	if err := w.StartRequest(ctx, "r1", time.Minute); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("start before Bind: %v", err)
	}
	m, err := asl.Parse([]byte(def), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var token string
	r, err := asl.New(asl.Config{Store: asl.NewMemoryStore(), Resources: map[string]asl.Handler{"fn": func(_ context.Context, in json.RawMessage) (json.RawMessage, error) {
		var p struct{ RequestID, Token string }
		json.Unmarshal(in, &p)
		mu.Lock()
		token = p.Token
		mu.Unlock()
		return json.RawMessage(`{}`), nil
	}}}, map[string]*asl.Machine{"m": m})
	if err != nil {
		t.Fatal(err)
	}
	w.Bind(r)
	if err := w.StartRequest(ctx, "r1", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// As in Step Functions: the same name and input is the same execution;
	// the same name with another input is refused.
	if err := w.StartRequest(ctx, "r1", 2*time.Second); err != nil {
		t.Fatalf("idempotent start: %v", err)
	}
	if err := w.StartRequest(ctx, "r1", 5*time.Second); err == nil {
		t.Fatal("a second execution of the same request started")
	}
	r.Settle(ctx)
	mu.Lock()
	tok := token
	mu.Unlock()
	if tok == "" {
		t.Fatal("the task never got its token")
	}
	if err := w.SendTaskSuccess(ctx, tok, map[string]string{"status": "approved"}); err != nil {
		t.Fatal(err)
	}
	r.Settle(ctx)
	// Starting again with the same input returns the same execution's id.
	id, err := r.Start(ctx, "m", "request-r1", json.RawMessage(`{"requestId":"r1","pendingSeconds":2}`))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := r.Describe(ctx, id)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	var out struct {
		RequestID      string `json:"requestId"`
		PendingSeconds int64  `json:"pendingSeconds"`
		Decision       struct{ Status string }
	}
	json.Unmarshal(ex.Output, &out)
	if ex.Status != asl.Succeeded || out.RequestID != "r1" || out.PendingSeconds != 2 || out.Decision.Status != "approved" {
		t.Fatalf("execution %s: %s", ex.Status, ex.Output)
	}
	if err := w.SendTaskSuccess(ctx, tok, map[string]string{}); err == nil {
		t.Fatal("a finished token answered twice")
	}
}
