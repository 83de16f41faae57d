package sfn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestConvertError(t *testing.T) {
	cases := []struct {
		err  error
		want *escrow.Error
	}{
		{&types.TaskDoesNotExist{}, escrow.ErrNotFound},
		{&types.TaskTimedOut{}, escrow.ErrNotFound},
		{&types.InvalidToken{}, escrow.ErrNotFound},
		{&types.ExecutionAlreadyExists{}, escrow.ErrConflict},
		{&types.StateMachineDoesNotExist{}, escrow.ErrUnavailable},
		{&smithy.GenericAPIError{Code: "ValidationException", Fault: smithy.FaultClient}, escrow.ErrInternal},
		{&smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}, escrow.ErrUnavailable},
		{errors.New("dial tcp: connection refused"), escrow.ErrUnavailable},
	}
	for _, c := range cases {
		if got := convertError("op", c.err); !errors.Is(got, c.want) {
			t.Errorf("convertError(%T) = %v, want %s", c.err, got, c.want.Code)
		}
	}
	if convertError("op", nil) != nil {
		t.Fatal("nil error converted")
	}
}

// TestOnMoto starts an execution that waits on a task token and answers it.
func TestOnMoto(t *testing.T) {
	m := awstest.Start(t)
	client := sfn.NewFromConfig(m.MustConfig(t))
	ctx := context.Background()
	def := `{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":30,"End":true}}}`
	sm, err := client.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{Name: aws.String("access-request"),
		Definition: aws.String(def), RoleArn: aws.String("arn:aws:iam::123456789012:role/escrow")})
	if err != nil {
		t.Fatal(err)
	}
	w := New(client, *sm.StateMachineArn)
	if err := w.StartRequest(ctx, "01TEST", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	execs, err := client.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: sm.StateMachineArn})
	if err != nil || len(execs.Executions) != 1 || *execs.Executions[0].Name != "request-01TEST" {
		t.Fatalf("executions: %+v %v", execs, err)
	}
	d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: execs.Executions[0].ExecutionArn})
	if err != nil || *d.Input != `{"requestId":"01TEST","pendingSeconds":90}` {
		t.Fatalf("input: %v %v", aws.ToString(d.Input), err)
	}
	if err := w.StartRequest(ctx, "01TEST", time.Minute); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("second start: %v", err)
	}
	err = w.SendTaskSuccess(ctx, "not-a-token-SECRETCAPABILITY", map[string]string{"status": "approved"})
	if !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("bad token: %v", err)
	}
	if strings.Contains(err.Error(), "SECRETCAPABILITY") {
		t.Fatalf("the error quotes the task token: %v", err)
	}
}
