package sqlite

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// The ACL and tag columns hold JSON, so that the database stays readable
// with any SQLite tool. encoding/json was a fifth of a GetSecret's time, so
// the shapes json.Marshal writes are parsed by hand when they contain no
// escapes (the usual case); anything else goes through encoding/json.

func decodeACLJSON(s string) ([]escrow.ACE, error) {
	if acl, ok := fastACL(s); ok {
		return acl, nil
	}
	var acl []escrow.ACE
	if err := json.Unmarshal([]byte(s), &acl); err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode acl: %w", err), "corrupt record")
	}
	return acl, nil
}

func decodeTagsJSON(s string) (map[string]string, error) {
	if tags, ok := fastTags(s); ok {
		return tags, nil
	}
	var tags map[string]string
	if err := json.Unmarshal([]byte(s), &tags); err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode tags: %w", err), "corrupt record")
	}
	return tags, nil
}

// lexer reads json.Marshal's compact output of strings without escapes.
type lexer struct {
	s string
	i int
}

func (l *lexer) lit(p string) bool {
	if strings.HasPrefix(l.s[l.i:], p) {
		l.i += len(p)
		return true
	}
	return false
}

// str reads a string; with no backslash in the input, the next quote ends it.
func (l *lexer) str() (string, bool) {
	if !l.lit(`"`) {
		return "", false
	}
	j := strings.IndexByte(l.s[l.i:], '"')
	if j < 0 {
		return "", false
	}
	v := l.s[l.i : l.i+j]
	l.i += j + 1
	return v, true
}

func fastACL(s string) ([]escrow.ACE, bool) {
	if strings.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	l := lexer{s: s}
	if !l.lit("[") {
		return nil, false
	}
	acl := make([]escrow.ACE, 0, strings.Count(s, "{"))
	for !l.lit("]") {
		if len(acl) > 0 && !l.lit(",") {
			return nil, false
		}
		if !l.lit(`{"principal":`) {
			return nil, false
		}
		p, ok := l.str()
		if !ok || !l.lit(`,"permission":`) {
			return nil, false
		}
		perm, ok := l.str()
		if !ok || !l.lit("}") {
			return nil, false
		}
		acl = append(acl, escrow.ACE{Principal: p, Permission: escrow.Permission(perm)})
	}
	return acl, l.i == len(s)
}

func fastTags(s string) (map[string]string, bool) {
	if strings.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	l := lexer{s: s}
	if !l.lit("{") {
		return nil, false
	}
	tags := make(map[string]string, strings.Count(s, ":"))
	for !l.lit("}") {
		if len(tags) > 0 && !l.lit(",") {
			return nil, false
		}
		k, ok := l.str()
		if !ok || !l.lit(":") {
			return nil, false
		}
		v, ok := l.str()
		if !ok {
			return nil, false
		}
		tags[k] = v
	}
	return tags, l.i == len(s)
}
