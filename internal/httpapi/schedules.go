package httpapi

import (
	"net/http"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *api) listSchedules(w http.ResponseWriter, r *http.Request) error {
	if a.schedules == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "scheduled reports are not configured on this server")
	}
	out, err := a.schedules.List(r.Context())
	if err != nil {
		return err
	}
	if out == nil {
		out = []*escrow.ReportSchedule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": out})
	return nil
}

type scheduleRequest struct {
	Report     string            `json:"report"`
	Params     map[string]string `json:"params"`
	Every      string            `json:"every"`
	At         int               `json:"at"`
	Recipients []string          `json:"recipients"`
}

func (a *api) putSchedule(w http.ResponseWriter, r *http.Request) error {
	if a.schedules == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "scheduled reports are not configured on this server")
	}
	var req scheduleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	out, err := a.schedules.Put(r.Context(), &escrow.ReportSchedule{Name: r.PathValue("name"), Report: req.Report,
		Params: req.Params, Every: req.Every, At: req.At, Recipients: req.Recipients})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) deleteSchedule(w http.ResponseWriter, r *http.Request) error {
	if a.schedules == nil {
		return escrow.Errorf(escrow.CodeUnavailable, "scheduled reports are not configured on this server")
	}
	if err := a.schedules.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
