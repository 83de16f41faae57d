package escrow

import (
	"fmt"
	"path"
	"strings"
)

// Permission is a level of access to a secret or folder. Levels are ordered:
// each includes those below it (owner > edit > view > list).
type Permission string

// The permissions, lowest first.
const (
	PermNone  Permission = ""
	PermList  Permission = "list"  // see that the secret exists and its metadata
	PermView  Permission = "view"  // reveal the value
	PermEdit  Permission = "edit"  // change value and metadata, delete
	PermOwner Permission = "owner" // change the ACL
)

func (p Permission) rank() int {
	switch p {
	case PermList:
		return 1
	case PermView:
		return 2
	case PermEdit:
		return 3
	case PermOwner:
		return 4
	}
	return 0
}

// Includes reports whether p grants at least q.
func (p Permission) Includes(q Permission) bool { return p.rank() >= q.rank() && q.rank() > 0 }

// Valid reports whether p is one of the four named permissions.
func (p Permission) Valid() bool { return p.rank() > 0 }

// ACE is one access control entry: a principal key ("user:alice",
// "group:dba") and the permission it holds.
type ACE struct {
	Principal  string     `json:"principal"`
	Permission Permission `json:"permission"`
}

// Validate checks an ACE's shape.
func (a ACE) Validate() error {
	kind, name, ok := strings.Cut(a.Principal, ":")
	if !ok || (kind != "user" && kind != "group") || name == "" {
		return Errorf(CodeInvalid, "acl principal %q must be user:<name> or group:<name>", a.Principal)
	}
	if !a.Permission.Valid() {
		return Errorf(CodeInvalid, "acl permission %q must be one of owner, edit, view, list", a.Permission)
	}
	return nil
}

// MaxACLEntries bounds an ACL so that a change to it fits one DynamoDB
// transaction (old and new index entries, the item, its audit record).
const MaxACLEntries = 40

// ValidateACL checks every entry and rejects duplicate principals.
func ValidateACL(acl []ACE) error {
	if len(acl) > MaxACLEntries {
		return Errorf(CodeInvalid, "acl has %d entries; at most %d (use groups)", len(acl), MaxACLEntries)
	}
	seen := make(map[string]bool, len(acl))
	for _, a := range acl {
		if err := a.Validate(); err != nil {
			return err
		}
		if seen[a.Principal] {
			return Errorf(CodeInvalid, "acl names %q twice", a.Principal)
		}
		seen[a.Principal] = true
	}
	return nil
}

// Folder is a node in the folder tree. Its ACL is inherited by every secret
// and folder below it.
type Folder struct {
	Path string `json:"path"`
	ACL  []ACE  `json:"acl"`
	// Policy, if set, governs every secret below that has no nearer one.
	Policy    *Policy `json:"policy,omitempty"`
	Revision  int64   `json:"revision"`
	UpdatedBy string  `json:"updatedBy,omitempty"`
}

// CleanFolder validates and normalises a folder path: absolute, no empty or
// dot segments, no trailing slash (except the root "/").
func CleanFolder(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", Errorf(CodeInvalid, "folder %q must start with /", p)
	}
	if len(p) > 512 {
		return "", Errorf(CodeInvalid, "folder path is longer than 512 bytes")
	}
	c := path.Clean(p)
	if c != strings.TrimSuffix(p, "/") && c != p {
		return "", Errorf(CodeInvalid, "folder %q is not a clean path (no //, . or ..)", p)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(c, "/"), "/") {
		if c == "/" {
			break
		}
		if err := validName(seg, "folder segment"); err != nil {
			return "", err
		}
	}
	return c, nil
}

// Ancestors returns folder and every folder above it, nearest first, ending
// with "/". The folder must be clean.
func Ancestors(folder string) []string {
	out := []string{folder}
	for folder != "/" {
		folder = path.Dir(folder)
		out = append(out, folder)
	}
	return out
}

// validName checks a secret name or folder segment: 1..128 printable
// characters, no slash.
func validName(s, what string) error {
	if s == "" || len(s) > 128 {
		return Errorf(CodeInvalid, "%s must be 1 to 128 characters", what)
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f {
			return Errorf(CodeInvalid, "%s %q contains %q, which is not allowed", what, s, r)
		}
	}
	if s == "." || s == ".." {
		return Errorf(CodeInvalid, "%s may not be %q", what, s)
	}
	return nil
}

// Effective computes the permission p holds on a secret whose own ACL is
// secretACL and whose ancestor folders are folders (any order; missing
// folders simply contribute nothing). Admins hold owner everywhere;
// auditors hold at least list everywhere (metadata, never values).
//
// Inheritance is additive: a folder grant can be widened below it, never
// narrowed, which keeps the rule easy to audit.
func Effective(p *Principal, secretACL []ACE, folders []Folder) Permission {
	if p == nil {
		return PermNone
	}
	if p.IsAdmin() {
		return PermOwner
	}
	keys := p.Keys()
	best := PermNone
	if p.HasRole(RoleAuditor) {
		best = PermList
	}
	consider := func(acl []ACE) {
		for _, a := range acl {
			if a.Permission.rank() <= best.rank() {
				continue
			}
			for _, k := range keys {
				if a.Principal == k {
					best = a.Permission
					break
				}
			}
		}
	}
	consider(secretACL)
	for _, f := range folders {
		consider(f.ACL)
	}
	return best
}

// ACLGrant is one row of the ACL index: principal holds permission on a
// target, which is a secret ("secret:<id>") or a folder ("folder:<path>").
type ACLGrant struct {
	Principal  string     `json:"principal"`
	Target     string     `json:"target"`
	Permission Permission `json:"permission"`
}

// SecretTarget and FolderTarget build ACLGrant targets.
func SecretTarget(id string) string   { return "secret:" + id }
func FolderTarget(path string) string { return "folder:" + path }

// String renders an ACE as principal=permission.
func (a ACE) String() string { return fmt.Sprintf("%s=%s", a.Principal, a.Permission) }
