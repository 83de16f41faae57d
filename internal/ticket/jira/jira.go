// Package jira adapts Jira (Cloud and Service Management, REST API v3) to
// the ticket port: GET /rest/api/3/issue/{key} for a lookup, POST
// /rest/api/3/issue/{key}/comment with an Atlassian Document Format body
// for write-back. It authenticates with basic auth (email and API token,
// given as Credentials.Username and Password) or a bearer token.
//
// Jira has no built-in planned window or configuration item: sites keep
// them in custom fields, named by the Options of the system's
// configuration.
//
// It must never put a credential into an error, a log line or an audit
// record, and never grant anything on an answer it does not understand.
package jira

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Option keys understood in Config.Options.
const (
	// OptStartField and OptEndField name the custom fields (for example
	// customfield_10021) holding the planned window: a date-time or a date.
	OptStartField = "startField"
	OptEndField   = "endField"
	// OptCIField names a custom field holding the configuration item: a
	// string, or an option/object with a value or name.
	OptCIField = "ciField"
	// OptKindPrefix + an issue type name maps that type to a kind, e.g.
	// "kind.Normal Change" = "change". "Change" and "Incident" map by
	// default; any other type is not a ticket Escrow accepts.
	OptKindPrefix = "kind."
)

// Config configures one Jira site.
type Config struct {
	Name        string // the configured system's name, copied into each Ticket
	BaseURL     string // e.g. https://your-domain.atlassian.net
	Credentials ticket.Credentials
	Timeout     time.Duration // 0 = ticket.DefaultTimeout
	HTTPClient  *http.Client  // nil = a fresh client
	Options     map[string]string
}

// System is a Jira site.
type System struct {
	name                       string
	client                     *ticket.Client
	startField, endField, ciFd string
	kinds                      map[string]ticket.Kind
	fields                     string
}

var _ ticket.System = (*System)(nil)

var customFieldRE = regexp.MustCompile(`^customfield_[0-9]{1,12}$`)

// New returns a System. Unknown options, or custom field ids that are not
// customfield_N, are refused.
func New(cfg Config) (*System, error) {
	c := cfg.Credentials
	if c.Token == "" && (c.Username == "" || c.Password == "") {
		return nil, escrow.Errorf(escrow.CodeInvalid, "Jira needs an email and API token, or a bearer token, in its credential secret")
	}
	s := &System{name: cfg.Name, kinds: map[string]ticket.Kind{"Change": ticket.Change, "Incident": ticket.Incident}}
	for k, v := range cfg.Options {
		switch {
		case k == OptStartField || k == OptEndField || k == OptCIField:
			if !customFieldRE.MatchString(v) {
				return nil, escrow.Errorf(escrow.CodeInvalid, "Jira option %s must be a custom field id like customfield_10021", k)
			}
			switch k {
			case OptStartField:
				s.startField = v
			case OptEndField:
				s.endField = v
			default:
				s.ciFd = v
			}
		case strings.HasPrefix(k, OptKindPrefix) && len(k) > len(OptKindPrefix):
			switch ticket.Kind(v) {
			case ticket.Change, ticket.Incident:
				s.kinds[strings.TrimPrefix(k, OptKindPrefix)] = ticket.Kind(v)
			default:
				return nil, escrow.Errorf(escrow.CodeInvalid, "Jira option %s must be change or incident", k)
			}
		default:
			return nil, escrow.Errorf(escrow.CodeInvalid, "unknown Jira option %q (known: startField, endField, ciField, kind.<issue type>)", k)
		}
	}
	fields := []string{"summary", "status", "assignee", "issuetype"}
	for _, f := range []string{s.startField, s.endField, s.ciFd} {
		if f != "" {
			fields = append(fields, f)
		}
	}
	s.fields = strings.Join(fields, ",")
	cl, err := ticket.NewClient(cfg.BaseURL, cfg.HTTPClient, cfg.Timeout, ticket.Basic(c))
	if err != nil {
		return nil, err
	}
	s.client = cl
	return s, nil
}

// keyRE is an issue key. Anything else never reaches the URL.
var keyRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,254}-[0-9]{1,18}$`)

func (s *System) check(number string) error {
	if !keyRE.MatchString(number) {
		return &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("%q is not a Jira issue key", number)}
	}
	return nil
}

func (s *System) notFound(number string) error {
	return &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("no issue %s in %s", number, s.name)}
}

// issue is the part of the documented issue answer Escrow reads. Fields
// are decoded one by one: custom fields vary by site.
type issue struct {
	Key    string                     `json:"key"`
	Fields map[string]json.RawMessage `json:"fields"`
}

type user struct {
	AccountID    string `json:"accountId"`
	EmailAddress string `json:"emailAddress"`
	DisplayName  string `json:"displayName"`
}

// Lookup implements ticket.System.
func (s *System) Lookup(ctx context.Context, number string) (*ticket.Ticket, error) {
	if err := s.check(number); err != nil {
		return nil, err
	}
	var is issue
	err := s.client.Do(ctx, http.MethodGet, "/rest/api/3/issue/"+number, url.Values{"fields": {s.fields}}, nil, &is)
	if err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return nil, s.notFound(number)
		}
		return nil, fmt.Errorf("look up %s in Jira: %w", number, err)
	}
	t, err := s.toTicket(number, &is)
	if err != nil {
		return nil, fmt.Errorf("look up %s in Jira: %w", number, err)
	}
	return t, nil
}

func unexpected(what string) error {
	return escrow.Errorf(escrow.CodeInternal, "Jira answered a %s that is not what its API documents", what)
}

func (s *System) toTicket(number string, is *issue) (*ticket.Ticket, error) {
	// Jira answers a moved issue under its new key; Escrow keeps the
	// canonical one so that audit records of both keys meet.
	if !keyRE.MatchString(is.Key) || is.Fields == nil {
		return nil, unexpected("key or fields")
	}
	var status, itype struct {
		Name string `json:"name"`
	}
	if err := field(is.Fields, "status", &status, true); err != nil || status.Name == "" {
		return nil, unexpected("status")
	}
	if err := field(is.Fields, "issuetype", &itype, true); err != nil || itype.Name == "" {
		return nil, unexpected("issue type")
	}
	kind, ok := s.kinds[itype.Name]
	if !ok {
		return nil, &escrow.Error{Code: escrow.CodeNotFound, Message: fmt.Sprintf("%s is a %s, not a change or incident", number, itype.Name)}
	}
	var summary string
	if err := field(is.Fields, "summary", &summary, false); err != nil {
		return nil, unexpected("summary")
	}
	var who *user
	if err := field(is.Fields, "assignee", &who, false); err != nil {
		return nil, unexpected("assignee")
	}
	t := &ticket.Ticket{
		System:  s.name,
		Number:  is.Key,
		Kind:    kind,
		State:   status.Name,
		Summary: summary,
		URL:     s.client.Base().JoinPath("browse", is.Key).String(),
	}
	if who != nil {
		// Email is what Escrow matches a requester by; Cloud hides it
		// under some privacy settings, and then only the account id is
		// there.
		t.AssigneeEmail = who.EmailAddress
		t.Assignee = who.EmailAddress
		if t.Assignee == "" {
			t.Assignee = who.AccountID
		}
	}
	var err error
	if t.PlannedStart, err = s.timeField(is.Fields, s.startField); err != nil {
		return nil, err
	}
	if t.PlannedEnd, err = s.timeField(is.Fields, s.endField); err != nil {
		return nil, err
	}
	if t.ConfigurationItem, err = s.ciField(is.Fields); err != nil {
		return nil, err
	}
	return t, nil
}

// field decodes fields[name] into out; a null or absent field is an error
// only if required.
func field(fields map[string]json.RawMessage, name string, out any, required bool) error {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		if required {
			return errors.New("missing")
		}
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (s *System) timeField(fields map[string]json.RawMessage, name string) (time.Time, error) {
	if name == "" {
		return time.Time{}, nil
	}
	var v string
	if err := field(fields, name, &v, false); err != nil {
		return time.Time{}, unexpected(name)
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, unexpected(name)
	}
	return t, nil
}

func (s *System) ciField(fields map[string]json.RawMessage) (string, error) {
	if s.ciFd == "" {
		return "", nil
	}
	raw, ok := fields[s.ciFd]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str, nil
	}
	// A select list answers {"value": ...}; Assets/Insight objects and
	// multi-selects answer arrays of objects with a name or value. Only
	// a single item is a configuration item.
	type named struct {
		Value string `json:"value"`
		Name  string `json:"name"`
		Label string `json:"label"`
	}
	pick := func(n named) string {
		for _, v := range []string{n.Value, n.Name, n.Label} {
			if v != "" {
				return v
			}
		}
		return ""
	}
	var one named
	if json.Unmarshal(raw, &one) == nil && pick(one) != "" {
		return pick(one), nil
	}
	var many []named
	if json.Unmarshal(raw, &many) == nil && len(many) == 1 && pick(many[0]) != "" {
		return pick(many[0]), nil
	}
	return "", unexpected(s.ciFd)
}

// parseTime reads Jira date-time fields (2026-11-23T09:00:00.000+0100) and
// date fields (2026-11-23, taken as midnight UTC).
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.000-0700", time.RFC3339Nano, "2006-01-02T15:04:05-0700", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a Jira date")
}

// Comment implements ticket.System. Each line of text is a paragraph.
func (s *System) Comment(ctx context.Context, number, text string) error {
	if err := s.check(number); err != nil {
		return err
	}
	if strings.TrimSpace(text) == "" {
		return escrow.Errorf(escrow.CodeInvalid, "a comment needs text")
	}
	// The documented answer is the new comment; checking its id tells a
	// real Jira from a proxy page answering 200.
	var created struct {
		ID string `json:"id"`
	}
	err := s.client.Do(ctx, http.MethodPost, "/rest/api/3/issue/"+number+"/comment", nil, map[string]any{"body": adf(text)}, &created)
	if err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return s.notFound(number)
		}
		return fmt.Errorf("comment on %s in Jira: %w", number, err)
	}
	if created.ID == "" {
		return fmt.Errorf("comment on %s in Jira: %w", number, unexpected("new comment"))
	}
	return nil
}

// adfNode is a node of the Atlassian Document Format.
type adfNode struct {
	Type    string    `json:"type"`
	Version int       `json:"version,omitempty"`
	Text    string    `json:"text,omitempty"`
	Content []adfNode `json:"content,omitempty"`
}

// adf turns plain text into a document: one paragraph per line. ADF
// forbids empty text nodes, so a blank line is an empty paragraph.
func adf(text string) adfNode {
	doc := adfNode{Type: "doc", Version: 1, Content: []adfNode{}}
	for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
		p := adfNode{Type: "paragraph"}
		if line = strings.TrimRight(line, "\r"); line != "" {
			p.Content = []adfNode{{Type: "text", Text: line}}
		}
		doc.Content = append(doc.Content, p)
	}
	return doc
}
