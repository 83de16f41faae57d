// Package e2e drives the web console of `escrow server -dev` in a real
// browser (Debian's chromium, through playwright-core): console.mjs is the
// script, this test sets up the server and runs it.
//
// It never skips: without the browser or e2e/node_modules it fails and
// says how to install them (make e2e-deps; apt-get install chromium).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/devserver"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket/snowtest"
)

const (
	// chromiumPath is Debian's chromium; console.mjs gets it as CHROMIUM.
	chromiumPath = "/usr/bin/chromium"
	// playwright is what `make e2e-deps` installs (npm ci, e2e/package-lock.json).
	playwright = "node_modules/playwright-core/package.json"

	ticket       = "CHG0012345" // Implement, group engineering, in snowtest
	secretFolder = "/prod/ops"
	secretName   = "db-admin"
	secretPath   = secretFolder + "/" + secretName
	// scriptTimeout bounds the browser run: a hung page fails the test
	// rather than the whole `go test` timeout.
	scriptTimeout = 3 * time.Minute
)

// screenshots are the files console.mjs writes, one or more per step, and
// the viewport width each was taken at.
var screenshots = []struct {
	name  string
	width int
}{
	{"01-alice-secret-no-reveal.png", 1280},
	{"02-alice-request-pending.png", 1280},
	{"03-bob-mail-link-sign-in.png", 1280},
	{"04-bob-request-to-decide.png", 1280},
	{"05-bob-approved.png", 1280},
	{"06-alice-revealed.png", 1280},
	{"07-auditor-audit-results.png", 1280},
	{"08-alice-requests-phone.png", 390},
	{"09-alice-skip-link-focused.png", 1280},
}

func TestConsoleInBrowser(t *testing.T) {
	node := requireBrowser(t)
	ctx, cancel := context.WithTimeout(t.Context(), scriptTimeout+2*time.Minute)
	defer cancel()

	wd, err := os.Getwd() // the e2e directory
	if err != nil {
		t.Fatal(err)
	}
	artifacts := filepath.Join(filepath.Dir(wd), "artifacts", "e2e")
	if err := os.RemoveAll(artifacts); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(artifacts, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	snow := snowtest.New("escrow", "snow-pw")
	defer snow.Close()
	srv, err := devserver.Start(ctx, devserver.Config{
		Addr:    "127.0.0.1:0",
		DataDir: t.TempDir(),
		Seed:    true,
		Logger:  slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close dev server: %v", err)
		}
	}()

	sec, password := setUp(ctx, t, srv, snow.URL)

	t.Logf("console %s; secret %s (%s); artifacts in %s", srv.URL, secretPath, sec.ID, artifacts)
	start := time.Now()
	if err := runScript(ctx, t, node, []string{
		"BASE_URL=" + srv.URL,
		"SECRET_ID=" + sec.ID,
		"SECRET_PATH=" + secretPath,
		"SECRET_PASSWORD=" + password,
		"TICKET=" + ticket,
		"ARTIFACTS=" + artifacts,
		"CHROMIUM=" + chromiumPath,
	}); err != nil {
		t.Fatalf("console.mjs: %v (screenshots and server.log are in %s)", err, artifacts)
	}
	t.Logf("console.mjs passed in %s", time.Since(start).Round(time.Millisecond))

	for _, s := range screenshots {
		checkPNG(t, filepath.Join(artifacts, s.name), s.width)
	}
	checkAudit(ctx, t, srv, sec.ID)

	logf.Sync()
	if b, err := os.ReadFile(logPath); err != nil {
		t.Error(err)
	} else if bytes.Contains(b, []byte(password)) {
		t.Errorf("the server log %s holds the secret's value", logPath)
	}
}

// requireBrowser fails the test, saying how to install them, unless the
// browser, node and playwright-core are all here. It returns node's path.
func requireBrowser(t *testing.T) string {
	t.Helper()
	var missing []string
	if _, err := os.Stat(chromiumPath); err != nil {
		missing = append(missing, chromiumPath)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(playwright); err != nil {
		missing = append(missing, "e2e/node_modules/playwright-core")
	}
	if len(missing) > 0 {
		t.Fatalf("the browser test cannot run: %s missing; run `make e2e-deps` (and `apt-get install chromium` for the browser)",
			strings.Join(missing, ", "))
	}
	return node
}

// setUp configures the server as an admin would, through the REST API: the
// ServiceNow system (its credentials in an Escrow secret), /prod/ops's ACL
// and policy (one approver from group:approvers, a required comment, an
// implementing change ticket), and the secret alice will ask for. It
// returns the secret and its password.
func setUp(ctx context.Context, t *testing.T, srv *devserver.Server, snowURL string) (*client.Secret, string) {
	t.Helper()
	admin := apiClient(t, srv, "admin")

	creds, err := admin.CreateSecret(ctx, &client.CreateSecretRequest{Name: "servicenow", Folder: "/escrow", Type: "generic",
		Value: map[string]string{"username": "escrow", "password": "snow-pw"}})
	if err != nil {
		t.Fatalf("create the ServiceNow credentials: %v", err)
	}
	if _, err := admin.PutTicketSystem(ctx, &escrow.TicketSystemConfig{Name: "snow", Type: "servicenow",
		BaseURL: snowURL, CredentialSecret: creds.ID}); err != nil {
		t.Fatalf("add the ticket system: %v", err)
	}
	if err := admin.SetDefaultTicketSystem(ctx, "snow"); err != nil {
		t.Fatalf("make snow the default ticket system: %v", err)
	}
	if tk, err := admin.TestTicketSystem(ctx, "snow", ticket); err != nil || tk.State != "Implement" {
		t.Fatalf("look up %s in snow: %+v, %v", ticket, tk, err)
	}

	if _, err := admin.SetFolderACL(ctx, secretFolder, []escrow.ACE{
		{Principal: "group:engineering", Permission: escrow.PermView},
		{Principal: "group:approvers", Permission: escrow.PermList},
	}, 0); err != nil {
		t.Fatalf("set %s's ACL: %v", secretFolder, err)
	}
	pol := readPolicy(t, "testdata/ops-policy.json")
	if _, err := admin.SetFolderPolicy(ctx, secretFolder, pol); err != nil {
		t.Fatalf("set %s's policy: %v", secretFolder, err)
	}

	password := "e2e-" + rand.Text()
	sec, err := admin.CreateSecret(ctx, &client.CreateSecretRequest{Name: secretName, Folder: secretFolder,
		Type: "password", Description: "Orders DB admin (browser test)", Value: map[string]string{"username": "dbadmin", "password": password}})
	if err != nil {
		t.Fatalf("create %s: %v", secretPath, err)
	}
	return sec, password
}

// readPolicy reads a policy fixture, refusing fields escrow.Policy does not
// have (a typo would otherwise drop a rule silently).
func readPolicy(t *testing.T, file string) *escrow.Policy {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p escrow.Policy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return &p
}

func apiClient(t *testing.T, srv *devserver.Server, user string) *client.Client {
	t.Helper()
	tok, err := srv.Token(user)
	if err != nil {
		t.Fatalf("token for %s: %v", user, err)
	}
	return client.New(srv.URL, tok, &http.Client{Timeout: 30 * time.Second})
}

// runScript runs console.mjs with env added, logging its output line by
// line as it comes.
func runScript(ctx context.Context, t *testing.T, node string, env []string) error {
	ctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "console.mjs")
	cmd.Dir = "." // the e2e directory: node finds node_modules here
	cmd.Env = append(os.Environ(), env...)
	// Killed on timeout, node may leave the browser holding the pipe: do
	// not wait for it long.
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log("browser: " + sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr) // a line too long for the scanner
	}()
	err := cmd.Run()
	pw.Close()
	<-logged
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("did not finish in time (%v)", err)
	}
	return err
}

// checkPNG checks that a screenshot exists, is a PNG of the viewport's
// width, and is big enough to hold a page rather than a blank.
func checkPNG(t *testing.T, file string, width int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG", file)
		return
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: %v", file, err)
		return
	}
	if cfg.Width != width || cfg.Height < 200 || len(b) < 10<<10 {
		t.Errorf("%s is %dx%d, %d bytes: want %d wide, at least 200 high and 10 KiB", filepath.Base(file), cfg.Width, cfg.Height, len(b), width)
	}
}

// checkAudit checks, through the REST API as the auditor, that the ticket
// finds alice's request, bob's approval and alice's reveal: a reveal's
// record carries the ticket of the grant that allowed it.
func checkAudit(ctx context.Context, t *testing.T, srv *devserver.Server, secretID string) {
	t.Helper()
	page, err := apiClient(t, srv, "auditor").QueryAudit(ctx, client.AuditQuery{Ticket: ticket, Limit: 1000})
	if err != nil {
		t.Fatalf("GET /v1/audit?ticket=%s: %v", ticket, err)
	}
	find := func(actor, action string) *escrow.AuditRecord {
		for _, r := range page.Records {
			if r.Actor.Subject == actor && r.Action == action && r.Outcome == escrow.OutcomeSuccess {
				return r
			}
		}
		var got []string
		for _, r := range page.Records {
			got = append(got, r.Actor.Subject+" "+r.Action+" "+string(r.Outcome))
		}
		t.Errorf("no successful %s by %s in the audit records of %s; there are: %s", action, actor, ticket, strings.Join(got, "; "))
		return nil
	}
	find("alice", "request.create")
	find("bob", "request.approve")
	if r := find("alice", escrow.ActionSecretReveal); r != nil {
		if r.SecretID != secretID || r.Ticket != ticket || r.Details["grant"] == "" || r.Details["request"] == "" {
			t.Errorf("alice's secret.reveal record: secret %q ticket %q details %v; want secret %s, ticket %s, the grant and the request",
				r.SecretID, r.Ticket, r.Details, secretID, ticket)
		}
	}
}
