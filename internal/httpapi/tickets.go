package httpapi

import (
	"net/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *api) ticketsConfigured() error {
	if a.tickets == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "ticket systems are not enabled in this deployment")
	}
	return nil
}

func (a *api) listTicketSystems(w http.ResponseWriter, r *http.Request) error {
	if err := a.ticketsConfigured(); err != nil {
		return err
	}
	list, def, err := a.tickets.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []*escrow.TicketSystemConfig{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ticketSystems": list, "default": def})
	return nil
}

func (a *api) putTicketSystem(w http.ResponseWriter, r *http.Request) error {
	if err := a.ticketsConfigured(); err != nil {
		return err
	}
	var c escrow.TicketSystemConfig
	if err := decode(r, &c); err != nil {
		return err
	}
	if c.Name != "" && c.Name != r.PathValue("name") {
		return escrow.Errorf(escrow.CodeInvalid, "name in the body differs from the URL")
	}
	c.Name = r.PathValue("name")
	out, err := a.tickets.Put(r.Context(), &c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) defaultTicketSystem(w http.ResponseWriter, r *http.Request) error {
	if err := a.ticketsConfigured(); err != nil {
		return err
	}
	if err := a.tickets.SetDefault(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"default": r.PathValue("name")})
	return nil
}

func (a *api) testTicketSystem(w http.ResponseWriter, r *http.Request) error {
	if err := a.ticketsConfigured(); err != nil {
		return err
	}
	var req struct {
		Number string `json:"number"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	t, err := a.tickets.Test(r.Context(), r.PathValue("name"), req.Number)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
