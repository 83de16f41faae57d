package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/escrow-pam/escrow/internal/client"
)

// TestErrorDecoding checks that every shape of error answer becomes an
// *APIError with the status, code, message and request id a caller needs.
func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   client.APIError
		text   string
	}{
		{
			name:   "api error body",
			status: http.StatusForbidden,
			body:   `{"error":{"code":"forbidden","message":"you may not reveal this secret","requestId":"req-1"}}`,
			want:   client.APIError{Status: 403, Code: "forbidden", Message: "you may not reveal this secret", RequestID: "req-1"},
			text:   "you may not reveal this secret (forbidden, request req-1)",
		},
		{
			name:   "api error without request id",
			status: http.StatusConflict,
			body:   `{"error":{"code":"conflict","message":"revision moved on"}}`,
			want:   client.APIError{Status: 409, Code: "conflict", Message: "revision moved on"},
			text:   "revision moved on (conflict)",
		},
		{
			name:   "request id from header",
			status: http.StatusNotFound,
			header: map[string]string{"X-Request-Id": "hdr-7"},
			body:   `{"error":{"code":"not_found","message":"secret not found"}}`,
			want:   client.APIError{Status: 404, Code: "not_found", Message: "secret not found", RequestID: "hdr-7"},
			text:   "secret not found (not_found, request hdr-7)",
		},
		{
			name:   "gateway authorizer body",
			status: http.StatusUnauthorized,
			body:   `{"message":"Unauthorized"}`,
			want:   client.APIError{Status: 401, Code: "unauthenticated", Message: "Unauthorized"},
			text:   "Unauthorized (unauthenticated)",
		},
		{
			name:   "html from a proxy",
			status: http.StatusBadGateway,
			body:   `<html><body>bad gateway</body></html>`,
			want:   client.APIError{Status: 502, Code: "unavailable", Message: "server answered 502 Bad Gateway"},
			text:   "server answered 502 Bad Gateway (unavailable)",
		},
		{
			name:   "empty body",
			status: http.StatusInternalServerError,
			want:   client.APIError{Status: 500, Code: "internal", Message: "server answered 500 Internal Server Error"},
			text:   "server answered 500 Internal Server Error (internal)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("Authorization = %q, want the bearer token", got)
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()

			_, err := client.New(srv.URL, "tok", srv.Client()).GetSecret(context.Background(), "01ABC")
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *client.APIError", err, err)
			}
			if *apiErr != tt.want {
				t.Errorf("APIError = %+v, want %+v", *apiErr, tt.want)
			}
			if got := apiErr.Error(); got != tt.text {
				t.Errorf("Error() = %q, want %q", got, tt.text)
			}
			if !client.IsCode(err, tt.want.Code) {
				t.Errorf("IsCode(err, %q) = false", tt.want.Code)
			}
		})
	}
}

// TestSecretByPathNotFound checks that an empty path lookup is reported as
// not_found rather than as a nil secret.
func TestSecretByPathNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query().Get("path"); got != "/prod/db/admin" {
			t.Errorf("path query = %q", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-list")
		_, _ = w.Write([]byte(`{"secrets":[],"next":""}`))
	}))
	defer srv.Close()

	s, err := client.New(srv.URL, "tok", srv.Client()).SecretByPath(context.Background(), "/prod/db/admin")
	if s != nil || !client.IsCode(err, "not_found") {
		t.Fatalf("SecretByPath = %v, %v; want nil, not_found", s, err)
	}
	// The lookup's request id lets the user find it in the audit trail.
	if want := "no secret at /prod/db/admin that you can see (not_found, request req-list)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err.Error(), want)
	}
}

// TestNoContent checks that a 204 answer is success with nothing to decode.
func TestNoContent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete || r.URL.Path != "/v1/secrets/01ABC" {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	if err := client.New(srv.URL, "tok", srv.Client()).DeleteSecret(context.Background(), "01ABC"); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
}
