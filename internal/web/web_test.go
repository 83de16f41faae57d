package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

const canary = "Canary-pw-7f3e9d1c"

func TestSignInMakesAHardenedSession(t *testing.T) {
	s := newStack(t)
	b := s.browser("alice")
	p := b.signIn("/secrets")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Alice") {
		t.Fatalf("after sign-in: %d\n%s", p.status, p.body)
	}
	if got := s.records(escrow.ActionSessionLogin); len(got) != 1 || got[0].Actor.Subject != "alice" {
		t.Fatalf("session.login records = %+v, want one by alice", got)
	}
	// The cookie as the browser got it.
	p2 := b.get("/secrets")
	if p2.status != http.StatusOK {
		t.Fatalf("second page: %d", p2.status)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if p2.header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if got := p2.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

func TestSessionCookieFlags(t *testing.T) {
	s := newStack(t)
	b := s.browser("alice")
	// Walk the sign-in by hand to see the callback's Set-Cookie.
	p := b.get("/login?next=/secrets")
	authz, _ := url.Parse(p.location)
	form := authz.Query()
	form.Set("user", "alice")
	back := b.postFrom(s.url+"/dev/oidc/authorize", form, "")
	req, _ := http.NewRequest(http.MethodGet, back.location, nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "escrow-session" {
			sess = c
		}
	}
	if sess == nil {
		t.Fatalf("callback set no session cookie: %v", resp.Header["Set-Cookie"])
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || len(sess.Value) < 40 {
		t.Errorf("session cookie = %+v; want HttpOnly, SameSite=Lax, Path=/ and a long random value", sess)
	}
	if resp.Header.Get("Location") != "/secrets" {
		t.Errorf("callback went to %q, want /secrets", resp.Header.Get("Location"))
	}
	// The store keeps only the hash of the cookie's value.
	raw := s.records(escrow.ActionSessionLogin)
	if len(raw) != 1 {
		t.Fatalf("%d login records", len(raw))
	}
	if _, err := s.store.GetSession(as(admin), sess.Value); err == nil {
		t.Error("the store finds a session by the raw cookie value; it must key by its hash only")
	}
}

func TestNoValueInPageUntilRevealed(t *testing.T) {
	s := newStack(t)
	_, open := s.seed(canary)
	b := s.browser("alice")
	p := b.signIn("/secrets/" + open)
	if p.status != http.StatusOK {
		t.Fatalf("secret page: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, canary) {
		t.Fatal("the secret page holds the value before any reveal")
	}
	if !strings.Contains(p.body, `data-testid="reveal-button"`) {
		t.Fatalf("alice may view /open/app but sees no reveal button:\n%s", p.body)
	}
	r := b.post("/secrets/"+open+"/reveal", url.Values{"csrf": {b.csrf(p)}, "back": {"/secrets/" + open}})
	if r.status != http.StatusOK || !strings.Contains(r.body, canary+"-open") {
		t.Fatalf("reveal: %d, value shown: %v", r.status, strings.Contains(r.body, canary))
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("the revealed page may be cached: Cache-Control %q", r.header.Get("Cache-Control"))
	}
	if again := b.get("/secrets/" + open); strings.Contains(again.body, canary) {
		t.Error("the value is still on the page after leaving the reveal")
	}
	if got := s.records(escrow.ActionSecretReveal); len(got) != 1 || got[0].Actor.Subject != "alice" || got[0].Outcome != escrow.OutcomeSuccess {
		t.Fatalf("reveal records = %+v", got)
	}
}

func TestCSRFRefused(t *testing.T) {
	s := newStack(t)
	_, open := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	p := alice.signIn("/secrets/" + open)
	bp := bob.signIn("/secrets")
	good := alice.csrf(p)
	cases := []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no token", url.Values{}, s.url},
		{"wrong token", url.Values{"csrf": {"AAAA" + good[4:]}}, s.url},
		{"another session's token", url.Values{"csrf": {bob.csrf(bp)}}, s.url},
		{"right token, foreign origin", url.Values{"csrf": {good}}, "https://evil.example"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := alice.postFrom("/secrets/"+open+"/reveal", c.form, c.origin)
			if r.status != http.StatusForbidden || !strings.Contains(r.body, "Form refused") {
				t.Fatalf("status %d, want 403 Form refused:\n%s", r.status, r.body)
			}
			if strings.Contains(r.body, canary) {
				t.Fatal("a refused form revealed the value")
			}
		})
	}
	if got := s.records(escrow.ActionSecretReveal); len(got) != 0 {
		t.Fatalf("refused forms reached the use case: %d reveal records", len(got))
	}
	// Logout is a form too.
	if r := alice.postFrom("/logout", url.Values{}, s.url); r.status != http.StatusForbidden {
		t.Fatalf("logout without a token: %d, want 403", r.status)
	}
	if r := alice.get("/secrets"); r.status != http.StatusOK {
		t.Fatalf("the refused logout ended the session: %d", r.status)
	}
	// And the good token works.
	if r := alice.post("/secrets/"+open+"/reveal", url.Values{"csrf": {good}}); r.status != http.StatusOK {
		t.Fatalf("with the right token: %d", r.status)
	}
}

// requestAccess files alice's request through the console and returns its id.
func requestAccess(t *testing.T, b *browser, secretID string) string {
	t.Helper()
	p := b.get("/secrets/" + secretID)
	r := b.post("/secrets/"+secretID+"/request", url.Values{"csrf": {b.csrf(p)}, "access": {"view"}, "when": {"now"},
		"duration": {"1h0m0s"}, "comment": {"CHG0012345"}, "back": {"/secrets/" + secretID}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/requests/") {
		t.Fatalf("request: %d %s\n%s", r.status, r.location, r.body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(r.location, "/requests/"), "?done=requested")
	if page := b.follow(r); !strings.Contains(page.body, "Your request was sent to its approvers.") {
		t.Fatalf("request page:\n%s", page.body)
	}
	return id
}

func TestRequestCommentMustMatchPolicy(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	b := s.browser("alice")
	p := b.signIn("/secrets/" + gated)
	r := b.post("/secrets/"+gated+"/request", url.Values{"csrf": {b.csrf(p)}, "access": {"view"}, "when": {"now"},
		"duration": {"1h0m0s"}, "comment": {"please"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Enter the change number, e.g. CHG0012345") {
		t.Fatalf("a comment that misses the pattern: %d, want 400 with the policy's message:\n%s", r.status, r.body)
	}
	if !strings.Contains(r.body, `>please</textarea>`) {
		t.Error("the refused form lost what the user typed")
	}
}

func TestDeniedUserSeesNoRevealButton(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	p := alice.signIn("/secrets/" + gated)
	if strings.Contains(p.body, `data-testid="reveal-button"`) || !strings.Contains(p.body, "needs an approved request") {
		t.Fatalf("before any approval alice is offered a reveal:\n%s", p.body)
	}
	id := requestAccess(t, alice, gated)
	rp := bob.signIn("/requests/" + id)
	if !strings.Contains(rp.body, `value="deny"`) {
		t.Fatalf("bob, an approver, is not offered a decision:\n%s", rp.body)
	}
	d := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(rp)}, "decision": {"deny"}, "comment": {"not this week"}})
	if d.status != http.StatusSeeOther {
		t.Fatalf("deny: %d\n%s", d.status, d.body)
	}
	after := alice.get("/secrets/" + gated)
	if strings.Contains(after.body, `data-testid="reveal-button"`) || strings.Contains(after.body, canary) {
		t.Fatal("after the denial alice sees a reveal button or the value")
	}
	// Posting the reveal anyway is refused by the use case, and audited.
	r := alice.post("/secrets/"+gated+"/reveal", url.Values{"csrf": {alice.csrf(after)}, "comment": {"CHG0012345"}})
	if r.status != http.StatusForbidden || strings.Contains(r.body, canary) {
		t.Fatalf("reveal after denial: %d", r.status)
	}
	recs := s.records(escrow.ActionSecretReveal)
	if len(recs) != 1 || recs[0].Outcome != escrow.OutcomeDenied {
		t.Fatalf("reveal records = %+v, want one denied", recs)
	}
	if mine := alice.get("/requests/" + id); !strings.Contains(mine.body, "denied") || !strings.Contains(mine.body, "not this week") {
		t.Fatalf("alice's request page does not show the denial and its comment:\n%s", mine.body)
	}
}

func TestApproveThenReveal(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	alice.signIn("/secrets/" + gated)
	id := requestAccess(t, alice, gated)
	// alice cannot decide her own request: no form, and a forged post is refused.
	own := alice.get("/requests/" + id)
	if strings.Contains(own.body, `value="approve"`) {
		t.Fatal("alice is offered to approve her own request")
	}
	if r := alice.post("/requests/"+id+"/decision", url.Values{"csrf": {alice.csrf(own)}, "decision": {"approve"}}); r.status != http.StatusForbidden {
		t.Fatalf("self-approval: %d, want 403\n%s", r.status, r.body)
	}
	rp := bob.signIn("/requests/" + id)
	d := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(rp)}, "decision": {"approve"}})
	if d.status != http.StatusSeeOther {
		t.Fatalf("approve: %d\n%s", d.status, d.body)
	}
	if page := bob.follow(d); !strings.Contains(page.body, "You approved this request.") {
		t.Fatalf("after approving:\n%s", page.body)
	}
	sp := alice.get("/secrets/" + gated)
	if !strings.Contains(sp.body, `data-testid="reveal-button"`) || !strings.Contains(sp.body, "left") {
		t.Fatalf("after approval alice has no reveal button or time left:\n%s", sp.body)
	}
	r := alice.post("/secrets/"+gated+"/reveal", url.Values{"csrf": {alice.csrf(sp)}, "comment": {"CHG0012345"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, canary) {
		t.Fatalf("reveal with a grant: %d", r.status)
	}
}

func TestApproveNeedsRecentSignIn(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	alice.signIn("/secrets/" + gated)
	id := requestAccess(t, alice, gated)
	rp := bob.signIn("/requests/" + id)
	token := bob.csrf(rp)

	// 16 minutes later the session is older than the default 15-minute
	// step-up: the page asks to sign in again, and a post is not decided.
	s.clock.set(16 * time.Minute)
	if page := bob.get("/requests/" + id); !strings.Contains(page.body, "Sign in again to decide") || strings.Contains(page.body, `value="approve"`) {
		t.Fatalf("an old session is offered the decision form:\n%s", page.body)
	}
	r := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {token}, "decision": {"approve"}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.location, "stepup=1") {
		t.Fatalf("old session's approval: %d %s, want a step-up sign-in", r.status, r.location)
	}
	if req, _ := s.access.Get(as(admin), id); req.Status != escrow.StatusPending {
		t.Fatalf("the request is %s after a refused step-up", req.Status)
	}

	// Signing in again (now) gives a fresh session; the decision goes through.
	s.clock.set(0)
	p := bob.signIn(r.location)
	if p.status != http.StatusOK || !strings.Contains(p.body, `value="approve"`) {
		t.Fatalf("after the step-up sign-in: %d\n%s", p.status, p.body)
	}
	d := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(p)}, "decision": {"approve"}})
	if d.status != http.StatusSeeOther || !strings.Contains(d.location, "done=approved") {
		t.Fatalf("approve after step-up: %d %s", d.status, d.location)
	}
	// The old session was ended when the new one began.
	if got := s.records(escrow.ActionSessionLogout); len(got) != 1 || got[0].Reason != "replaced by a new sign-in" {
		t.Fatalf("logout records = %+v", got)
	}
	if d := bob.postFrom("/requests/"+id+"/decision", url.Values{"csrf": {token}, "decision": {"approve"}}, s.url); d.status != http.StatusForbidden {
		t.Fatalf("the replaced session's CSRF token still works: %d", d.status)
	}
}

func TestExpiredSessionOnApprove(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	alice.signIn("/secrets/" + gated)
	id := requestAccess(t, alice, gated)
	rp := bob.signIn("/requests/" + id)

	s.clock.set(9 * time.Hour) // past the 8 h session
	r := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(rp)}, "decision": {"approve"}, "back": {"/requests/" + id}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login?") {
		t.Fatalf("expired session's approval: %d %s, want a sign-in", r.status, r.location)
	}
	q, _ := url.ParseQuery(strings.TrimPrefix(r.location, "/login?"))
	if q.Get("next") != "/requests/"+id || q.Get("expired") != "1" {
		t.Fatalf("sign-in redirect %s: want next=/requests/%s and expired=1", r.location, id)
	}
	if req, _ := s.access.Get(as(admin), id); req.Status != escrow.StatusPending {
		t.Fatalf("an expired session decided: %s", req.Status)
	}
	if g := bob.get("/approvals"); g.status != http.StatusSeeOther {
		t.Fatalf("an expired session still reads pages: %d", g.status)
	}
	if got := s.records(escrow.ActionSessionLogout); len(got) != 1 || got[0].Reason != "expired" {
		t.Fatalf("an expired session was not ended and audited: %+v", got)
	}

	s.clock.set(0)
	p := bob.signIn(r.location)
	if !strings.Contains(p.body, `value="approve"`) {
		t.Fatalf("after signing in again bob is not back on the request:\n%s", p.body)
	}
	d := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(p)}, "decision": {"approve"}})
	if d.status != http.StatusSeeOther || !strings.Contains(d.location, "done=approved") {
		t.Fatalf("approve after signing in again: %d %s", d.status, d.location)
	}
}

func TestLogoutEndsTheSessionOnTheServer(t *testing.T) {
	s := newStack(t)
	b := s.browser("alice")
	p := b.signIn("/secrets")
	old := b.cookie("escrow-session")
	if old == nil {
		t.Fatal("no session cookie")
	}
	r := b.post("/logout", url.Values{"csrf": {b.csrf(p)}})
	if r.status != http.StatusSeeOther || r.location != "/signed-out" {
		t.Fatalf("logout: %d %s", r.status, r.location)
	}
	if got := s.records(escrow.ActionSessionLogout); len(got) != 1 || got[0].Actor.Subject != "alice" {
		t.Fatalf("logout records = %+v", got)
	}
	// Replaying the old cookie gets nothing.
	replay := s.browser("alice")
	u, _ := url.Parse(s.url)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "escrow-session", Value: old.Value, Path: "/"}})
	if g := replay.get("/secrets"); g.status != http.StatusSeeOther || !strings.HasPrefix(g.location, "/login") {
		t.Fatalf("the logged-out cookie still works: %d %s", g.status, g.location)
	}
}

func TestSignInRefusesForeignState(t *testing.T) {
	s := newStack(t)
	b := s.browser("alice")
	p := b.get("/login?next=/secrets")
	authz, _ := url.Parse(p.location)
	form := authz.Query()
	form.Set("user", "alice")
	back := b.postFrom(s.url+"/dev/oidc/authorize", form, "")
	cb, _ := url.Parse(back.location)
	q := cb.Query()
	q.Set("state", "someone-elses-state")
	cb.RawQuery = q.Encode()
	r := b.get(cb.String())
	if r.status != http.StatusBadRequest || b.cookie("escrow-session") != nil {
		t.Fatalf("callback with a foreign state: %d, session cookie %v", r.status, b.cookie("escrow-session"))
	}
	// A callback with no sign-in started in this browser.
	other := s.browser("alice")
	if r := other.get(back.location); r.status != http.StatusBadRequest {
		t.Fatalf("callback in a browser that never started a sign-in: %d", r.status)
	}
	if got := s.records(escrow.ActionSessionLogin); len(got) != 0 {
		t.Fatalf("%d sessions were made", len(got))
	}
}

func TestLoginNeverRedirectsOffSite(t *testing.T) {
	s := newStack(t)
	for _, next := range []string{"//evil.example/x", "https://evil.example/", `/\evil.example`, "javascript:alert(1)", "/secrets"} {
		b := s.browser("alice")
		p := b.get("/login?next=" + url.QueryEscape(next))
		authz, err := url.Parse(p.location)
		if err != nil || p.status != http.StatusSeeOther {
			t.Fatalf("next=%s: %d %s", next, p.status, p.location)
		}
		form := authz.Query()
		form.Set("user", "alice")
		back := b.postFrom(s.url+"/dev/oidc/authorize", form, "")
		cb := b.get(back.location)
		want := "/"
		if next == "/secrets" {
			want = next // a local path is kept
		}
		if cb.status != http.StatusSeeOther || cb.location != want {
			t.Errorf("next=%s: the callback sends the browser to %q (%d), want %q", next, cb.location, cb.status, want)
		}
	}
}

func TestQuantumLockedSecretShowsTheCLI(t *testing.T) {
	s := newStack(t)
	_, open := s.seed(canary)
	ctx := as(admin)
	sec, err := s.store.GetSecret(ctx, open)
	if err != nil {
		t.Fatal(err)
	}
	// Mark it locked as the QuantumLock use case would (the value itself is
	// irrelevant here: the page must not offer to show it).
	prev := sec.Revision
	sec.QLock = &escrow.QLock{Members: []string{"alice"}, Fields: []string{"password"}, LockedAt: time.Now().UTC(), LockedBy: "alice"}
	sec.Revision++
	if err := s.store.UpdateSecret(ctx, sec, prev, nil, escrow.NewAuditRecord(ctx, time.Now(), escrow.ActionQLockLock, escrow.SecretTarget(open))); err != nil {
		t.Fatal(err)
	}
	b := s.browser("alice")
	p := b.signIn("/secrets/" + open)
	if !strings.Contains(p.body, "escrow secret reveal /open/app") || strings.Contains(p.body, `data-testid="reveal-button"`) {
		t.Fatalf("a QuantumLocked secret's page:\n%s", p.body)
	}
	if strings.Contains(strings.ToLower(p.body), `type="password"`) {
		t.Fatal("the page asks for a password")
	}
}

func TestEmptyStatesAndNotFound(t *testing.T) {
	s := newStack(t)
	b := s.browser("carol")
	p := b.signIn("/secrets")
	if !strings.Contains(p.body, "There are no secrets here that you can see") {
		t.Fatalf("empty secrets page:\n%s", p.body)
	}
	if p := b.get("/approvals"); !strings.Contains(p.body, "Nothing is waiting for you") {
		t.Fatalf("empty approvals:\n%s", p.body)
	}
	if p := b.get("/requests"); !strings.Contains(p.body, "You have not requested access yet") {
		t.Fatalf("empty requests:\n%s", p.body)
	}
	if p := b.get("/no/such/page"); p.status != http.StatusNotFound {
		t.Fatalf("unknown page: %d", p.status)
	}
	if p := b.get("/audit"); p.status != http.StatusForbidden {
		t.Fatalf("carol (no auditor role) on /audit: %d\n%s", p.status, p.body)
	}
	if p := b.get("/reports"); p.status != http.StatusForbidden || !strings.Contains(p.body, "reports are for auditors and admins") {
		t.Fatalf("carol (no auditor role) on /reports: %d\n%s", p.status, p.body)
	}
	if strings.Contains(b.get("/secrets").body, `href="/audit"`) {
		t.Error("carol's menu offers the audit pages")
	}
}

func TestCheckoutExtendCheckin(t *testing.T) {
	s := newStack(t)
	id := s.seedCheckout(canary)
	alice, carol := s.browser("alice"), s.browser("carol")
	p := alice.signIn("/secrets/" + id)
	if strings.Contains(p.body, `data-testid="reveal-button"`) || !strings.Contains(p.body, "Check out for 15 min") || strings.Contains(p.body, canary) {
		t.Fatalf("a checkout-only secret's page before checkout:\n%s", p.body)
	}
	back := "/secrets/" + id
	short := alice.post(back+"/checkout", url.Values{"csrf": {alice.csrf(p)}, "comment": {"fix"}, "back": {back}})
	if short.status != http.StatusBadRequest || !strings.Contains(short.body, "at least 10 characters") || strings.Contains(short.body, canary) {
		t.Fatalf("checkout with a short reason: %d\n%s", short.status, short.body)
	}
	got := alice.post(back+"/checkout", url.Values{"csrf": {alice.csrf(p)}, "comment": {"restore the orders replica"}, "back": {back}})
	if got.status != http.StatusOK || !strings.Contains(got.body, canary) || !strings.Contains(got.body, "Checked out to you until") {
		t.Fatalf("checkout: %d\n%s", got.status, got.body)
	}
	held := alice.get(back)
	if strings.Contains(held.body, canary) || !strings.Contains(held.body, "You hold the checkout") || !strings.Contains(held.body, "/extend") {
		t.Fatalf("the holder's page after leaving the value:\n%s", held.body)
	}
	// carol sees who holds it and gets no checkout button.
	cp := carol.signIn(back)
	if !strings.Contains(cp.body, "Checked out by alice") || strings.Contains(cp.body, "Check out for") {
		t.Fatalf("carol's page while alice holds it:\n%s", cp.body)
	}
	if r := carol.post(back+"/checkout", url.Values{"csrf": {carol.csrf(cp)}, "comment": {"I need it too, now"}}); r.status != http.StatusConflict || strings.Contains(r.body, canary) {
		t.Fatalf("carol's checkout while alice holds it: %d", r.status)
	}
	ext := alice.post(back+"/extend", url.Values{"csrf": {alice.csrf(held)}})
	if ext.status != http.StatusSeeOther || !strings.Contains(ext.location, "done=extended") {
		t.Fatalf("extend: %d %s", ext.status, ext.location)
	}
	if again := alice.follow(ext); strings.Contains(again.body, "/extend") || !strings.Contains(again.body, "extended 1 of 1 times") {
		t.Fatalf("after the one allowed extension:\n%s", again.body)
	}
	in := alice.post(back+"/checkin", url.Values{"csrf": {alice.csrf(held)}})
	if in.status != http.StatusSeeOther || !strings.Contains(in.location, "done=checkedin") {
		t.Fatalf("check in: %d %s", in.status, in.location)
	}
	for _, action := range []string{escrow.ActionCheckout, escrow.ActionCheckoutExtend, escrow.ActionCheckin} {
		recs := s.records(action)
		ok := false
		for _, r := range recs {
			ok = ok || (r.Actor.Subject == "alice" && r.Outcome == escrow.OutcomeSuccess)
		}
		if !ok {
			t.Errorf("no successful %s record by alice: %+v", action, recs)
		}
	}
}

func TestRequestALaterWindowInTheBrowsersZone(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	b := s.browser("alice")
	p := b.signIn("/secrets/" + gated)
	if !strings.Contains(p.body, `type="datetime-local"`) {
		t.Fatalf("a policy that allows booking ahead offers no start field:\n%s", p.body)
	}
	// A browser at UTC+2 books 14:30 local two days ahead: 12:30 UTC.
	day := time.Now().UTC().Add(48 * time.Hour).Format("2006-01-02")
	r := b.post("/secrets/"+gated+"/request", url.Values{"csrf": {b.csrf(p)}, "access": {"view"}, "when": {"later"},
		"start": {day + "T14:30"}, "tz": {"-120"}, "duration": {"2h0m0s"}, "comment": {"CHG0012345"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("booking ahead: %d\n%s", r.status, r.body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(r.location, "/requests/"), "?done=requested")
	req, err := s.access.Get(as(admin), id)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := time.Parse("2006-01-02T15:04", day+"T12:30")
	if !req.Start.Equal(want) || req.End.Sub(req.Start) != 2*time.Hour {
		t.Fatalf("window %s to %s, want %s for 2h", req.Start, req.End, want)
	}
	bad := b.post("/secrets/"+gated+"/request", url.Values{"csrf": {b.csrf(p)}, "access": {"view"}, "when": {"later"},
		"start": {"tomorrow"}, "duration": {"2h0m0s"}, "comment": {"CHG0012345"}})
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "give the start as a date and time") {
		t.Fatalf("a start that is not a date: %d\n%s", bad.status, bad.body)
	}
}

func TestBrowseAndSearch(t *testing.T) {
	s := newStack(t)
	gated, open := s.seed(canary)
	b := s.browser("alice")
	p := b.signIn("/secrets")
	for _, want := range []string{`href="/secrets?folder=%2fops"`, `href="/secrets?folder=%2fopen"`, "Secrets below / that you can see",
		`href="/secrets/` + gated + `"`, `href="/secrets/` + open + `"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the top page lacks %s", want)
		}
	}
	in := b.get("/secrets?folder=/open")
	if !strings.Contains(in.body, "Secrets in /open") || !strings.Contains(in.body, "/open/app") || strings.Contains(in.body, "/ops/db") {
		t.Errorf("browsing /open:\n%s", in.body)
	}
	found := b.get("/secrets?q=APP")
	if !strings.Contains(found.body, "/open/app") || strings.Contains(found.body, "/ops/db") {
		t.Errorf("searching app:\n%s", found.body)
	}
	none := b.get("/secrets?q=nothing-like-this")
	if !strings.Contains(none.body, "matches “nothing-like-this”") {
		t.Errorf("a search that finds nothing:\n%s", none.body)
	}
	if bad := b.get("/secrets?folder=../etc"); bad.status != http.StatusBadRequest {
		t.Errorf("a folder that is not a clean path: %d", bad.status)
	}
	if strings.Contains(p.body+in.body+found.body, canary) {
		t.Error("a listing holds a secret value")
	}
}

func TestApprovalsInbox(t *testing.T) {
	s := newStack(t)
	gated, _ := s.seed(canary)
	alice, bob := s.browser("alice"), s.browser("bob")
	alice.signIn("/secrets/" + gated)
	id := requestAccess(t, alice, gated)
	if own := alice.get("/approvals"); strings.Contains(own.body, id) {
		t.Fatal("alice's own request is in her approvals inbox")
	}
	in := bob.signIn("/approvals")
	if strings.Count(in.body, `data-testid="inbox-item"`) != 1 || !strings.Contains(in.body, "CHG0012345") ||
		!strings.Contains(in.body, `action="/requests/`+id+`/decision"`) || !strings.Contains(in.body, "1 of 1: 0 of 1 approval(s)") {
		t.Fatalf("bob's inbox:\n%s", in.body)
	}
	d := bob.post("/requests/"+id+"/decision", url.Values{"csrf": {bob.csrf(in)}, "decision": {"approve"}, "comment": {"ok"}, "back": {"/approvals"}})
	if d.status != http.StatusSeeOther || !strings.Contains(d.location, "done=approved") {
		t.Fatalf("approve from the inbox: %d %s", d.status, d.location)
	}
	if after := bob.get("/approvals"); !strings.Contains(after.body, "Nothing is waiting for you") {
		t.Fatalf("the decided request is still in the inbox:\n%s", after.body)
	}
}

func TestAuditSearchAndCSV(t *testing.T) {
	s := newStack(t)
	_, open := s.seed(canary)
	alice, auditor, carol := s.browser("alice"), s.browser("auditor"), s.browser("carol")
	p := alice.signIn("/secrets/" + open)
	if r := alice.post("/secrets/"+open+"/reveal", url.Values{"csrf": {alice.csrf(p)}}); r.status != http.StatusOK {
		t.Fatalf("reveal: %d", r.status)
	}
	a := auditor.signIn("/audit?actor=alice&action=secret.reveal")
	if !strings.Contains(a.body, `data-testid="audit-results"`) || !strings.Contains(a.body, "secret:"+open) ||
		!strings.Contains(a.body, `href="/reports/access-by-user.csv?user=alice"`) {
		t.Fatalf("the auditor's search:\n%s", a.body)
	}
	csv := auditor.get("/reports/access-by-user.csv?user=alice")
	if csv.status != http.StatusOK || !strings.HasPrefix(csv.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(csv.header.Get("Content-Disposition"), "attachment") || !strings.Contains(csv.body, "secret.reveal") {
		t.Fatalf("CSV download: %d %v\n%s", csv.status, csv.header, csv.body)
	}
	if strings.Contains(a.body+csv.body, canary) {
		t.Fatal("the audit trail holds the value")
	}
	carol.signIn("/secrets")
	if r := carol.get("/reports/activity.csv"); r.status != http.StatusForbidden || r.header.Get("Content-Disposition") != "" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("carol's download: %d %v", r.status, r.header)
	}
	if r := auditor.get("/audit?from=yesterday"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "from must be a date") {
		t.Fatalf("a bad date: %d", r.status)
	}
}
