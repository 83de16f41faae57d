package escrow

import (
	"context"
	"slices"
)

// Roles carried in token claims.
const (
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
)

// Principal is an authenticated caller, built from verified token claims.
type Principal struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email,omitempty"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// HasRole reports whether p holds role.
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

// IsAdmin reports whether p holds the admin role.
func (p *Principal) IsAdmin() bool { return p.HasRole(RoleAdmin) }

// Keys returns the ACL keys that identify p: "user:<sub>" and "group:<g>" for
// each group.
func (p *Principal) Keys() []string {
	if p == nil {
		return nil
	}
	keys := make([]string, 0, 1+len(p.Groups))
	keys = append(keys, UserKey(p.Subject))
	for _, g := range p.Groups {
		keys = append(keys, GroupKey(g))
	}
	return keys
}

// UserKey and GroupKey build the ACL key of a user or a group.
func UserKey(sub string) string   { return "user:" + sub }
func GroupKey(name string) string { return "group:" + name }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// RequestInfo describes the HTTP request behind an action, for audit.
type RequestInfo struct {
	RequestID string
	SourceIP  string
	UserAgent string
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying ri.
func WithRequestInfo(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

// RequestInfoFrom returns the RequestInfo in ctx (zero if none).
func RequestInfoFrom(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return ri
}
