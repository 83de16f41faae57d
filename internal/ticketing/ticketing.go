// Package ticketing is the use case layer of ticket systems: their
// configuration (admin only, audited), the live lookups that access
// requests validate against, and the credentials those lookups use, read
// from an Escrow secret (never plain configuration) by the system itself.
//
// It must never put a ticket system's credentials into a log, an error, an
// audit record or an API answer.
package ticketing

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
)

// Factory builds an adapter for a configuration and its credentials.
type Factory func(cfg *escrow.TicketSystemConfig, creds ticket.Credentials) (ticket.System, error)

// Config holds what the service needs.
type Config struct {
	Systems escrow.TicketSystemStore
	Store   escrow.Store // reads the credential secrets
	Keys    escrow.Keys
	Audit   escrow.AuditLog
	Factory Factory
	Clock   escrow.Clock
	Logger  *slog.Logger
}

// Service manages ticket systems and looks tickets up.
type Service struct {
	cfg   Config
	rec   *audit.Recorder
	mu    sync.Mutex
	cache map[string]cachedSystem // by name
}

type cachedSystem struct {
	sys      ticket.System
	revision int64
	until    time.Time
}

// credentialTTL bounds how long decrypted credentials stay in memory
// before they are read (and their use audited) again.
const credentialTTL = time.Minute

// Actor is the subject of the audit records of credential reads.
const Actor = "escrow-tickets"

// Audited actions.
const (
	ActionSystemPut        = "ticket-system.put"
	ActionSystemList       = "ticket-system.list"
	ActionSystemDefault    = "ticket-system.default"
	ActionSystemTest       = "ticket-system.test"
	ActionCredentialReveal = "ticket-system.credentials"
)

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = escrow.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, rec: &audit.Recorder{Log: cfg.Audit, Clock: cfg.Clock, Logger: cfg.Logger}, cache: map[string]cachedSystem{}}
}

func admin(ctx context.Context) (*escrow.Principal, error) {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return nil, escrow.ErrUnauthenticated
	}
	if !p.IsAdmin() {
		return nil, escrow.Errorf(escrow.CodeForbidden, "ticket systems are configured by admins")
	}
	return p, nil
}

func coded(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return err
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}

// Put creates or replaces a ticket system (admin). Revision, if not zero,
// must match the stored one.
func (s *Service) Put(ctx context.Context, c *escrow.TicketSystemConfig) (*escrow.TicketSystemConfig, error) {
	rec := s.rec.New(ctx, ActionSystemPut, "ticket-system:"+c.Name)
	out, err := s.put(ctx, c, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	return out, nil
}

func (s *Service) put(ctx context.Context, c *escrow.TicketSystemConfig, rec *escrow.AuditRecord) (*escrow.TicketSystemConfig, error) {
	p, err := admin(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.GetSecret(ctx, c.CredentialSecret); err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return nil, escrow.Errorf(escrow.CodeInvalid, "credentialSecret %s is not a secret", c.CredentialSecret)
		}
		return nil, coded("read credential secret", err)
	}
	var prev int64
	old, err := s.cfg.Systems.GetTicketSystem(ctx, c.Name)
	switch {
	case err == nil:
		prev = old.Revision
	case !errors.Is(err, escrow.ErrNotFound):
		return nil, coded("read ticket system", err)
	}
	if c.Revision != 0 && c.Revision != prev {
		return nil, escrow.Errorf(escrow.CodeConflict, "ticket system %s changed since revision %d (now %d)", c.Name, c.Revision, prev)
	}
	n := *c
	n.Revision, n.UpdatedAt, n.UpdatedBy = prev+1, s.cfg.Clock.Now(), p.Subject
	rec.Details = map[string]string{"name": n.Name, "type": n.Type, "baseUrl": n.BaseURL, "credentialSecret": n.CredentialSecret}
	if err := s.cfg.Systems.PutTicketSystem(ctx, &n, prev, rec); err != nil {
		return nil, coded("put ticket system", err)
	}
	s.mu.Lock()
	delete(s.cache, n.Name)
	s.mu.Unlock()
	return &n, nil
}

// List returns the configured systems and the default's name (admin).
func (s *Service) List(ctx context.Context) ([]*escrow.TicketSystemConfig, string, error) {
	rec := s.rec.New(ctx, ActionSystemList, "ticket-systems")
	if _, err := admin(ctx); err != nil {
		return nil, "", s.rec.Fail(ctx, rec, err)
	}
	list, err := s.cfg.Systems.ListTicketSystems(ctx)
	if err != nil {
		return nil, "", s.rec.Fail(ctx, rec, coded("list ticket systems", err))
	}
	def, err := s.cfg.Systems.DefaultTicketSystem(ctx)
	if err != nil {
		return nil, "", s.rec.Fail(ctx, rec, coded("read default ticket system", err))
	}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return nil, "", err
	}
	return list, def, nil
}

// SetDefault makes name the default system (admin).
func (s *Service) SetDefault(ctx context.Context, name string) error {
	rec := s.rec.New(ctx, ActionSystemDefault, "ticket-system:"+name)
	if _, err := admin(ctx); err != nil {
		return s.rec.Fail(ctx, rec, err)
	}
	if _, err := s.cfg.Systems.GetTicketSystem(ctx, name); err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			err = escrow.Errorf(escrow.CodeNotFound, "no ticket system %q", name)
		}
		return s.rec.Fail(ctx, rec, coded("read ticket system", err))
	}
	rec.Details = map[string]string{"default": name}
	if err := s.cfg.Systems.SetDefaultTicketSystem(ctx, name, rec); err != nil {
		return s.rec.Fail(ctx, rec, coded("set default ticket system", err))
	}
	return nil
}

// Test looks a ticket up for real and returns what the system said
// (admin).
func (s *Service) Test(ctx context.Context, name, number string) (*escrow.Ticket, error) {
	rec := s.rec.New(ctx, ActionSystemTest, "ticket-system:"+name)
	rec.Ticket = number
	if _, err := admin(ctx); err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	t, err := s.Lookup(ctx, name, number)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	rec.Details = map[string]string{"state": t.State, "kind": string(t.Kind)}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return nil, err
	}
	return t, nil
}

// Lookup finds a ticket in the named system ("" = the default). It fails
// closed: any error means the ticket is not validated.
func (s *Service) Lookup(ctx context.Context, name, number string) (*escrow.Ticket, error) {
	if number == "" || len(number) > 64 {
		return nil, escrow.Errorf(escrow.CodeInvalid, "a ticket number is 1 to 64 characters")
	}
	sys, name, err := s.system(ctx, name)
	if err != nil {
		return nil, err
	}
	t, err := sys.Lookup(ctx, number)
	switch {
	case errors.Is(err, escrow.ErrNotFound):
		return nil, escrow.Errorf(escrow.CodeInvalid, "ticket %s was not found in %s", number, name)
	case escrow.ErrorCode(err) == escrow.CodeUnavailable:
		return nil, &escrow.Error{Code: escrow.CodeUnavailable, Message: "ticket system " + name + " cannot validate " + number + " now: " + escrow.ErrorMessage(err), Err: err}
	case err != nil:
		// Misconfiguration or an impostor: nothing is granted, and the
		// adapter's own message (which never quotes credentials or bodies)
		// says what went wrong.
		s.cfg.Logger.ErrorContext(ctx, "ticket lookup failed", "system", name, "err", err)
		cause := "unexpected failure"
		var e *escrow.Error
		if errors.As(err, &e) && e.Message != "" {
			cause = e.Message
		}
		return nil, &escrow.Error{Code: escrow.CodeUnavailable,
			Message: "ticket system " + name + " could not validate " + number + "; an admin must check its configuration (" + cause + ")", Err: err}
	}
	t.System = name
	return t, nil
}

// Comment writes a note on a ticket (write-back).
func (s *Service) Comment(ctx context.Context, name, number, text string) error {
	sys, _, err := s.system(ctx, name)
	if err != nil {
		return err
	}
	return sys.Comment(ctx, number, text)
}

// system returns the adapter for name, building it (and reading its
// credentials, audited) when the cache has none or the config changed.
func (s *Service) system(ctx context.Context, name string) (ticket.System, string, error) {
	if name == "" {
		def, err := s.cfg.Systems.DefaultTicketSystem(ctx)
		if err != nil {
			return nil, "", coded("read default ticket system", err)
		}
		if def == "" {
			return nil, "", escrow.Errorf(escrow.CodeUnavailable, "no default ticket system is configured")
		}
		name = def
	}
	cfg, err := s.cfg.Systems.GetTicketSystem(ctx, name)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, "", escrow.Errorf(escrow.CodeUnavailable, "ticket system %q is not configured", name)
	}
	if err != nil {
		return nil, "", coded("read ticket system", err)
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	c, ok := s.cache[name]
	s.mu.Unlock()
	if ok && c.revision == cfg.Revision && now.Before(c.until) {
		return c.sys, name, nil
	}
	creds, err := s.credentials(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	sys, err := s.cfg.Factory(cfg, creds)
	if err != nil {
		return nil, "", coded("build ticket system adapter", err)
	}
	s.mu.Lock()
	s.cache[name] = cachedSystem{sys: sys, revision: cfg.Revision, until: now.Add(credentialTTL)}
	s.mu.Unlock()
	return sys, name, nil
}

// credentials decrypts the system's credential secret. The read is audited
// like any reveal, by the system itself, naming the ticket system.
func (s *Service) credentials(ctx context.Context, cfg *escrow.TicketSystemConfig) (ticket.Credentials, error) {
	sctx := escrow.NewContext(ctx, &escrow.Principal{Subject: Actor})
	rec := s.rec.New(sctx, ActionCredentialReveal, escrow.SecretTarget(cfg.CredentialSecret))
	rec.SecretID = cfg.CredentialSecret
	rec.Details = map[string]string{"ticketSystem": cfg.Name}
	creds, err := s.readCredentials(ctx, cfg)
	if err != nil {
		return ticket.Credentials{}, s.rec.Fail(sctx, rec, err)
	}
	if err := s.rec.Commit(sctx, rec); err != nil {
		return ticket.Credentials{}, err
	}
	return creds, nil
}

func (s *Service) readCredentials(ctx context.Context, cfg *escrow.TicketSystemConfig) (ticket.Credentials, error) {
	sec, err := s.cfg.Store.GetSecret(ctx, cfg.CredentialSecret)
	if err != nil || sec.Deleted() {
		return ticket.Credentials{}, escrow.Errorf(escrow.CodeUnavailable, "the credentials of ticket system %s are missing", cfg.Name)
	}
	v, err := s.cfg.Store.GetVersion(ctx, sec.ID, sec.CurrentVersion)
	if err != nil {
		return ticket.Credentials{}, coded("read credential version", err)
	}
	val, err := envelope.Open(ctx, s.cfg.Keys, v)
	if err != nil {
		return ticket.Credentials{}, coded("decrypt credentials", err)
	}
	c := ticket.Credentials{Username: val["username"], Password: val["password"], Token: firstNonEmpty(val["token"], val["key"])}
	if c.Token == "" && (c.Username == "" || c.Password == "") {
		return ticket.Credentials{}, escrow.Errorf(escrow.CodeUnavailable,
			"the credentials secret of ticket system %s needs fields username and password, or token", cfg.Name)
	}
	return c, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
