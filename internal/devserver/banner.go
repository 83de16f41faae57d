package devserver

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/escrow-pam/escrow/internal/auth"
)

// banner prints what a newcomer needs: where the server is, who the demo
// users are, a token each, and commands that reveal a demo secret.
func (s *Server) banner(cfg Config, seeded []seededSecret) {
	w := cfg.Out
	fmt.Fprintf(w, "\nEscrow dev server on %s  (data: %s)\n", s.URL, cfg.DataDir)
	fmt.Fprintln(w, "DEV MODE: a demo OIDC issuer mints tokens for anyone; never expose this port.")
	if s.web {
		fmt.Fprintf(w, "\nWeb console: %s/  (sign in as any demo user on the dev sign-in page)\n", s.URL)
	} else {
		fmt.Fprintln(w, "\nWeb console: off (it needs https or a loopback address; listen on 127.0.0.1 to use it)")
	}
	fmt.Fprintln(w, "\nDemo users (tokens valid 12h; more: curl -s -X POST "+s.URL+"/dev/token -d '{\"user\":\"alice\"}'):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, u := range auth.DemoUsers() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", u.Subject, describe(u), u.Email)
	}
	tw.Flush()
	for _, u := range auth.DemoUsers() {
		if tok, err := s.Token(u.Subject); err == nil {
			fmt.Fprintf(w, "\nTOKEN_%s=%s\n", strings.ToUpper(u.Subject), tok)
		}
	}
	if len(seeded) > 0 {
		fmt.Fprintln(w, "\nDemo secrets:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, sec := range seeded {
			fmt.Fprintf(tw, "  %s\t%s\n", sec.Path, sec.ID)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nTry it (alice may reveal %s):\n", seeded[0].Path)
		fmt.Fprintf(w, "  TOKEN=$(curl -s -X POST %s/dev/token -d '{\"user\":\"alice\"}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')\n", s.URL)
		fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer $TOKEN\" %s/v1/secrets/%s/value\n", s.URL, seeded[0].ID)
		fmt.Fprintf(w, "or with the CLI:\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev alice\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow secret reveal %s\n", seeded[0].Path)
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev auditor && go run ./cmd/escrow audit --since 1h\n")
		fmt.Fprintf(w, "Access with approval (/prod/root needs a change number and two approvers: bob and carol):\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev alice && go run ./cmd/escrow request /prod/root/aws-root --for 1h --comment CHG0012345\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev bob   && go run ./cmd/escrow requests --pending && go run ./cmd/escrow approve <request-id>\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev carol && go run ./cmd/escrow approve <request-id>\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev alice && go run ./cmd/escrow secret reveal /prod/root/aws-root\n")
		fmt.Fprintf(w, "Mail to approvers and requesters: %s/outbox/ and %s/dev/outbox\n", cfg.DataDir, s.URL)
		fmt.Fprintf(w, "Exclusive checkout (/prod/breakglass: one holder at a time, 15 minutes, a reason):\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev alice && go run ./cmd/escrow checkout /prod/breakglass/db-breakglass --comment \"restore the orders replica\"\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev carol && go run ./cmd/escrow checkout /prod/breakglass/db-breakglass   # refused: checked out by alice\n")
		fmt.Fprintf(w, "  go run ./cmd/escrow login --dev alice && go run ./cmd/escrow checkin /prod/breakglass/db-breakglass\n")
	}
	fmt.Fprintln(w)
}

func describe(u auth.DevUser) string {
	var parts []string
	if len(u.Roles) > 0 {
		parts = append(parts, "roles: "+strings.Join(u.Roles, ","))
	}
	if len(u.Groups) > 0 {
		parts = append(parts, "groups: "+strings.Join(u.Groups, ","))
	}
	return strings.Join(parts, "; ")
}
