package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/escrow-pam/escrow/internal/client"
)

// TestQLockRoutes checks each QuantumLock method's request line, query and
// body against the API's routes: byte slices travel as standard base64,
// and empty optional fields are left out.
func TestQLockRoutes(t *testing.T) {
	rev := int64(7)
	tests := []struct {
		name         string
		call         func(context.Context, *client.Client) error
		method, path string
		query        string
		body         string
		answer       string
	}{
		{"put key", func(ctx context.Context, c *client.Client) error {
			k, err := c.PutQLockKey(ctx, []byte("pub"), []byte("sealed"))
			if err == nil && k.Fingerprint != "fp" {
				t.Errorf("fingerprint %q, want fp", k.Fingerprint)
			}
			return err
		}, "PUT", "/v1/qlock/key", "", `{"publicKey":"cHVi","sealed":"c2VhbGVk"}`, `{"subject":"alice","fingerprint":"fp"}`},
		{"get own key", func(ctx context.Context, c *client.Client) error {
			k, err := c.QLockKey(ctx)
			if err == nil && string(k.Sealed) != "sealed" {
				t.Errorf("sealed %q, want sealed", k.Sealed)
			}
			return err
		}, "GET", "/v1/qlock/key", "", ``, `{"subject":"alice","sealed":"c2VhbGVk"}`},
		{"public keys", func(ctx context.Context, c *client.Client) error {
			ks, err := c.QLockPublicKeys(ctx, []string{"alice", "carol"})
			if err == nil && (len(ks) != 1 || ks[0].Subject != "carol" || string(ks[0].PublicKey) != "pub") {
				t.Errorf("keys %+v, want carol's", ks)
			}
			return err
		}, "GET", "/v1/qlock/keys", "user=alice&user=carol", ``, `{"keys":[{"subject":"carol","publicKey":"cHVi"}]}`},
		{"lock", func(ctx context.Context, c *client.Client) error {
			s, err := c.LockSecret(ctx, "S1", &client.QLockRequest{Action: client.QLockLock, Blob: []byte("blob"),
				Fields: []string{"password"}, Value: map[string]string{"username": "app"}, Revision: &rev})
			if err == nil && (s.QLock == nil || s.QLock.Members[0] != "alice" || s.PendingVersion != 0) {
				t.Errorf("secret %+v, want its qlock", s)
			}
			return err
		}, "POST", "/v1/secrets/S1/qlock", "",
			`{"action":"lock","blob":"YmxvYg==","fields":["password"],"value":{"username":"app"},"revision":7}`,
			`{"id":"S1","qlock":{"members":["alice"],"fields":["password"]}}`},
		{"share", func(ctx context.Context, c *client.Client) error {
			_, err := c.LockSecret(ctx, "S1", &client.QLockRequest{Action: client.QLockShare, Subject: "carol", Blob: []byte("blob")})
			return err
		}, "POST", "/v1/secrets/S1/qlock", "", `{"action":"share","subject":"carol","blob":"YmxvYg=="}`, `{}`},
		{"revoke", func(ctx context.Context, c *client.Client) error {
			_, err := c.LockSecret(ctx, "S1", &client.QLockRequest{Action: client.QLockRevoke, Subject: "carol", Blob: []byte("blob"), Revision: &rev})
			return err
		}, "POST", "/v1/secrets/S1/qlock", "", `{"action":"revoke","subject":"carol","blob":"YmxvYg==","revision":7}`, `{}`},
		{"relock", func(ctx context.Context, c *client.Client) error {
			_, err := c.LockSecret(ctx, "a/b", &client.QLockRequest{Action: client.QLockRelock, Blob: []byte("blob")})
			return err
		}, "POST", "/v1/secrets/a%2Fb/qlock", "", `{"action":"relock","blob":"YmxvYg=="}`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.Method != tt.method || r.URL.EscapedPath() != tt.path || r.URL.RawQuery != tt.query {
					t.Errorf("request %s %s?%s, want %s %s?%s", r.Method, r.URL.EscapedPath(), r.URL.RawQuery, tt.method, tt.path, tt.query)
				}
				if string(body) != tt.body {
					t.Errorf("body %s, want %s", body, tt.body)
				}
				_, _ = w.Write([]byte(tt.answer))
			}))
			defer srv.Close()
			if err := tt.call(context.Background(), client.New(srv.URL, "tok", srv.Client())); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestQLockErrors checks that the server's refusals reach the caller as
// *APIError with their code and message (the CLI prints them as is).
func TestQLockErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		code   string
	}{
		{"no key", 404, `{"error":{"code":"not_found","message":"you have no QuantumLock key yet: escrow qlock init"}}`, "not_found"},
		{"other key", 409, `{"error":{"code":"conflict","message":"you already have a QuantumLock key"}}`, "conflict"},
		{"not configured", 503, `{"error":{"code":"unavailable","message":"QuantumLock is not configured on this server"}}`, "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			_, err := client.New(srv.URL, "tok", srv.Client()).QLockKey(context.Background())
			if !client.IsCode(err, tt.code) {
				t.Fatalf("error %v, want code %s", err, tt.code)
			}
		})
	}
}
