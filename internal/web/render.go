package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// view is what every page template gets: the layout's parts and the
// page's own Data.
type view struct {
	Title  string
	Error  string // shown in an alert at the top of the page
	Notice string // a success message
	Retry  string // on error pages: a link to try again
	Nav    string // the current section, for aria-current
	User   *escrow.Principal
	CSRF   string
	Back   string // the page's own path, sent with its forms
	Now    time.Time
	Data   any
}

// IsAuditor says whether the user sees the audit and report pages.
func (v *view) IsAuditor() bool {
	return v.User != nil && (v.User.IsAdmin() || v.User.HasRole(escrow.RoleAuditor))
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"left":  func(now, t time.Time) string { return humanLeft(t.Sub(now)) },
	"dur":   func(d time.Duration) string { return humanDuration(d) },
	"join":  strings.Join,
	"deref": func(p *bool) bool { return p != nil && *p },
	"statusClass": func(s any) string {
		switch fmt.Sprint(s) {
		case "approved", "active", "success":
			return "ok"
		case "pending", "rotating":
			return "wait"
		case "denied", "failed", "rotation_failed", "revoked", "timed_out":
			return "bad"
		}
		return "off"
	},
	"plus": func(a, b int) int { return a + b },
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse layout: %w", err)
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if path.Base(n) == "layout.html" {
			continue
		}
		t, err := layout.Clone()
		if err == nil {
			t, err = t.ParseFS(assets, n)
		}
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", n, err)
		}
		pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return pages, nil
}

// render writes a page. It renders into a buffer first, so a template
// error becomes a clean 500 rather than half a page.
func (c *console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, v *view) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page template", http.StatusInternalServerError)
		return
	}
	if s != nil {
		v.User = &s.Principal
		v.CSRF = s.csrf()
	}
	if v.Back == "" {
		v.Back = r.URL.RequestURI()
		if r.Method != http.MethodGet {
			v.Back = safePath(r.PostForm.Get("back"))
		}
	}
	v.Now = c.clock.Now()
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.logger.ErrorContext(r.Context(), "web template", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// humanLeft says how long until a deadline, for people: "42 min left".
func humanLeft(d time.Duration) string {
	if d <= 0 {
		return "ended"
	}
	return humanDuration(d) + " left"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}
