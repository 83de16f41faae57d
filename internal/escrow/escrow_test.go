package escrow

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestErrorIsByCode(t *testing.T) {
	err := fmt.Errorf("update: %w", Errorf(CodeConflict, "revision moved"))
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is by code failed for %v", err)
	}
	if ErrorCode(err) != CodeConflict || ErrorMessage(err) != "revision moved" {
		t.Fatalf("code %q message %q", ErrorCode(err), ErrorMessage(err))
	}
	internal := Wrap(CodeInternal, errors.New("disk /dev/sda1 on fire"), "write")
	if ErrorMessage(internal) != "internal error" || ErrorMessage(errors.New("raw")) != "internal error" {
		t.Fatalf("internal details leak: %q", ErrorMessage(internal))
	}
	if ErrorCode(nil) != "" || ErrorCode(errors.New("x")) != CodeInternal {
		t.Fatal("ErrorCode of nil / plain error")
	}
}

func TestNewIDSortsByTimeAndIsUnique(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 2000 {
		id := NewID(base.Add(time.Duration(i) * time.Millisecond))
		if len(id) != 26 || seen[id] {
			t.Fatalf("id %q: bad length or duplicate", id)
		}
		if id <= prev {
			t.Fatalf("id %q does not sort after %q", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestCleanFolder(t *testing.T) {
	good := map[string]string{"": "/", "/": "/", "/prod": "/prod", "/prod/db/": "/prod/db"}
	for in, want := range good {
		if got, err := CleanFolder(in); err != nil || got != want {
			t.Errorf("CleanFolder(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"prod", "/a//b", "/a/../b", "/a/./b", "/a\x00b", "/" + strings.Repeat("x", 600)} {
		if _, err := CleanFolder(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("CleanFolder(%q) = %v; want invalid", in, err)
		}
	}
	if got := Ancestors("/a/b/c"); !slices.Equal(got, []string{"/a/b/c", "/a/b", "/a", "/"}) {
		t.Fatalf("Ancestors = %v", got)
	}
}

func TestEffective(t *testing.T) {
	alice := &Principal{Subject: "alice", Groups: []string{"dba"}}
	folders := []Folder{
		{Path: "/prod", ACL: []ACE{{Principal: "group:dba", Permission: PermList}}},
		{Path: "/prod/db", ACL: []ACE{{Principal: "user:alice", Permission: PermView}}},
	}
	cases := []struct {
		name    string
		p       *Principal
		acl     []ACE
		folders []Folder
		want    Permission
	}{
		{"nothing", alice, nil, nil, PermNone},
		{"nil principal", nil, []ACE{{Principal: "user:alice", Permission: PermOwner}}, nil, PermNone},
		{"direct user", alice, []ACE{{Principal: "user:alice", Permission: PermEdit}}, nil, PermEdit},
		{"through group", alice, []ACE{{Principal: "group:dba", Permission: PermView}}, nil, PermView},
		{"other group", alice, []ACE{{Principal: "group:web", Permission: PermOwner}}, nil, PermNone},
		{"prefix is not a match", alice, []ACE{{Principal: "user:alic", Permission: PermOwner}}, nil, PermNone},
		{"inherited max", alice, nil, folders, PermView},
		{"secret widens", alice, []ACE{{Principal: "user:alice", Permission: PermOwner}}, folders, PermOwner},
		{"admin", &Principal{Subject: "x", Roles: []string{"admin"}}, nil, nil, PermOwner},
		{"auditor lists", &Principal{Subject: "x", Roles: []string{"auditor"}}, nil, nil, PermList},
	}
	for _, c := range cases {
		if got := Effective(c.p, c.acl, c.folders); got != c.want {
			t.Errorf("%s: Effective = %q, want %q", c.name, got, c.want)
		}
	}
	if !PermOwner.Includes(PermView) || PermList.Includes(PermView) || PermView.Includes(PermNone) {
		t.Fatal("permission order")
	}
}

func TestValidateACL(t *testing.T) {
	if err := ValidateACL([]ACE{{Principal: "user:a", Permission: PermView}, {Principal: "group:b", Permission: PermOwner}}); err != nil {
		t.Fatal(err)
	}
	bad := [][]ACE{
		{{Principal: "alice", Permission: PermView}},
		{{Principal: "role:admin", Permission: PermView}},
		{{Principal: "user:", Permission: PermView}},
		{{Principal: "user:a", Permission: "read"}},
		{{Principal: "user:a", Permission: PermView}, {Principal: "user:a", Permission: PermEdit}},
		make([]ACE, MaxACLEntries+1),
	}
	for _, acl := range bad {
		if err := ValidateACL(acl); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateACL(%v) = %v; want invalid", acl, err)
		}
	}
}

func TestValidateValue(t *testing.T) {
	ok := []struct {
		t SecretType
		v SecretValue
	}{
		{TypePassword, SecretValue{"password": "p"}},
		{TypeSSHKey, SecretValue{"private_key": "k"}},
		{TypeAPIKey, SecretValue{"key": "k"}},
		{TypeGeneric, SecretValue{"anything": "v"}},
	}
	for _, c := range ok {
		if err := ValidateValue(c.t, c.v); err != nil {
			t.Errorf("%s: %v", c.t, err)
		}
	}
	bad := []struct {
		t SecretType
		v SecretValue
	}{
		{TypePassword, SecretValue{"username": "u"}},
		{TypeGeneric, SecretValue{}},
		{"blob", SecretValue{"a": "b"}},
		{TypeGeneric, SecretValue{"a": strings.Repeat("x", MaxValueBytes)}},
		{TypeGeneric, SecretValue{"a": "\xff"}},
	}
	for _, c := range bad {
		if err := ValidateValue(c.t, c.v); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %v: %v; want invalid", c.t, len(c.v), err)
		}
	}
}

func TestFailOutcome(t *testing.T) {
	r := &AuditRecord{}
	r.Fail(&Error{Code: CodeNotFound, Message: "secret x not found", Err: ErrForbidden})
	if r.Outcome != OutcomeDenied || r.ErrorCode != CodeNotFound {
		t.Fatalf("hidden denial recorded as %s/%s", r.Outcome, r.ErrorCode)
	}
	r.Fail(Errorf(CodeConflict, "x"))
	if r.Outcome != OutcomeFailed {
		t.Fatalf("conflict recorded as %s", r.Outcome)
	}
}

func TestNewIDMonotonicWithinMillisecond(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	prev := NewID(now)
	for range 1000 {
		id := NewID(now)
		if id <= prev {
			t.Fatalf("id %q made in the same millisecond does not sort after %q", id, prev)
		}
		if id[:10] != prev[:10] {
			t.Fatalf("time prefix changed within a millisecond: %q vs %q", id, prev)
		}
		prev = id
	}
}

func TestPolicyJSONAndNearest(t *testing.T) {
	var p Policy
	in := `{"approval":{"for":["view"],"steps":[{"approvers":["group:dba"],"quorum":2}],"pendingTimeout":"30m","maxDuration":"2h","clockStarts":"approval"},"comment":{"mode":"required","pattern":"^CHG[0-9]{7}$"}}`
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if p.Approval.PendingTimeout.D() != 30*time.Minute || p.Approval.MaxDuration.D() != 2*time.Hour || p.Validate() != nil {
		t.Fatalf("decoded %+v", p.Approval)
	}
	out, _ := json.Marshal(p)
	if !strings.Contains(string(out), `"pendingTimeout":"30m0s"`) {
		t.Fatalf("encoded %s", out)
	}
	if err := json.Unmarshal([]byte(`{"approval":{"pendingTimeout":30}}`), &p); err == nil {
		t.Fatal("a number accepted as a duration")
	}
	a, b := &Policy{Notice: "a"}, &Policy{Notice: "b"}
	folders := []Folder{{Path: "/", Policy: a}, {Path: "/x/y", Policy: b}, {Path: "/x"}}
	if got, from, _ := EffectivePolicy(nil, "/x/y/z", folders); got != b || from != "folder:/x/y" {
		t.Fatalf("nearest folder: %v %q", got, from)
	}
	if got, from, _ := EffectivePolicy(nil, "/x", folders); got != a || from != "folder:/" {
		t.Fatalf("root folder: %v %q", got, from)
	}
	own := &Policy{}
	if got, from, _ := EffectivePolicy(own, "/x/y/z", folders); got != own || from != "secret" {
		t.Fatalf("own policy: %v %q", got, from)
	}
	if _, _, ok := EffectivePolicy(nil, "/q", nil); ok {
		t.Fatal("a policy from nowhere")
	}
}

func TestCommentRule(t *testing.T) {
	r := CommentRule{Mode: CommentRequired, MinLength: 5, Pattern: `^INC[0-9]+$`, PatternMessage: "incident please"}
	for c, ok := range map[string]bool{"INC12345": true, "INC1": false, "": false, "inc12345": false, "INC12345\n": true} {
		if err := r.Check(c); (err == nil) != ok {
			t.Errorf("Check(%q) = %v", c, err)
		}
	}
	if err := r.Check("INC1x"); ErrorMessage(err) != "incident please" {
		t.Fatalf("message %q", ErrorMessage(err))
	}
	if (CommentRule{Mode: CommentOptional, MinLength: 3}).Check("") != nil || (CommentRule{Mode: CommentOptional, MinLength: 3}).Check("ab") == nil {
		t.Fatal("optional comments: empty is fine, a short one is not")
	}
	if (CommentRule{}).Check(strings.Repeat("x", MaxCommentLength+1)) == nil {
		t.Fatal("an over-long comment accepted")
	}
}

func TestApprovalStepUp(t *testing.T) {
	rule := func(d time.Duration) *Policy {
		return &Policy{Approval: &ApprovalRule{For: []AccessKind{AccessView}, Steps: []ApprovalStep{{Approvers: []string{"group:a"}, Quorum: 1}},
			PendingTimeout: Duration(time.Hour), MaxDuration: Duration(time.Hour), StepUp: Duration(d)}}
	}
	for d, ok := range map[time.Duration]bool{0: true, time.Minute: true, 24 * time.Hour: true, 59 * time.Second: false, 25 * time.Hour: false, -time.Minute: false} {
		if err := rule(d).Validate(); (err == nil) != ok {
			t.Errorf("stepUp %s: err = %v, want ok=%v", d, err, ok)
		}
	}
	if got := rule(0).Approval.StepUpAge(); got != DefaultStepUp {
		t.Errorf("unset stepUp = %s, want %s", got, DefaultStepUp)
	}
	if got := rule(5 * time.Minute).Approval.StepUpAge(); got != 5*time.Minute {
		t.Errorf("stepUp 5m = %s", got)
	}
}
