package escrow

import (
	"strings"
	"testing"
	"time"
)

func TestCheckoutLifecycle(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var never *Checkout
	if err := never.Busy(true, now); err != nil || never.Open() || never.Holds("alice", now) {
		t.Fatalf("a never-used slot: busy %v, open %v", err, never.Open())
	}
	if err := never.AllowsReveal("bob", true, "/p", now); ErrorCode(err) != CodeForbidden {
		t.Fatalf("required, no checkout: %v", err)
	}
	if err := never.AllowsReveal("bob", false, "/p", now); err != nil {
		t.Fatalf("not required, no checkout: %v", err)
	}
	c := &Checkout{ID: "c1", Holder: Actor{Subject: "alice", Email: "alice@example.com"}, Interval: Duration(time.Hour), MaxExtensions: 1, Rotate: true}
	if err := never.Begin(c, true, now); err != nil || c.Revision != 1 || !c.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("begin: %v %+v", err, c)
	}
	for _, tc := range []struct {
		show bool
		want string
	}{{true, "checked out by alice <alice@example.com> until 2026-12-06T11:00:00Z"}, {false, "checked out by someone else"}} {
		if err := c.Busy(tc.show, now); ErrorCode(err) != CodeConflict || !strings.Contains(ErrorMessage(err), tc.want) {
			t.Fatalf("busy (show %v): %v", tc.show, err)
		}
	}
	if err := c.Begin(&Checkout{Interval: Duration(time.Hour)}, true, now); ErrorCode(err) != CodeConflict {
		t.Fatalf("second begin: %v", err)
	}
	if !c.Holds("alice", now.Add(time.Hour-1)) || c.Holds("alice", now.Add(time.Hour)) || c.Holds("bob", now) {
		t.Fatal("Holds is not decided by holder and clock")
	}
	if err := c.AllowsReveal("alice", true, "/p", now.Add(time.Hour)); ErrorCode(err) != CodeConflict ||
		!strings.Contains(ErrorMessage(err), "expired") {
		t.Fatalf("holder's reveal after expiry: %v", err)
	}
	if err := c.Extend("bob", now); ErrorCode(err) != CodeForbidden {
		t.Fatalf("bob extends: %v", err)
	}
	if err := c.Extend("alice", now); err != nil || !c.Expires.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("extend: %v %v", err, c.Expires)
	}
	if err := c.Extend("alice", now); ErrorCode(err) != CodeConflict {
		t.Fatalf("extend past the maximum: %v", err)
	}
	if _, err := c.End("workflow", "expired", now); ErrorCode(err) != CodeConflict {
		t.Fatalf("expire before the end: %v", err)
	}
	st, err := c.End("alice", "checkin", now)
	if err != nil || st != CheckoutRotating || c.EndedBy != "alice" || c.EndReason != "checkin" {
		t.Fatalf("end: %v %v %+v", st, err, c)
	}
	if _, err := c.End("alice", "checkin", now); ErrorCode(err) != CodeConflict {
		t.Fatalf("second end: %v", err)
	}
	if err := c.Busy(true, now); !strings.Contains(ErrorMessage(err), "being rotated") {
		t.Fatalf("busy while rotating: %v", err)
	}
	c.Status, c.RotationAttempts = CheckoutRotationFailed, 3
	if err := c.Busy(false, now); !strings.Contains(ErrorMessage(err), "rotating its password failed (3 attempts)") {
		t.Fatalf("busy after a failed rotation: %v", err)
	}
	c.Rotate = false
	c.Status = CheckoutActive
	if st, _ := c.End("alice", "checkin", now); st != CheckoutReleased {
		t.Fatalf("a checkout that does not rotate ends %s", st)
	}
	if (&Checkout{Token: "secret-token"}).Public().Token != "" {
		t.Fatal("Public keeps the task token")
	}
}

func TestCheckoutRuleValidate(t *testing.T) {
	hook := HookRule{Name: "cab", URL: "https://hooks.example.com/x", KeySecret: "/hooks/key"}
	ok := []*CheckoutRule{nil, {}, {Interval: Duration(time.Minute), MaxExtensions: 3, PreHooks: []HookRule{hook}}}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := map[string]*CheckoutRule{
		"interval":    {Interval: Duration(8 * 24 * time.Hour)},
		"subsecond":   {Interval: Duration(time.Millisecond)},
		"extensions":  {MaxExtensions: -1},
		"hook url":    {PreHooks: []HookRule{{Name: "x", URL: "ftp://x", KeySecret: "k"}}},
		"credentials": {PreHooks: []HookRule{{Name: "x", URL: "https://u:p@x", KeySecret: "k"}}},
		"key":         {PostHooks: []HookRule{{Name: "x", URL: "https://x"}}},
		"timeout":     {PreHooks: []HookRule{{Name: "x", URL: "https://x", KeySecret: "k", Timeout: Duration(time.Minute)}}},
	}
	for name, r := range bad {
		if err := r.Validate(); ErrorCode(err) != CodeInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	yes, no := true, false
	rot := &RotationConfig{Target: TargetPostgres}
	if !(&CheckoutRule{}).Rotates(rot) || (&CheckoutRule{}).Rotates(nil) || (&CheckoutRule{RotateOnCheckin: &no}).Rotates(rot) ||
		!(&CheckoutRule{RotateOnCheckin: &yes}).Rotates(rot) || (&CheckoutRule{RotateOnCheckin: &yes}).Rotates(nil) {
		t.Error("Rotates: the default is on for a secret with a rotation, and never without one")
	}
	if (*CheckoutRule)(nil).IntervalOrDefault() != 30*time.Minute {
		t.Error("default interval")
	}
}

func TestRotationConfigValidate(t *testing.T) {
	if err := (&RotationConfig{Target: "telnet"}).Validate(); ErrorCode(err) != CodeInvalid {
		t.Errorf("unknown target: %v", err)
	}
	if err := (&RotationConfig{Target: TargetLDAP, Password: PasswordPolicy{Length: 4}}).Validate(); ErrorCode(err) != CodeInvalid {
		t.Errorf("short password: %v", err)
	}
	if err := (&RotationConfig{Target: TargetSSH, Options: map[string]string{"hostKey": "ssh-ed25519 AAAA"}}).Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	if SecondsUntil(time.Unix(10, 1), time.Unix(9, 0)) != 2 || SecondsUntil(time.Unix(5, 0), time.Unix(9, 0)) != 1 {
		t.Error("SecondsUntil rounds up and is at least 1")
	}
}
