// Package targets wires every rotation target adapter under its name, for
// the mains (the rotate function, the -dev server). It holds no logic.
package targets

import (
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/rotate/ldap"
	"github.com/escrow-pam/escrow/internal/rotate/postgres"
	"github.com/escrow-pam/escrow/internal/rotate/ssh"
	"github.com/escrow-pam/escrow/internal/rotate/webhook"
)

// All returns postgres, ldap, ad, ssh and webhook.
func All() map[string]escrow.RotationTarget {
	return map[string]escrow.RotationTarget{
		escrow.TargetPostgres: postgres.New(),
		escrow.TargetLDAP:     ldap.New(),
		escrow.TargetAD:       ldap.NewAD(),
		escrow.TargetSSH:      ssh.New(),
		escrow.TargetWebhook:  webhook.New(hook.New(nil, nil), 0),
	}
}
