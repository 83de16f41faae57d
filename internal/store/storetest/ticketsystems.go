package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// TicketBackend is what an adapter of escrow.TicketSystemStore must
// provide: the store, and the audit log its writes go to.
type TicketBackend interface {
	escrow.TicketSystemStore
	escrow.AuditLog
}

// RunTicketSystems runs the conformance suite of escrow.TicketSystemStore;
// open returns a fresh, empty backend for each subtest.
func RunTicketSystems(t *testing.T, open func(t *testing.T) TicketBackend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, b TicketBackend)
	}{
		{"CreateAndGet", testTicketSysCreateAndGet},
		{"Duplicate", testTicketSysDuplicate},
		{"StaleRevision", testTicketSysStale},
		{"List", testTicketSysList},
		{"Default", testTicketSysDefault},
		{"WritesAudited", testTicketSysAudited},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// actionTicketSys is the suite's own action name: the store audits
// whatever record it is given.
const actionTicketSys = "ticketsystem.put"

func ticketSysRecord(ctx context.Context, c *clock, name string) *escrow.AuditRecord {
	return escrow.NewAuditRecord(ctx, c.next(), actionTicketSys, "ticketsystem:"+name)
}

func newTicketSys(c *clock, name string, rev int64) *escrow.TicketSystemConfig {
	return &escrow.TicketSystemConfig{
		Name:             name,
		Type:             escrow.TicketJira,
		BaseURL:          "https://" + name + ".example.com/jira",
		CredentialSecret: escrow.NewID(base),
		Timeout:          escrow.Duration(7 * time.Second),
		Options:          map[string]string{"startField": "customfield_10010", "endField": "customfield_10011"},
		Revision:         rev,
		UpdatedAt:        c.next(),
		UpdatedBy:        "alice",
	}
}

func diffTicketSys(got, want *escrow.TicketSystemConfig) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.Name != want.Name || got.Type != want.Type || got.BaseURL != want.BaseURL || got.CredentialSecret != want.CredentialSecret {
		add("Name/Type/BaseURL/CredentialSecret", []string{got.Name, got.Type, got.BaseURL, got.CredentialSecret},
			[]string{want.Name, want.Type, want.BaseURL, want.CredentialSecret})
	}
	if got.Timeout != want.Timeout {
		add("Timeout", got.Timeout.D(), want.Timeout.D())
	}
	if !maps.Equal(got.Options, want.Options) {
		add("Options", got.Options, want.Options)
	}
	if got.Revision != want.Revision {
		add("Revision", got.Revision, want.Revision)
	}
	if !sameTime(got.UpdatedAt, want.UpdatedAt) || got.UpdatedBy != want.UpdatedBy {
		add("Updated", []any{got.UpdatedAt, got.UpdatedBy}, []any{want.UpdatedAt, want.UpdatedBy})
	}
	return strings.Join(d, "; ")
}

func putTicketSys(t *testing.T, b TicketBackend, ctx context.Context, c *clock, ts *escrow.TicketSystemConfig, prev int64) *escrow.AuditRecord {
	t.Helper()
	rec := ticketSysRecord(ctx, c, ts.Name)
	if err := b.PutTicketSystem(ctx, ts, prev, rec); err != nil {
		t.Fatalf("PutTicketSystem(%s, prev %d): %v", ts.Name, prev, err)
	}
	return rec
}

// ticketAudit returns every audit record, newest first.
func ticketAudit(t *testing.T, b escrow.AuditLog, ctx context.Context) []*escrow.AuditRecord {
	t.Helper()
	var out []*escrow.AuditRecord
	q := escrow.AuditQuery{}
	for range 100 {
		p, err := b.QueryAudit(ctx, q)
		if err != nil {
			t.Fatalf("QueryAudit: %v", err)
		}
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
	t.Fatal("QueryAudit: more than 100 pages")
	return nil
}

func testTicketSysCreateAndGet(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	_, err := b.GetTicketSystem(ctx, "jira")
	wantErr(t, "GetTicketSystem(before create)", err, escrow.ErrNotFound)

	want := newTicketSys(c, "jira", 1)
	putTicketSys(t, b, ctx, c, want, 0)
	got, err := b.GetTicketSystem(ctx, "jira")
	if err != nil {
		t.Fatalf("GetTicketSystem: %v", err)
	}
	if d := diffTicketSys(got, want); d != "" {
		t.Errorf("GetTicketSystem: %s", d)
	}

	// A replacement is stored whole: dropped options stay dropped.
	up := newTicketSys(c, "jira", 2)
	up.Type, up.BaseURL, up.Options, up.Timeout = escrow.TicketServiceNow, "https://sn.example.com", nil, 0
	putTicketSys(t, b, ctx, c, up, 1)
	got, err = b.GetTicketSystem(ctx, "jira")
	if err != nil {
		t.Fatalf("GetTicketSystem(after update): %v", err)
	}
	if d := diffTicketSys(got, up); d != "" {
		t.Errorf("GetTicketSystem(after update): %s", d)
	}
	_, err = b.GetTicketSystem(ctx, "jira2")
	wantErr(t, "GetTicketSystem(other name)", err, escrow.ErrNotFound)
}

func testTicketSysDuplicate(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	first := newTicketSys(c, "sn", 1)
	putTicketSys(t, b, ctx, c, first, 0)
	again := newTicketSys(c, "sn", 1)
	again.BaseURL = "https://evil.example.com"
	rec := ticketSysRecord(ctx, c, "sn")
	wantErr(t, "PutTicketSystem(same name, prev 0)", b.PutTicketSystem(ctx, again, 0, rec), escrow.ErrConflict)

	got, err := b.GetTicketSystem(ctx, "sn")
	if err != nil {
		t.Fatalf("GetTicketSystem: %v", err)
	}
	if d := diffTicketSys(got, first); d != "" {
		t.Errorf("after a refused duplicate: %s", d)
	}
	if ids := auditIDs(ticketAudit(t, b, ctx)); slices.Contains(ids, rec.ID) || len(ids) != 1 {
		t.Errorf("audit records %v: want only the first create's, not the refused one's %s", ids, rec.ID)
	}
}

func testTicketSysStale(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	putTicketSys(t, b, ctx, c, newTicketSys(c, "bmc", 1), 0)
	v2 := newTicketSys(c, "bmc", 2)
	v2.Type = escrow.TicketBMC
	putTicketSys(t, b, ctx, c, v2, 1)

	var refused []string
	for _, tc := range []struct {
		what string
		ts   *escrow.TicketSystemConfig
		prev int64
	}{
		{"stale revision", newTicketSys(c, "bmc", 2), 1},
		{"future revision", newTicketSys(c, "bmc", 4), 3},
		{"missing system", newTicketSys(c, "nothere", 2), 1},
	} {
		rec := ticketSysRecord(ctx, c, tc.ts.Name)
		refused = append(refused, rec.ID)
		wantErr(t, "PutTicketSystem("+tc.what+")", b.PutTicketSystem(ctx, tc.ts, tc.prev, rec), escrow.ErrConflict)
	}

	got, err := b.GetTicketSystem(ctx, "bmc")
	if err != nil {
		t.Fatalf("GetTicketSystem: %v", err)
	}
	if d := diffTicketSys(got, v2); d != "" {
		t.Errorf("after refused updates: %s", d)
	}
	_, err = b.GetTicketSystem(ctx, "nothere")
	wantErr(t, "GetTicketSystem(refused update of a missing one)", err, escrow.ErrNotFound)
	ids := auditIDs(ticketAudit(t, b, ctx))
	for _, id := range refused {
		if slices.Contains(ids, id) {
			t.Errorf("refused write's audit record %s was stored", id)
		}
	}
	if len(ids) != 2 {
		t.Errorf("audit records %v, want the 2 successful writes'", ids)
	}
}

func testTicketSysList(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	got, err := b.ListTicketSystems(ctx)
	if err != nil {
		t.Fatalf("ListTicketSystems(empty): %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("ListTicketSystems(empty) = %d systems", len(got))
	}
	want := map[string]*escrow.TicketSystemConfig{}
	for _, name := range []string{"zeta", "alpha", "Mid", "mid", "beta-2", "beta"} {
		want[name] = newTicketSys(c, name, 1)
		putTicketSys(t, b, ctx, c, want[name], 0)
	}
	// An update shows in the list too.
	want["beta"] = newTicketSys(c, "beta", 2)
	putTicketSys(t, b, ctx, c, want["beta"], 1)
	// Unrelated writes to the same store stay out of the list.
	if err := b.SetDefaultTicketSystem(ctx, "alpha", ticketSysRecord(ctx, c, "alpha")); err != nil {
		t.Fatalf("SetDefaultTicketSystem: %v", err)
	}

	got, err = b.ListTicketSystems(ctx)
	if err != nil {
		t.Fatalf("ListTicketSystems: %v", err)
	}
	var names []string
	for _, g := range got {
		names = append(names, g.Name)
		if w := want[g.Name]; w == nil {
			t.Errorf("ListTicketSystems returned unknown %q", g.Name)
		} else if d := diffTicketSys(g, w); d != "" {
			t.Errorf("ListTicketSystems %s: %s", g.Name, d)
		}
	}
	if wantNames := []string{"Mid", "alpha", "beta", "beta-2", "mid", "zeta"}; !slices.Equal(names, wantNames) {
		t.Errorf("ListTicketSystems = %v, want %v", names, wantNames)
	}
}

func testTicketSysDefault(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	get := func(what, want string) {
		t.Helper()
		got, err := b.DefaultTicketSystem(ctx)
		if err != nil {
			t.Fatalf("DefaultTicketSystem(%s): %v", what, err)
		}
		if got != want {
			t.Errorf("DefaultTicketSystem(%s) = %q, want %q", what, got, want)
		}
	}
	get("never set", "")
	// Clearing what was never set is fine.
	if err := b.SetDefaultTicketSystem(ctx, "", ticketSysRecord(ctx, c, "")); err != nil {
		t.Fatalf("SetDefaultTicketSystem(clear, never set): %v", err)
	}
	get("cleared, never set", "")
	for _, name := range []string{"jira", "servicenow"} {
		putTicketSys(t, b, ctx, c, newTicketSys(c, name, 1), 0)
	}
	for _, name := range []string{"jira", "servicenow", "", "jira"} {
		if err := b.SetDefaultTicketSystem(ctx, name, ticketSysRecord(ctx, c, name)); err != nil {
			t.Fatalf("SetDefaultTicketSystem(%q): %v", name, err)
		}
		get("after setting "+name, name)
	}
	// The default is not one of the systems.
	got, err := b.ListTicketSystems(ctx)
	if err != nil {
		t.Fatalf("ListTicketSystems: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("ListTicketSystems = %d systems, want 2", len(got))
	}
}

func testTicketSysAudited(t *testing.T, b TicketBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	var want []*escrow.AuditRecord // oldest first
	want = append(want, putTicketSys(t, b, ctx, c, newTicketSys(c, "jira", 1), 0))
	want = append(want, putTicketSys(t, b, ctx, c, newTicketSys(c, "jira", 2), 1))
	for _, name := range []string{"jira", ""} {
		rec := ticketSysRecord(ctx, c, name)
		rec.Action = "ticketsystem.default"
		rec.Details = map[string]string{"default": name}
		if err := b.SetDefaultTicketSystem(ctx, name, rec); err != nil {
			t.Fatalf("SetDefaultTicketSystem(%q): %v", name, err)
		}
		want = append(want, rec)
	}
	got := ticketAudit(t, b, ctx)
	if len(got) != len(want) {
		t.Fatalf("audit has %d records %v, want %d", len(got), auditIDs(got), len(want))
	}
	for i, w := range want {
		if d := diffRecord(got[len(got)-1-i], w); d != "" {
			t.Errorf("audit record %d (%s): %s", i, w.Action, d)
		}
	}
}
