// Package client is a small, typed Go client for Escrow's REST API, used by
// the escrow CLI and usable by other Go programs.
//
// It speaks only HTTP and JSON: it never caches, logs or persists a secret
// value or a token, and it reports the server's error bodies as *APIError so
// callers can branch on the code.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// DefaultUserAgent is sent when Client.UserAgent is empty.
const DefaultUserAgent = "escrow-client"

// maxResponseBytes caps a response body: the largest legitimate answer is a
// page of audit records or a 64 KiB secret value, far below this.
const maxResponseBytes = 32 << 20

// Client calls one Escrow server with one bearer token. It is safe for
// concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client

	// UserAgent is sent with every request (the server audits it).
	UserAgent string
}

// New returns a client for the server at baseURL (for example
// "http://127.0.0.1:8080") authenticating with token (may be "" for the
// unauthenticated routes). A nil httpClient means http.DefaultClient.
func New(baseURL, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: httpClient}
}

// BaseURL returns the server URL the client talks to.
func (c *Client) BaseURL() string { return c.base }

// APIError is an error answered by the server: its HTTP status and the
// {"error":{"code","message","requestId"}} body.
type APIError struct {
	Status    int
	Code      string // not_found, conflict, forbidden, invalid, unauthenticated, unavailable, internal
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Code != "" || e.RequestID != "" {
		b.WriteString(" (")
		b.WriteString(e.Code)
		if e.RequestID != "" {
			if e.Code != "" {
				b.WriteString(", ")
			}
			b.WriteString("request ")
			b.WriteString(e.RequestID)
		}
		b.WriteString(")")
	}
	return b.String()
}

// IsCode reports whether err is an *APIError with the given code.
func IsCode(err error, code string) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == code
}

// Secret is a secret's metadata as the API returns it.
type Secret struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Folder         string            `json:"folder"`
	Path           string            `json:"path"`
	Type           string            `json:"type"`
	Description    string            `json:"description,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	ACL            []escrow.ACE      `json:"acl"`
	CurrentVersion int               `json:"currentVersion"`
	Revision       int64             `json:"revision"`
	CreatedAt      time.Time         `json:"createdAt"`
	CreatedBy      string            `json:"createdBy"`
	UpdatedAt      time.Time         `json:"updatedAt"`
	UpdatedBy      string            `json:"updatedBy"`
	DeletedAt      *time.Time        `json:"deletedAt,omitempty"`

	// Rotation, if set, says how the password is changed on its target.
	Rotation *escrow.RotationConfig `json:"rotation,omitempty"`
	// QLock, if set, says the value is QuantumLocked and to whom.
	QLock *escrow.QLock `json:"qlock,omitempty"`
	// PendingVersion, if not 0, is a rotation's password not yet current;
	// a new version is numbered after it.
	PendingVersion int `json:"pendingVersion,omitempty"`
}

// SecretPath returns Path, or folder + name if the server left Path out.
func (s *Secret) SecretPath() string {
	if s.Path != "" {
		return s.Path
	}
	if s.Folder == "/" || s.Folder == "" {
		return "/" + s.Name
	}
	return s.Folder + "/" + s.Name
}

// CreateSecretRequest is the body of POST /v1/secrets.
type CreateSecretRequest struct {
	Name        string            `json:"name"`
	Folder      string            `json:"folder,omitempty"`
	Type        string            `json:"type"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	ACL         []escrow.ACE      `json:"acl,omitempty"`
	Value       map[string]string `json:"value"`
}

// UpdateSecretRequest is the body of PUT /v1/secrets/{id}. Nil fields are
// left unchanged; a non-nil Value adds a new version.
type UpdateSecretRequest struct {
	Revision    *int64             `json:"revision,omitempty"`
	Name        *string            `json:"name,omitempty"`
	Folder      *string            `json:"folder,omitempty"`
	Description *string            `json:"description,omitempty"`
	Tags        *map[string]string `json:"tags,omitempty"`
	Value       map[string]string  `json:"value,omitempty"`
}

// ListSecretsOptions filters GET /v1/secrets. Path, if set, selects at most
// one secret by its full path.
type ListSecretsOptions struct {
	Folder    string
	Recursive bool
	Deleted   bool
	Path      string
	Cursor    string
	Limit     int
}

// SecretPage is one page of secrets; Next is "" on the last page.
type SecretPage struct {
	Secrets []*Secret `json:"secrets"`
	Next    string    `json:"next"`
}

// RevealedValue is the answer of GET /v1/secrets/{id}/value.
type RevealedValue struct {
	SecretID string            `json:"secretId"`
	Version  int               `json:"version"`
	Type     string            `json:"type"`
	Value    map[string]string `json:"value"`
}

// Version describes one stored version of a secret (never its value).
type Version struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"`
}

// Token is a token minted by the dev issuer.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// AuditQuery filters GET /v1/audit. Zero fields do not filter.
type AuditQuery struct {
	Actor    string
	SecretID string
	Action   string
	Ticket   string
	From, To time.Time
	Cursor   string
	Limit    int
}

// AuditPage is one page of audit records, newest first.
type AuditPage struct {
	Records []*escrow.AuditRecord `json:"records"`
	Next    string                `json:"next"`
}

// Health calls GET /healthz and returns nil if the server answers ok.
func (c *Client) Health(ctx context.Context) error {
	var out struct {
		Status string `json:"status"`
	}
	if err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, &out); err != nil {
		return err
	}
	if out.Status != "ok" {
		return fmt.Errorf("health: server says %q", out.Status)
	}
	return nil
}

// DevToken asks a -dev server's issuer for a token for a demo user.
func (c *Client) DevToken(ctx context.Context, user string) (*Token, error) {
	var out Token
	err := c.do(ctx, http.MethodPost, "/dev/token", nil, map[string]string{"user": user}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Me returns the caller's principal.
func (c *Client) Me(ctx context.Context) (*escrow.Principal, error) {
	var out escrow.Principal
	if err := c.do(ctx, http.MethodGet, "/v1/me", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateSecret creates a secret with its first version.
func (c *Client) CreateSecret(ctx context.Context, req *CreateSecretRequest) (*Secret, error) {
	var out Secret
	if err := c.do(ctx, http.MethodPost, "/v1/secrets", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSecrets returns one page of secrets the caller may list.
func (c *Client) ListSecrets(ctx context.Context, opt ListSecretsOptions) (*SecretPage, error) {
	q := url.Values{}
	set(q, "folder", opt.Folder)
	setBool(q, "recursive", opt.Recursive)
	setBool(q, "deleted", opt.Deleted)
	set(q, "path", opt.Path)
	set(q, "cursor", opt.Cursor)
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	var out SecretPage
	if err := c.do(ctx, http.MethodGet, "/v1/secrets", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SecretByPath returns the secret at a full path such as "/prod/db/admin",
// deleted or not. It answers a not_found *APIError when the caller cannot
// see a secret there.
func (c *Client) SecretByPath(ctx context.Context, path string) (*Secret, error) {
	q := url.Values{"path": {path}, "deleted": {"true"}}
	var page SecretPage
	hdr, err := c.send(ctx, http.MethodGet, "/v1/secrets", q, nil, &page)
	if err != nil {
		return nil, err
	}
	for _, s := range page.Secrets {
		if s.SecretPath() == path {
			return s, nil
		}
	}
	// The request id is the lookup's, so the answer can be found in the audit.
	return nil, &APIError{Status: http.StatusNotFound, Code: "not_found",
		Message: "no secret at " + path + " that you can see", RequestID: hdr.Get("X-Request-Id")}
}

// GetSecret returns a secret's metadata.
func (c *Client) GetSecret(ctx context.Context, id string) (*Secret, error) {
	var out Secret
	if err := c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateSecret changes metadata and, if req.Value is set, adds a version.
func (c *Client) UpdateSecret(ctx context.Context, id string, req *UpdateSecretRequest) (*Secret, error) {
	var out Secret
	if err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(id), nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSecret soft-deletes a secret.
func (c *Client) DeleteSecret(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(id), nil, nil, nil)
}

// RevealSecret returns a secret's value: the current version when version is
// 0. The server audits every call.
func (c *Client) RevealSecret(ctx context.Context, id string, version int) (*RevealedValue, error) {
	q := url.Values{}
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var out RevealedValue
	if err := c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(id)+"/value", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevealSecretWith reveals with a comment (which the secret's policy may
// require); the comment travels in the body, not the URL.
func (c *Client) RevealSecretWith(ctx context.Context, id string, version int, comment string) (*RevealedValue, error) {
	var out RevealedValue
	in := map[string]any{"version": version, "comment": comment}
	if err := c.do(ctx, http.MethodPost, "/v1/secrets/"+url.PathEscape(id)+"/value", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PolicyView is a secret's effective policy and where it comes from.
type PolicyView struct {
	SecretID string         `json:"secretId"`
	Path     string         `json:"path"`
	Policy   *escrow.Policy `json:"policy"`
	From     string         `json:"from,omitempty"`
	Own      *escrow.Policy `json:"own,omitempty"`
	Revision int64          `json:"revision"`
}

// GetPolicy returns the policy that governs a secret.
func (c *Client) GetPolicy(ctx context.Context, id string) (*PolicyView, error) {
	var out PolicyView
	if err := c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(id)+"/policy", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetSecretPolicy sets (nil removes) a secret's own policy.
func (c *Client) SetSecretPolicy(ctx context.Context, id string, p *escrow.Policy) (*Secret, error) {
	var out Secret
	if err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(id)+"/policy", nil, map[string]any{"policy": p}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetFolderPolicy sets (nil removes) a folder's policy.
func (c *Client) SetFolderPolicy(ctx context.Context, path string, p *escrow.Policy) (*escrow.Folder, error) {
	var out escrow.Folder
	if err := c.do(ctx, http.MethodPut, "/v1/folders/policy", nil, map[string]any{"path": path, "policy": p}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListVersions returns a secret's versions, without values.
func (c *Client) ListVersions(ctx context.Context, id string) ([]Version, error) {
	var out struct {
		Versions []Version `json:"versions"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/secrets/"+url.PathEscape(id)+"/versions", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Versions, nil
}

// SetSecretACL replaces a secret's ACL. A non-nil revision makes the write
// conditional (conflict if the secret changed since).
func (c *Client) SetSecretACL(ctx context.Context, id string, acl []escrow.ACE, revision *int64) (*Secret, error) {
	if acl == nil {
		acl = []escrow.ACE{}
	}
	body := struct {
		ACL      []escrow.ACE `json:"acl"`
		Revision *int64       `json:"revision,omitempty"`
	}{acl, revision}
	var out Secret
	if err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(id)+"/acl", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetFolder returns a folder's ACL and revision.
func (c *Client) GetFolder(ctx context.Context, path string) (*escrow.Folder, error) {
	var out escrow.Folder
	if err := c.do(ctx, http.MethodGet, "/v1/folders", url.Values{"path": {path}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetFolderACL replaces a folder's ACL where its revision is still revision
// (0 creates the folder).
func (c *Client) SetFolderACL(ctx context.Context, path string, acl []escrow.ACE, revision int64) (*escrow.Folder, error) {
	if acl == nil {
		acl = []escrow.ACE{}
	}
	body := struct {
		Path     string       `json:"path"`
		ACL      []escrow.ACE `json:"acl"`
		Revision int64        `json:"revision"`
	}{path, acl, revision}
	var out escrow.Folder
	if err := c.do(ctx, http.MethodPut, "/v1/folders", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryAudit returns one page of audit records (admin or auditor only).
func (c *Client) QueryAudit(ctx context.Context, aq AuditQuery) (*AuditPage, error) {
	q := url.Values{}
	set(q, "actor", aq.Actor)
	set(q, "secret", aq.SecretID)
	set(q, "action", aq.Action)
	set(q, "ticket", aq.Ticket)
	if !aq.From.IsZero() {
		q.Set("from", aq.From.UTC().Format(time.RFC3339Nano))
	}
	if !aq.To.IsZero() {
		q.Set("to", aq.To.UTC().Format(time.RFC3339Nano))
	}
	set(q, "cursor", aq.Cursor)
	if aq.Limit > 0 {
		q.Set("limit", strconv.Itoa(aq.Limit))
	}
	var out AuditPage
	if err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func set(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func setBool(q url.Values, k string, v bool) {
	if v {
		q.Set(k, "true")
	}
}

// do sends one request and decodes a 2xx answer into out (if not nil), or
// the error body into an *APIError.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	_, err := c.send(ctx, method, path, q, in, out)
	return err
}

// send is do, also returning the response headers.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in, out any) (http.Header, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
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
		// The URL holds no secret; the error names it so a wrong --server is obvious.
		return nil, fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return resp.Header, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.Header, decodeError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return resp.Header, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.Header, fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return resp.Header, nil
}

// decodeError turns an error response into an *APIError. Bodies that are not
// the API's error shape (a proxy's HTML page, an empty body) still yield an
// APIError with a code guessed from the status, so callers can branch.
func decodeError(resp *http.Response, data []byte) *APIError {
	var body struct {
		Error *struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"requestId"`
		} `json:"error"`
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, &body) == nil && body.Error != nil {
		e.Code, e.Message, e.RequestID = body.Error.Code, body.Error.Message, body.Error.RequestID
	}
	if e.Code == "" {
		e.Code = codeForStatus(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("server answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		// API Gateway's JWT authorizer answers {"message":"Unauthorized"}.
		var gw struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &gw) == nil && gw.Message != "" {
			e.Message = gw.Message
		}
	}
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get("X-Request-Id")
	}
	return e
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return "invalid"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "not_found"
	case http.StatusConflict, http.StatusPreconditionFailed:
		return "conflict"
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return "unavailable"
	}
	return "internal"
}
