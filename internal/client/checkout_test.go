package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// TestCheckoutRoutes checks each checkout method's request line and body
// against the API's routes: optional bodies are left out when empty, and a
// nil rotation is sent as an explicit null (the route requires the field).
func TestCheckoutRoutes(t *testing.T) {
	tests := []struct {
		name         string
		call         func(context.Context, *client.Client) error
		method, path string
		body         string
	}{
		{"checkout", func(ctx context.Context, c *client.Client) error {
			_, err := c.Checkout(ctx, "S1", "INC1 db down", "INC1")
			return err
		}, "POST", "/v1/secrets/S1/checkout", `{"comment":"INC1 db down","ticket":"INC1"}`},
		{"checkout without comment", func(ctx context.Context, c *client.Client) error {
			_, err := c.Checkout(ctx, "S1", "", "")
			return err
		}, "POST", "/v1/secrets/S1/checkout", `{}`},
		{"status", func(ctx context.Context, c *client.Client) error {
			_, err := c.CheckoutStatus(ctx, "S1")
			return err
		}, "GET", "/v1/secrets/S1/checkout", ``},
		{"checkin", func(ctx context.Context, c *client.Client) error {
			_, err := c.Checkin(ctx, "S1", "")
			return err
		}, "POST", "/v1/secrets/S1/checkin", ``},
		{"force checkin", func(ctx context.Context, c *client.Client) error {
			_, err := c.ForceCheckin(ctx, "S1", "holder away")
			return err
		}, "POST", "/v1/secrets/S1/force-checkin", `{"comment":"holder away"}`},
		{"extend", func(ctx context.Context, c *client.Client) error {
			_, err := c.Extend(ctx, "S1")
			return err
		}, "POST", "/v1/secrets/S1/extend", ``},
		{"rotate now", func(ctx context.Context, c *client.Client) error {
			_, err := c.RotateNow(ctx, "S1")
			return err
		}, "POST", "/v1/secrets/S1/rotate", ``},
		{"set rotation", func(ctx context.Context, c *client.Client) error {
			_, err := c.SetRotation(ctx, "S1", &escrow.RotationConfig{Target: escrow.TargetPostgres, Privileged: "P1"})
			return err
		}, "PUT", "/v1/secrets/S1/rotation", `{"rotation":{"target":"postgres","privileged":"P1","password":{}}}`},
		{"clear rotation", func(ctx context.Context, c *client.Client) error {
			_, err := c.SetRotation(ctx, "S1", nil)
			return err
		}, "PUT", "/v1/secrets/S1/rotation", `{"rotation":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != tt.method || r.URL.Path != tt.path {
					t.Errorf("request %s %s, want %s %s", r.Method, r.URL.Path, tt.method, tt.path)
				}
				if string(body) != tt.body {
					t.Errorf("body %s, want %s", body, tt.body)
				}
				_, _ = w.Write([]byte(`{}`))
			}))
			defer srv.Close()
			if err := tt.call(context.Background(), client.New(srv.URL, "tok", srv.Client())); err != nil {
				t.Fatal(err)
			}
		})
	}
}
