// Command echo is the function lambdatest tests itself with: it answers an
// event with the event itself, fails with a named error when the event asks,
// and exits when told to.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"
)

func main() {
	lambda.Start(func(_ context.Context, in json.RawMessage) (json.RawMessage, error) {
		var ev struct {
			Fail string `json:"fail"`
			Exit int    `json:"exit"`
		}
		_ = json.Unmarshal(in, &ev)
		switch {
		case ev.Exit != 0:
			os.Exit(ev.Exit)
		case ev.Fail != "":
			return nil, messages.InvokeResponse_Error{Type: "Echo.Failed", Message: ev.Fail}
		}
		return in, nil
	})
}
