package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/client"
)

// TestReport checks the request line of a report and that its body is
// handed over as streamed, with the CSV file name.
func TestReport(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="escrow-ticket-20261122T100000Z.csv"`)
		io.WriteString(w, "time,actor\r\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "2026-11-22T10:00:00.000Z,alice\r\n")
	}))
	defer srv.Close()
	c := client.New(srv.URL, "tok", nil)
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s, err := c.Report(context.Background(), "ticket", client.ReportParams{Ticket: "CHG 1", From: from, Format: "csv"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/v1/reports/ticket" || got.URL.Query().Get("ticket") != "CHG 1" || got.URL.Query().Get("format") != "csv" ||
		got.URL.Query().Get("from") != "2026-11-01T00:00:00Z" || got.URL.Query().Has("to") || got.URL.Query().Has("user") ||
		got.Header.Get("Authorization") != "Bearer tok" {
		t.Errorf("request = %s %v", got.URL, got.Header)
	}
	if string(body) != "time,actor\r\n2026-11-22T10:00:00.000Z,alice\r\n" || s.Filename != "escrow-ticket-20261122T100000Z.csv" ||
		s.ContentType != "text/csv; charset=utf-8" {
		t.Errorf("stream = %q %q %q", body, s.Filename, s.ContentType)
	}
}

// TestReportErrors: an error answer is an *APIError; a transfer the server
// aborts mid-stream fails the read instead of ending cleanly.
func TestReportErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/reports/denied" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"forbidden","message":"reports need the admin or auditor role","requestId":"R1"}}`)
			return
		}
		io.WriteString(w, "[\n{\"a\":1}")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	c := client.New(srv.URL, "tok", nil)
	_, err := c.Report(context.Background(), "denied", client.ReportParams{})
	if !client.IsCode(err, "forbidden") {
		t.Fatalf("error = %v, want forbidden", err)
	}
	s, err := c.Report(context.Background(), "cut", client.ReportParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.ReadAll(s); err == nil {
		t.Fatal("a cut transfer read as complete")
	}
}

func TestReports(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/reports" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reports":[{"name":"ticket","description":"d","params":[{"name":"ticket","required":true,"doc":"n"}],"columns":[{"name":"time","doc":"t"}]}]}`)
	}))
	defer srv.Close()
	rs, err := client.New(srv.URL, "tok", nil).Reports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Name != "ticket" || !rs[0].Params[0].Required || rs[0].Columns[0].Name != "time" {
		t.Errorf("reports = %+v", rs)
	}
}
