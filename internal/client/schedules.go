package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// ReportSchedules lists the report schedules (admin or auditor).
func (c *Client) ReportSchedules(ctx context.Context) ([]*escrow.ReportSchedule, error) {
	var out struct {
		Schedules []*escrow.ReportSchedule `json:"schedules"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/report-schedules", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Schedules, nil
}

// PutReportSchedule creates or replaces schedule s.Name (admin).
func (c *Client) PutReportSchedule(ctx context.Context, s *escrow.ReportSchedule) (*escrow.ReportSchedule, error) {
	body := map[string]any{"report": s.Report, "params": s.Params, "every": s.Every, "at": s.At, "recipients": s.Recipients}
	var out escrow.ReportSchedule
	if err := c.do(ctx, http.MethodPut, "/v1/report-schedules/"+url.PathEscape(s.Name), nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteReportSchedule deletes a schedule (admin).
func (c *Client) DeleteReportSchedule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/report-schedules/"+url.PathEscape(name), nil, nil, nil)
}
