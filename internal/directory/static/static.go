// Package static is a Directory from a fixed list of people and their
// groups: the -dev server's demo users, or a small team's JSON file. It
// only resolves names for notifications; it never grants anything (access
// is decided from token claims and ACLs).
package static

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Entry is one person.
type Entry struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email"`
	Name    string   `json:"name,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// Directory resolves "user:<sub>" and "group:<name>" against its entries.
type Directory struct {
	bySub   map[string]escrow.Person
	byGroup map[string][]string // group -> subjects
}

var _ escrow.Directory = (*Directory)(nil)

// New builds a directory. Entries need a subject; duplicates are refused.
func New(entries []Entry) (*Directory, error) {
	d := &Directory{bySub: map[string]escrow.Person{}, byGroup: map[string][]string{}}
	for _, e := range entries {
		if e.Subject == "" {
			return nil, fmt.Errorf("directory entry without a subject (email %q)", e.Email)
		}
		if _, dup := d.bySub[e.Subject]; dup {
			return nil, fmt.Errorf("directory names %q twice", e.Subject)
		}
		d.bySub[e.Subject] = escrow.Person{Subject: e.Subject, Email: e.Email, Name: e.Name}
		for _, g := range e.Groups {
			d.byGroup[g] = append(d.byGroup[g], e.Subject)
		}
	}
	return d, nil
}

// Parse reads a JSON array of entries.
func Parse(data []byte) (*Directory, error) {
	var entries []Entry
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("parse directory: %w", err)
	}
	return New(entries)
}

// Members returns each person the principals name, once, in order of first
// mention. Unknown names resolve to nobody.
func (d *Directory) Members(_ context.Context, principals []string) ([]escrow.Person, error) {
	seen := map[string]bool{}
	var out []escrow.Person
	add := func(sub string) {
		if p, ok := d.bySub[sub]; ok && !seen[sub] {
			seen[sub] = true
			out = append(out, p)
		}
	}
	for _, pr := range principals {
		kind, name, _ := strings.Cut(pr, ":")
		switch kind {
		case "user":
			add(name)
		case "group":
			for _, sub := range d.byGroup[name] {
				add(sub)
			}
		}
	}
	return out, nil
}
