package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/report"
)

// reportQuery are the query parameters GET /v1/reports/{name} accepts.
var reportQuery = map[string]bool{
	report.ParamFrom: true, report.ParamTo: true, report.ParamUser: true,
	report.ParamSecret: true, report.ParamTicket: true, "format": true,
}

func (a *api) listReports(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"reports": report.Catalog()})
	return nil
}

// runReport streams a report (ServeReport) with the query's parameters.
func (a *api) runReport(w http.ResponseWriter, r *http.Request) error {
	if a.reports == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "reports are not configured on this server")
	}
	q := r.URL.Query()
	for k := range q {
		if !reportQuery[k] {
			return escrow.Errorf(escrow.CodeInvalid, "unknown parameter %q; reports take from, to, user, secret, ticket and format", truncate(k, 64))
		}
	}
	var p report.Params
	var err error
	if p.From, err = timeParam(q.Get(report.ParamFrom), report.ParamFrom); err != nil {
		return err
	}
	if p.To, err = timeParam(q.Get(report.ParamTo), report.ParamTo); err != nil {
		return err
	}
	p.User, p.Secret, p.Ticket = q.Get(report.ParamUser), q.Get(report.ParamSecret), q.Get(report.ParamTicket)
	format := q.Get("format")
	if format == "" {
		format = report.FormatJSON
	}
	return ServeReport(w, r, a.reports, r.PathValue("name"), p, format, a.logger)
}

// ServeReport runs report name as format (CSV downloads as an attachment)
// and streams it to w: the status and headers go out with the first
// bytes, once the service has checked the caller and audited the run;
// until then an error is returned for the caller to answer as usual. An
// error after that can no longer change the status, so the connection is
// aborted instead: the client sees a broken transfer, never a short report
// that looks whole. The web console's downloads use it too.
func ServeReport(w http.ResponseWriter, r *http.Request, reports *report.Service, name string, p report.Params, format string, logger *slog.Logger) error {
	out := &reportOutput{w: w, rc: http.NewResponseController(w), format: format, name: name}
	rw, err := report.NewWriter(format, out)
	if err != nil {
		return err
	}
	err = reports.Run(r.Context(), name, p, &startWriter{RowWriter: rw, out: out})
	if err != nil && !out.wrote {
		w.Header().Del("Content-Disposition")
		return err
	}
	if err != nil {
		logger.WarnContext(r.Context(), "report aborted mid-stream", "report", name,
			"requestId", escrow.RequestInfoFrom(r.Context()).RequestID, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// startWriter sets the output's headers when the service begins the rows.
type startWriter struct {
	report.RowWriter
	out *reportOutput
}

func (s *startWriter) Begin(cols []report.Column) error {
	s.out.start()
	return s.RowWriter.Begin(cols)
}

// reportOutput is the response body of a report. Its headers are set when
// the rows begin and sent with the first bytes; each write pushes the
// write deadline on, so a long report runs as long as the client keeps
// reading.
type reportOutput struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	format string
	name   string
	wrote  bool // bytes went out: the status can no longer change
	pushed time.Time
}

// reportWriteTimeout is how long one write of a report may take.
const reportWriteTimeout = time.Minute

func (o *reportOutput) start() {
	h := o.w.Header()
	h.Set("Content-Type", report.ContentType(o.format))
	if o.format == report.FormatCSV {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return -1
		}, o.name)
		h.Set("Content-Disposition", `attachment; filename="escrow-`+name+"-"+time.Now().UTC().Format("20060102T150405Z")+`.csv"`)
	}
}

func (o *reportOutput) Write(b []byte) (int, error) {
	o.wrote = true
	if now := time.Now(); now.Sub(o.pushed) > reportWriteTimeout/4 {
		o.pushed = now
		_ = o.rc.SetWriteDeadline(now.Add(reportWriteTimeout)) // not every server supports it (Lambda)
	}
	return o.w.Write(b)
}

var _ io.Writer = (*reportOutput)(nil)

// Unwrap lets http.ResponseController reach the server's writer through
// the status recorder (to push a report's write deadline on).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
