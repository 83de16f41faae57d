// Package adapters builds a ticket.System from a ticket system's
// configuration: the one place that knows every adapter. Only mains and the
// ticketing wiring use it.
package adapters

import (
	"log/slog"
	"net/http"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/ticket"
	"github.com/escrow-pam/escrow/internal/ticket/bmc"
	"github.com/escrow-pam/escrow/internal/ticket/jira"
	"github.com/escrow-pam/escrow/internal/ticket/servicenow"
	"github.com/escrow-pam/escrow/internal/ticket/webhook"
)

// Factory returns a constructor of adapters sharing hc (nil: each gets its
// own client) and logger.
func Factory(hc *http.Client, logger *slog.Logger) func(cfg *escrow.TicketSystemConfig, creds ticket.Credentials) (ticket.System, error) {
	return func(cfg *escrow.TicketSystemConfig, creds ticket.Credentials) (ticket.System, error) {
		switch cfg.Type {
		case escrow.TicketServiceNow:
			return servicenow.New(servicenow.Config{Name: cfg.Name, BaseURL: cfg.BaseURL, Credentials: creds,
				Timeout: cfg.Timeout.D(), HTTPClient: hc, Logger: logger})
		case escrow.TicketBMC:
			return bmc.New(bmc.Config{Name: cfg.Name, BaseURL: cfg.BaseURL, Credentials: creds, Timeout: cfg.Timeout.D(), HTTPClient: hc})
		case escrow.TicketJira:
			return jira.New(jira.Config{Name: cfg.Name, BaseURL: cfg.BaseURL, Credentials: creds, Timeout: cfg.Timeout.D(),
				HTTPClient: hc, Options: cfg.Options})
		case escrow.TicketWebhook:
			return webhook.New(webhook.Config{Name: cfg.Name, BaseURL: cfg.BaseURL, Credentials: creds, Timeout: cfg.Timeout.D(), HTTPClient: hc})
		}
		return nil, escrow.Errorf(escrow.CodeInvalid, "ticket system type %q has no adapter", cfg.Type)
	}
}
