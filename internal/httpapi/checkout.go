package httpapi

import (
	"context"
	"net/http"

	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
)

type checkoutRequest struct {
	Comment string `json:"comment"`
	Ticket  string `json:"ticket"`
}

// checkoutSvc returns the checkout service, or an error naming the missing
// feature (a deployment without it refuses, it does not pretend).
func (a *api) checkoutSvc() (*checkout.Service, error) {
	if a.checkout == nil {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "checkout is not configured on this server")
	}
	return a.checkout, nil
}

func (a *api) checkoutSecret(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	var req checkoutRequest
	if err := optionalBody(r, &req); err != nil {
		return err
	}
	out, err := svc.Checkout(r.Context(), checkout.Input{SecretID: r.PathValue("id"), Comment: req.Comment, Ticket: req.Ticket})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (a *api) getCheckout(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	out, err := svc.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) checkinSecret(w http.ResponseWriter, r *http.Request) error {
	return a.endCheckout(w, r, (*checkout.Service).Checkin)
}

func (a *api) forceCheckin(w http.ResponseWriter, r *http.Request) error {
	return a.endCheckout(w, r, (*checkout.Service).ForceCheckin)
}

func (a *api) endCheckout(w http.ResponseWriter, r *http.Request, end func(*checkout.Service, context.Context, string, string) (*escrow.Checkout, error)) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	var req commentRequest
	if err := optionalBody(r, &req); err != nil {
		return err
	}
	out, err := end(svc, r.Context(), r.PathValue("id"), req.Comment)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) extendCheckout(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	if err := optionalBody(r, &struct{}{}); err != nil {
		return err
	}
	out, err := svc.Extend(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) rotateNow(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	if err := optionalBody(r, &struct{}{}); err != nil {
		return err
	}
	out, err := svc.RotateNow(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

type rotationRequest struct {
	Rotation *escrow.RotationConfig `json:"rotation"`
}

func (a *api) setRotation(w http.ResponseWriter, r *http.Request) error {
	svc, err := a.checkoutSvc()
	if err != nil {
		return err
	}
	var req rotationRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	out, err := svc.SetRotation(r.Context(), r.PathValue("id"), req.Rotation)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
