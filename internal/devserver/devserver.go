// Package devserver is `escrow server -dev`: the whole service in one local
// process, with the same http.Handler the api Lambda serves, behind local
// adapters (SQLite store, master key file, a demo OIDC issuer).
//
// It is for development and demos only: the demo issuer mints tokens for
// anyone who asks. It must never be wired into the Lambda functions.
package devserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/auth"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/directory/static"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/httpapi"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/notify/outbox"
	"github.com/escrow-pam/escrow/internal/qlock"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/rotate/targets"
	"github.com/escrow-pam/escrow/internal/rotation"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
	"github.com/escrow-pam/escrow/internal/tasks"
	"github.com/escrow-pam/escrow/internal/ticket/adapters"
	"github.com/escrow-pam/escrow/internal/ticketing"
	"github.com/escrow-pam/escrow/internal/web"
	localwf "github.com/escrow-pam/escrow/internal/workflow/local"
	"github.com/escrow-pam/escrow/statemachines"
)

// Audience is the audience of dev tokens.
const Audience = "escrow"

// TokenTTL is how long a dev token lives.
const TokenTTL = 12 * time.Hour

// Config configures the dev server.
type Config struct {
	Addr    string // "127.0.0.1:8080"; "127.0.0.1:0" picks a free port
	DataDir string // SQLite database, master key and dev issuer key
	Logger  *slog.Logger
	Seed    bool      // create demo folders and secrets on first run
	Out     io.Writer // banner: URL, tokens and examples (nil = discard)
	// Targets are the rotation targets; nil means every real adapter
	// (postgres, ldap, ad, ssh, webhook).
	Targets map[string]escrow.RotationTarget
	// DigestPeriod is how much of the audit log each signed digest seals
	// (default 1 minute in -dev; an hour in AWS).
	DigestPeriod time.Duration
	// SIEMFile, if set, receives every audit record as a SIEM event
	// ("-" is stdout), in SIEMFormat: json (default) or cef.
	SIEMFile, SIEMFormat string
	// SweepInterval is how often the in-process sweeper (the scheduled
	// sweeper function's stand-in) runs; default 1s.
	SweepInterval time.Duration
}

// Server is a running dev server.
type Server struct {
	URL string

	http   *http.Server
	store  *sqlite.Store
	issuer *auth.DevIssuer
	users  map[string]auth.DevUser
	done   chan struct{}
	err    error
	once   sync.Once
	stop   context.CancelFunc // stops the sweeper
	web    bool               // the web console is served
}

// Start opens the data directory, listens, seeds demo data if asked, and
// serves in the background. It returns once the server accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.DataDir == "" {
		cfg.DataDir = ".escrow"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s, err := start(ctx, cfg, ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

func start(ctx context.Context, cfg Config, ln net.Listener) (*Server, error) {
	base := "http://" + ln.Addr().String()
	store, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "escrow.db"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	keys, err := local.Open(filepath.Join(cfg.DataDir, "master.key"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open master key: %w", err)
	}
	issuerURL := base + "/dev/oidc"
	issuer, err := auth.OpenDevIssuer(filepath.Join(cfg.DataDir, "dev-issuer.key"), issuerURL, Audience)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open dev issuer: %w", err)
	}
	// The verifier fetches the dev issuer's JWKS over HTTP, as it would any
	// issuer's: the dev server exercises the production auth path.
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Issuer: issuerURL, Audience: Audience,
		HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("create verifier: %w", err)
	}
	svc := secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Grants: store, Checkouts: store, QLockKeys: store, Logger: cfg.Logger})
	box, err := outbox.Open(filepath.Join(cfg.DataDir, "outbox"), cfg.Logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	var people []static.Entry
	for _, u := range auth.DemoUsers() {
		people = append(people, static.Entry{Subject: u.Subject, Email: u.Email, Name: u.Name, Groups: u.Groups})
	}
	dir, err := static.New(people)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	tix := ticketing.New(ticketing.Config{Systems: store, Store: store, Keys: keys, Audit: store,
		Factory: adapters.Factory(nil, cfg.Logger), Logger: cfg.Logger})
	wf := localwf.New(statemachines.AccessRequest)
	acc := access.New(access.Config{Store: store, Requests: store, Audit: store, Logger: cfg.Logger,
		Notifier: box, Directory: dir, PublicURL: base, Workflow: wf, Tickets: tix})
	if cfg.Targets == nil {
		cfg.Targets = targets.All()
	}
	rot := rotation.New(rotation.Config{Store: store, Audit: store, Keys: keys, Targets: cfg.Targets,
		Sealer: qlock.Sealer{}, QLockKeys: store, Logger: cfg.Logger})
	cwf := localwf.New(statemachines.Checkout)
	co := checkout.New(checkout.Config{Store: store, Checkouts: store, Audit: store, Keys: keys, Grants: store,
		Workflow: cwf, Hooks: hook.New(nil, nil), Rotator: rot, Tickets: tix, Logger: cfg.Logger})
	runner, err := newRunner(store, &tasks.Handler{Access: acc, Checkout: co}, cfg.Logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	wf.Bind(runner)
	cwf.Bind(runner)
	s := &Server{URL: base, store: store, issuer: issuer, users: map[string]auth.DevUser{}, done: make(chan struct{})}
	for _, u := range auth.DemoUsers() {
		s.users[u.Subject] = u
	}
	dev := http.NewServeMux()
	dev.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", issuer.Handler()))
	dev.HandleFunc("POST /dev/token", s.handleToken)
	dev.HandleFunc("GET /dev/users", s.handleUsers)
	dev.HandleFunc("GET /dev/outbox", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		msgs, err := box.List(r.Context(), r.URL.Query().Get("ref"), limit)
		if err != nil {
			devError(w, http.StatusServiceUnavailable, "unavailable", "read outbox")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs})
	})
	feed, digests, siemFile, err := auditFeed(cfg, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	reports := report.New(report.Config{Store: store, Requests: store, Audit: store, Logger: cfg.Logger})
	schedules := reportsched.New(reportsched.Config{Reports: reports, Store: store, Audit: store, Notifier: box, Logger: cfg.Logger})
	console, err := newConsole(ln, base, issuerURL, verifier, web.Config{Secrets: svc, Access: acc, Checkout: co, Reports: reports,
		Sessions: store, Logger: cfg.Logger})
	if err != nil {
		store.Close()
		return nil, err
	}
	s.web = console != nil
	h := httpapi.New(httpapi.Config{Secrets: svc, Access: acc, Tickets: tix, Checkout: co, Digests: digests, Auth: verifier, Logger: cfg.Logger, Dev: dev,
		Reports: reports, Schedules: schedules, Web: console})
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}

	var seeded []seededSecret
	if cfg.Seed {
		if seeded, err = seed(ctx, svc, store); err != nil {
			store.Close()
			return nil, fmt.Errorf("seed demo data: %w", err)
		}
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	sweeping := make(chan struct{})
	go func() {
		defer close(sweeping)
		var wg sync.WaitGroup
		wg.Go(func() {
			every(sweepCtx, cfg.SweepInterval, "checkout sweep", cfg.Logger, func(ctx context.Context) error { _, err := co.Sweep(ctx); return err })
		})
		wg.Go(func() { runAuditFeed(sweepCtx, store, feed, cfg.SweepInterval, cfg.Logger) })
		wg.Go(func() {
			every(sweepCtx, cfg.SweepInterval, "scheduled reports", cfg.Logger, func(ctx context.Context) error { _, err := schedules.RunDue(ctx); return err })
		})
		acc.RunSweeper(sweepCtx, cfg.SweepInterval)
		wg.Wait()
	}()
	running := make(chan struct{})
	go func() {
		defer close(running)
		// Resumes persisted executions, then fires timers until stopped.
		if err := runner.Run(sweepCtx); err != nil && sweepCtx.Err() == nil {
			cfg.Logger.ErrorContext(ctx, "workflow runner stopped", "err", err)
		}
	}()
	go func() {
		err := s.http.Serve(ln)
		// Requests are drained (Shutdown); now stop the background writers
		// and let executions already moving reach their next wait, so the
		// store is closed only when nothing writes to it any more.
		stop()
		<-sweeping
		<-running
		settle, cancelSettle := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := runner.Settle(settle); serr != nil {
			cfg.Logger.Warn("workflow runner did not settle before shutdown", "err", serr)
		}
		cancelSettle()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.err = errors.Join(err, siemFile.Close(), store.Close())
		close(s.done)
	}()
	s.banner(cfg, seeded)
	cfg.Logger.InfoContext(ctx, "escrow dev server listening", "url", base, "data", cfg.DataDir)
	return s, nil
}

// newConsole makes the web console, signing in through the dev issuer
// with Authorization Code and PKCE like any OIDC provider. Its cookie may
// drop Secure only on loopback; on another address over plain http the
// console is off (nil), since a Secure cookie would never come back.
func newConsole(ln net.Listener, base, issuerURL string, verifier *auth.Verifier, cfg web.Config) (http.Handler, error) {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() {
		cfg.Logger.Warn("web console off: -dev serves plain http, and only loopback may use a cookie that is not Secure", "addr", ln.Addr().String())
		return nil, nil
	}
	rp, err := auth.NewRP(auth.RPConfig{Issuer: issuerURL, ClientID: Audience, RedirectURL: base + "/auth/callback", Verifier: verifier})
	if err != nil {
		return nil, fmt.Errorf("web console sign-in: %w", err)
	}
	cfg.Login, cfg.PublicURL, cfg.Insecure = rp, base, true
	h, err := web.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	return h, nil
}

// Token mints a token for the demo user sub.
func (s *Server) Token(sub string) (string, error) {
	u, ok := s.users[sub]
	if !ok {
		return "", escrow.Errorf(escrow.CodeNotFound, "no demo user %q (try alice, bob, carol, admin, auditor)", sub)
	}
	tok, _, err := s.issuer.Mint(u, TokenTTL)
	return tok, err
}

// Close shuts the server down gracefully and closes the store.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
	})
	<-s.done
	return s.err
}

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.User == "" {
		devError(w, http.StatusBadRequest, "invalid", `body must be {"user":"alice"}`)
		return
	}
	u, ok := s.users[req.User]
	if !ok {
		devError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no demo user %q (try alice, bob, carol, admin, auditor)", req.User))
		return
	}
	tok, exp, err := s.issuer.Mint(u, TokenTTL)
	if err != nil {
		devError(w, http.StatusInternalServerError, "internal", "mint token")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expiresAt": exp.UTC(), "user": u})
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"users": auth.DemoUsers()})
}

func devError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// every runs fn every interval until ctx ends, logging its failures: the
// -dev stand-in for the scheduled functions (checkout sweeper, reports).
func every(ctx context.Context, interval time.Duration, what string, logger *slog.Logger, fn func(context.Context) error) {
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, what, "err", err)
			}
		}
	}
}
