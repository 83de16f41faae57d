package static

import (
	"context"
	"testing"
)

func TestMembers(t *testing.T) {
	d, err := Parse([]byte(`[{"sub":"bob","email":"bob@example.com","groups":["approvers"]},
		{"sub":"carol","email":"carol@example.com","groups":["approvers","oncall"]},
		{"sub":"alice","email":"alice@example.com"}]`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := d.Members(context.Background(), []string{"group:approvers", "user:carol", "user:alice", "user:ghost", "group:none", "role:x"})
	var subs []string
	for _, p := range got {
		subs = append(subs, p.Subject+"="+p.Email)
	}
	if want := "bob=bob@example.com carol=carol@example.com alice=alice@example.com"; join(subs) != want {
		t.Fatalf("members = %q, want %q", join(subs), want)
	}
	if _, err := Parse([]byte(`[{"sub":"a"},{"sub":"a"}]`)); err == nil {
		t.Fatal("duplicate subject accepted")
	}
	if _, err := Parse([]byte(`[{"sub":"a","group":"typo"}]`)); err == nil {
		t.Fatal("unknown field accepted")
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
