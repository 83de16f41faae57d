package client

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// ReportParams are the parameters of GET /v1/reports/{name}; zero fields
// are left out. Each report takes only some of them (see Reports).
type ReportParams struct {
	From, To time.Time
	User     string // a subject
	Secret   string // a secret's id or full /path
	Ticket   string // a change or incident number
	Format   string // json (default), jsonl or csv
}

// ReportInfo describes one report the server offers.
type ReportInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Params      []struct {
		Name     string `json:"name"`
		Required bool   `json:"required"`
		Doc      string `json:"doc"`
	} `json:"params"`
	Columns []struct {
		Name string `json:"name"`
		Doc  string `json:"doc"`
	} `json:"columns"`
}

// Reports lists the reports, their parameters and their columns.
func (c *Client) Reports(ctx context.Context) ([]ReportInfo, error) {
	var out struct {
		Reports []ReportInfo `json:"reports"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/reports", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Reports, nil
}

// ReportStream is a report's body as the server streams it. A transfer
// the server cut short (it aborts the connection when a report fails
// after its first row) fails Read with an error, never a clean io.EOF.
type ReportStream struct {
	io.ReadCloser
	ContentType string
	Filename    string // from Content-Disposition (CSV), or ""
}

// Report runs report name and returns its streamed body; the caller reads
// it to the end and closes it. The request is bounded only by ctx, not by
// the client's http.Client timeout as a whole if it has none: give a
// client without Timeout for large reports.
func (c *Client) Report(ctx context.Context, name string, p ReportParams) (*ReportStream, error) {
	q := url.Values{}
	if !p.From.IsZero() {
		q.Set("from", p.From.Format(time.RFC3339Nano))
	}
	if !p.To.IsZero() {
		q.Set("to", p.To.Format(time.RFC3339Nano))
	}
	set(q, "user", p.User)
	set(q, "secret", p.Secret)
	set(q, "ticket", p.Ticket)
	set(q, "format", p.Format)
	u := c.base + "/v1/reports/" + url.PathEscape(name)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	ua := c.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	req.Header.Set("User-Agent", ua)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/v1/reports/%s: %w", c.base, name, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		return nil, decodeError(resp, data)
	}
	s := &ReportStream{ReadCloser: resp.Body, ContentType: resp.Header.Get("Content-Type")}
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		s.Filename = params["filename"]
	}
	return s, nil
}
