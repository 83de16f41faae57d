package siem

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// fixture is the record of testdata/event.json and testdata/event.cef.
func fixture() *escrow.AuditRecord {
	return &escrow.AuditRecord{
		ID:        "01JDX9V7M3Q8K2ZB4W6Y5T0R1S",
		Time:      time.Date(2026, 11, 22, 10, 0, 0, 123000000, time.UTC),
		Actor:     escrow.Actor{Subject: "alice", Email: "alice@example.com", Groups: []string{"dba", "oncall"}, Roles: []string{"user"}},
		Action:    escrow.ActionSecretReveal,
		SecretID:  "01JDX9V7M3Q8K2ZB4W6Y5T0R1T",
		Target:    "secret:01JDX9V7M3Q8K2ZB4W6Y5T0R1T",
		Outcome:   escrow.OutcomeDenied,
		ErrorCode: escrow.CodeForbidden,
		Reason:    "forbidden",
		RequestID: "req-1",
		SourceIP:  "192.0.2.7",
		UserAgent: "escrow-cli/1.0",
		Comment:   "INC-42 db down",
		Ticket:    "INC-42",
		Details:   map[string]string{"field": "password"},
	}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// TestFixtures checks the documented examples, and round-trips the JSON
// event back to the record.
func TestFixtures(t *testing.T) {
	rec := fixture()
	t.Run("json", func(t *testing.T) {
		want := readFixture(t, "event.json")
		got, err := MarshalEvent(rec)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("MarshalEvent:\n got %s\nwant %s", got, want)
		}
		var ev Event
		if err := json.Unmarshal([]byte(want), &ev); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ev.Record, rec) {
			t.Fatalf("round trip: got %+v, want %+v", ev.Record, rec)
		}
		wantEnv := Event{Version: "1", Source: "escrow", Type: rec.Action, ID: rec.ID, Time: rec.Time,
			Outcome: rec.Outcome, Severity: SeverityDeniedSensitive, Record: ev.Record}
		if !reflect.DeepEqual(ev, wantEnv) {
			t.Fatalf("envelope = %+v, want %+v", ev, wantEnv)
		}
	})
	t.Run("cef", func(t *testing.T) {
		want := readFixture(t, "event.cef")
		if got := FormatCEF(rec, "v1.2.0"); got != want {
			t.Fatalf("FormatCEF:\n got %s\nwant %s", got, want)
		}
		c, err := parseCEF(want)
		if err != nil {
			t.Fatal(err)
		}
		if c.ext["cs4"] != "INC-42 db down" || c.ext["cs6"] != `{"field":"password"}` || c.ext["rt"] != "1795341600123" {
			t.Fatalf("parsed extension %v", c.ext)
		}
	})
}

// TestCEF holds known expected lines, mostly for the escaping rules.
func TestCEF(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const ms = "rt=1795341600000"
	base := func(mod func(r *escrow.AuditRecord)) *escrow.AuditRecord {
		r := &escrow.AuditRecord{ID: "ID1", Time: at, Action: escrow.ActionSecretGet, Outcome: escrow.OutcomeSuccess}
		if mod != nil {
			mod(r)
		}
		return r
	}
	const head = "CEF:0|Escrow|Escrow|v1|secret.get|Secret read|1|"
	for _, tc := range []struct {
		name    string
		rec     *escrow.AuditRecord
		version string
		want    string
	}{
		{"minimal", base(nil), "v1",
			head + ms + " externalId=ID1 act=secret.get outcome=success"},
		{"zero time has no rt", base(func(r *escrow.AuditRecord) { r.Time = time.Time{} }), "v1",
			head + "externalId=ID1 act=secret.get outcome=success"},
		{"pipe in extension is literal", base(func(r *escrow.AuditRecord) { r.Comment = "a|b" }), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success cs4=a|b cs4Label=comment`},
		{"pipe and backslash in header", base(func(r *escrow.AuditRecord) { r.Action = `x|y\z` }), `1.0|beta\1`,
			`CEF:0|Escrow|Escrow|1.0\|beta\\1|x\|y\\z|x\|y\\z|1|` + ms + ` externalId=ID1 act=x|y\\z outcome=success`},
		{"equals in header is literal", base(func(r *escrow.AuditRecord) { r.Action = "a=b" }), "v1",
			`CEF:0|Escrow|Escrow|v1|a=b|a=b|1|` + ms + ` externalId=ID1 act=a\=b outcome=success`},
		{"backslash and equals in extension", base(func(r *escrow.AuditRecord) { r.Reason = `C:\dir\ a=b \=` }), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success msg=C:\\dir\\ a\=b \\\=`},
		{"newlines in extension", base(func(r *escrow.AuditRecord) { r.Comment = "line1\nline2\r\nline3\r" }), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success cs4=line1\nline2\r\nline3\r cs4Label=comment`},
		{"newlines in header become spaces", base(func(r *escrow.AuditRecord) { r.Action = "a\nb\r\nc" }), "v1\n",
			"CEF:0|Escrow|Escrow|v1 |a b  c|a b  c|1|" + ms + ` externalId=ID1 act=a\nb\r\nc outcome=success`},
		{"non-ASCII passes through", base(func(r *escrow.AuditRecord) {
			r.Actor = escrow.Actor{Subject: "jörg", Email: "jörg@bücher.example", Groups: []string{"運用", "ops 🚀"}}
			r.Comment = "Grüße, 你好 ✓"
		}), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success suser=jörg cs4=Grüße, 你好 ✓ cs4Label=comment` +
				` cs5=jörg@bücher.example cs5Label=actorEmail flexString1=運用,ops 🚀 flexString1Label=actorGroups`},
		{"controls and bad UTF-8 become U+FFFD, tab stays", base(func(r *escrow.AuditRecord) {
			r.UserAgent = "curl\x00/8\x1b[31m\tred\x7f\u0085" + "\xff\xfe"
		}), "v1",
			head + ms + " externalId=ID1 act=secret.get outcome=success requestClientApplication=curl\uFFFD/8\uFFFD[31m\tred\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"IPv6 source", base(func(r *escrow.AuditRecord) { r.SourceIP = "2001:db8::1" }), "v1",
			head + ms + " externalId=ID1 act=secret.get outcome=success src=2001:db8::1"},
		{"source that is not an IP goes to shost", base(func(r *escrow.AuditRecord) { r.SourceIP = "gateway=1" }), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success shost=gateway\=1`},
		{"details sorted, escaped", base(func(r *escrow.AuditRecord) {
			r.Details = map[string]string{"version": "3", "fields": "user,password"}
		}), "v1",
			head + ms + ` externalId=ID1 act=secret.get outcome=success cs6={"fields":"user,password","version":"3"} cs6Label=details`},
		{"every field", fixture(), "v1.2.0", readFixture(t, "event.cef")},
		{"rotation failure", base(func(r *escrow.AuditRecord) {
			r.Action, r.Outcome, r.ErrorCode, r.Reason = escrow.ActionRotationFailed, escrow.OutcomeFailed, escrow.CodeUnavailable, "target unreachable"
			r.Actor.Subject, r.Actor.Roles = "system:rotate", []string{"system", "rotator"}
			r.SecretID = "S1"
		}), "v1",
			"CEF:0|Escrow|Escrow|v1|secret.rotation.failed|Rotation failed|10|" + ms +
				" externalId=ID1 act=secret.rotation.failed outcome=failed reason=unavailable msg=target unreachable" +
				" suser=system:rotate spriv=system,rotator cs1=S1 cs1Label=secretId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatCEF(tc.rec, tc.version)
			if got != tc.want {
				t.Fatalf("FormatCEF:\n got %q\nwant %q", got, tc.want)
			}
			if strings.ContainsAny(got, "\r\n") || !utf8.ValidString(got) {
				t.Fatalf("not one UTF-8 line: %q", got)
			}
			if _, err := parseCEF(got); err != nil {
				t.Fatalf("parse %q: %v", got, err)
			}
		})
	}
}

func TestSeverity(t *testing.T) {
	for _, tc := range []struct {
		action  string
		outcome escrow.Outcome
		want    int
	}{
		{escrow.ActionSecretGet, escrow.OutcomeSuccess, 1},
		{escrow.ActionSecretList, escrow.OutcomeSuccess, 1},
		{escrow.ActionSecretReveal, escrow.OutcomeSuccess, 3},
		{escrow.ActionPolicySet, escrow.OutcomeSuccess, 3},
		{escrow.ActionSecretGet, escrow.OutcomeFailed, 5},
		{escrow.ActionSecretReveal, escrow.OutcomeFailed, 5},
		{escrow.ActionSecretGet, "weird", 5},
		{escrow.ActionSecretGet, escrow.OutcomeDenied, 7},
		{escrow.ActionAuthFailed, escrow.OutcomeDenied, 7},
		{escrow.ActionSecretReveal, escrow.OutcomeDenied, 8},
		{escrow.ActionCheckout, escrow.OutcomeDenied, 8},
		{escrow.ActionRotationFailed, escrow.OutcomeSuccess, 10},
		{escrow.ActionRotationFailed, escrow.OutcomeFailed, 10},
		{escrow.ActionRotationPromote, escrow.OutcomeFailed, 10},
		{escrow.ActionRotationSetOnTarget, escrow.OutcomeFailed, 10},
		{escrow.ActionRotationPromote, escrow.OutcomeSuccess, 1},
		{escrow.ActionRotateNow, escrow.OutcomeDenied, 8},
	} {
		r := &escrow.AuditRecord{Action: tc.action, Outcome: tc.outcome}
		if got := Severity(r); got != tc.want {
			t.Errorf("Severity(%s, %s) = %d, want %d", tc.action, tc.outcome, got, tc.want)
		}
	}
}

// TestMarshalEventOneLine: whatever the fields hold, an event is one line
// of valid JSON that gives the record back (bad UTF-8 repaired).
func TestMarshalEventOneLine(t *testing.T) {
	r := fixture()
	r.Comment = "a\nb\r\u2028c\x00"
	r.Reason = "bad \xff utf-8"
	r.UserAgent = `<script>"x"</script>`
	b, err := MarshalEvent(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(b), "\r\n") || !utf8.Valid(b) {
		t.Fatalf("not one UTF-8 line: %q", b)
	}
	if !strings.Contains(string(b), `"userAgent":"<script>\"x\"</script>"`) {
		t.Fatalf("HTML escaped: %s", b)
	}
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Record.Comment != r.Comment || ev.Record.Reason != "bad \uFFFD utf-8" {
		t.Fatalf("round trip: comment %q reason %q", ev.Record.Comment, ev.Record.Reason)
	}
}

func TestMarshalEventInvalid(t *testing.T) {
	if _, err := MarshalEvent(nil); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("MarshalEvent(nil) = %v, want ErrInvalid", err)
	}
	r := fixture()
	r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := MarshalEvent(r); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("MarshalEvent(year 10000) = %v, want ErrInvalid", err)
	}
}

func TestName(t *testing.T) {
	if got := Name(escrow.ActionSecretReveal); got != "Secret value revealed" {
		t.Errorf("Name(reveal) = %q", got)
	}
	if got := Name("custom.thing"); got != "custom.thing" {
		t.Errorf("Name(unknown) = %q, want the action", got)
	}
}

// FuzzCEF formats a record whose every string comes from the fuzzer and
// checks that the line is one valid UTF-8 line that the strict parser
// reads back to exactly the record's fields, and nothing else.
func FuzzCEF(f *testing.F) {
	f.Add("v1", "secret.reveal", "alice", "alice@example.com", "dba", "admin", "forbidden", "INC-1", "req-1",
		"192.0.2.7", "curl/8", "a comment", "S1", "secret:S1", "field", "password", int64(1795341600123))
	f.Add(`1|2\3`, "a|b=c\\", "x=y z=", "\n", "g1,g2", "", "a\\=b\r\nc", "|", "\\", "fe80::1%eth0", "=", " ", "  ", "k=v ", "=", "\\n", int64(0))
	f.Add("", "", " k=v", "a b=c", "\x00\x1b", "\xff", "ünï©ødé 🚀", "\t", "msg=x", "not-an-ip", "\u0085\u2028", "end\\", "x ", " y", "", "", int64(-62135596800000))
	f.Fuzz(func(t *testing.T, version, action, sub, email, group, role, reason, ticket, reqID, srcIP, ua, comment, secretID, target, dk, dv string, ms int64) {
		r := &escrow.AuditRecord{
			ID:        "01JDX9V7M3Q8K2ZB4W6Y5T0R1S",
			Time:      time.UnixMilli(ms).UTC(),
			Actor:     escrow.Actor{Subject: sub, Email: email},
			Action:    action,
			SecretID:  secretID,
			Target:    target,
			Outcome:   escrow.OutcomeFailed,
			ErrorCode: escrow.Code(reason),
			Reason:    reason,
			RequestID: reqID,
			SourceIP:  srcIP,
			UserAgent: ua,
			Comment:   comment,
			Ticket:    ticket,
		}
		if group != "" {
			r.Actor.Groups = []string{group, group}
		}
		if role != "" {
			r.Actor.Roles = []string{role}
		}
		if dk != "" {
			r.Details = map[string]string{dk: dv}
		}
		line := FormatCEF(r, version)
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("line break in %q", line)
		}
		if !utf8.ValidString(line) {
			t.Fatalf("invalid UTF-8 in %q", line)
		}
		c, err := parseCEF(line)
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		wantHeader := [7]string{"0", "Escrow", "Escrow", cleanHeader(version), cleanHeader(action),
			cleanHeader(Name(action)), strconv.Itoa(Severity(r))}
		if c.header != wantHeader {
			t.Fatalf("header of %q:\n got %q\nwant %q", line, c.header, wantHeader)
		}
		if want := expectedExtension(r); !reflect.DeepEqual(c.ext, want) {
			t.Fatalf("extension of %q:\n got %q\nwant %q", line, c.ext, want)
		}

		// The JSON event of the same record is one line too.
		b, err := MarshalEvent(r)
		if err != nil {
			if !errors.Is(err, escrow.ErrInvalid) || r.Time.Year() >= 0 && r.Time.Year() <= 9999 {
				t.Fatalf("MarshalEvent: %v", err)
			}
			return
		}
		if strings.ContainsAny(string(b), "\r\n") || !json.Valid(b) {
			t.Fatalf("JSON event is not one line of JSON: %q", b)
		}
	})
}

// cleanText is what the CEF line carries for s before escaping: controls
// other than tab, CR and LF, and bytes that are not UTF-8, become U+FFFD.
func cleanText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\t' || r == '\r' || r == '\n' {
			b.WriteRune(r)
		} else if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == utf8.RuneError {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func cleanHeader(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(cleanText(s))
}

// expectedExtension maps r to the extension the package doc promises,
// independently of FormatCEF's code.
func expectedExtension(r *escrow.AuditRecord) map[string]string {
	m := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			m[k] = cleanText(v)
		}
	}
	label := func(k, l, v string) {
		if v != "" {
			m[k], m[k+"Label"] = cleanText(v), l
		}
	}
	if !r.Time.IsZero() {
		m["rt"] = strconv.FormatInt(r.Time.UnixMilli(), 10)
	}
	set("externalId", r.ID)
	set("act", r.Action)
	set("outcome", string(r.Outcome))
	set("reason", string(r.ErrorCode))
	set("msg", r.Reason)
	set("suser", r.Actor.Subject)
	set("spriv", strings.Join(r.Actor.Roles, ","))
	if isIP(r.SourceIP) {
		set("src", r.SourceIP)
	} else {
		set("shost", r.SourceIP)
	}
	set("requestClientApplication", r.UserAgent)
	label("cs1", "secretId", r.SecretID)
	label("cs2", "ticket", r.Ticket)
	label("cs3", "requestId", r.RequestID)
	label("cs4", "comment", r.Comment)
	label("cs5", "actorEmail", r.Actor.Email)
	if len(r.Details) > 0 {
		d, _ := json.Marshal(r.Details)
		label("cs6", "details", string(d))
	}
	label("flexString1", "actorGroups", strings.Join(r.Actor.Groups, ","))
	label("flexString2", "target", r.Target)
	return m
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
