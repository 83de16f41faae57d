package awstest

import (
	"net/http"
	"testing"
)

func TestStartAnswers(t *testing.T) {
	m := Start(t)
	resp, err := http.Get(m.Endpoint + "/moto-api/data.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("moto data.json: status %d", resp.StatusCode)
	}
}
