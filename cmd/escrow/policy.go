package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) policyCmd() *cobra.Command {
	return groupCmd("policy", "Show or set the policies that govern secrets",
		`A policy adds conditions on top of a secret's ACL: a comment the requester
must write (Require Comment, for example a change number matching a
pattern), approval for view, edit or checkout access, and a notice shown in
every notification. A secret follows its own policy, else the nearest
folder's.`,
		`  escrow policy get /prod/db/admin
  escrow policy set --folder /prod --file prod-policy.json
  escrow policy set /prod/db/admin --file - < policy.json
  escrow policy set /prod/db/admin --remove`,
		a.policyGetCmd(), a.policySetCmd())
}

func (a *app) policyGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get SECRET",
		Short: "Show the policy that governs a secret, and where it comes from",
		Args:  secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			v, err := c.GetPolicy(cmd.Context(), id)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, v)
			}
			if v.Policy == nil {
				fmt.Fprintf(a.stdout, "%s: no policy applies (the ACL alone decides)\n", v.Path)
				return nil
			}
			fmt.Fprintf(a.stdout, "%s: policy from %s\n", v.Path, v.From)
			describePolicy(a.stdout, v.Policy)
			return nil
		},
	}
}

// describePolicy prints a policy in plain words.
func describePolicy(w io.Writer, p *escrow.Policy) {
	switch cr := p.Comment; cr.Mode {
	case "", escrow.CommentOff:
		fmt.Fprintln(w, "  comment:  not asked for")
	default:
		where := "on access requests"
		if cr.OnReveal {
			where += " and on every reveal"
		}
		fmt.Fprintf(w, "  comment:  %s %s", cr.Mode, where)
		if cr.Prompt != "" {
			fmt.Fprintf(w, " (%q)", cr.Prompt)
		}
		fmt.Fprintln(w)
		if cr.Pattern != "" {
			fmt.Fprintf(w, "            must match %s", cr.Pattern)
			if cr.PatternMessage != "" {
				fmt.Fprintf(w, " — %s", cr.PatternMessage)
			}
			fmt.Fprintln(w)
		}
	}
	if ap := p.Approval; ap != nil {
		kinds := make([]string, len(ap.For))
		for i, k := range ap.For {
			kinds[i] = string(k)
		}
		fmt.Fprintf(w, "  approval: needed for %s; pending requests time out after %s; at most %s per grant\n",
			strings.Join(kinds, ", "), ap.PendingTimeout.D(), ap.MaxDuration.D())
		for i, st := range ap.Steps {
			fmt.Fprintf(w, "            step %d: %d of %s\n", i+1, st.Quorum, strings.Join(st.Approvers, ", "))
		}
	} else {
		fmt.Fprintln(w, "  approval: not needed")
	}
	if p.Notice != "" {
		fmt.Fprintf(w, "  notice:   %s\n", strings.ReplaceAll(strings.TrimSpace(p.Notice), "\n", "\n            "))
	}
}

func (a *app) policySetCmd() *cobra.Command {
	var (
		folder, file string
		remove       bool
	)
	cmd := &cobra.Command{
		Use:   "set [SECRET | --folder PATH] (--file FILE | --remove)",
		Short: "Set or remove a secret's or a folder's policy (needs owner)",
		Long: `Set a policy from a JSON file (- reads standard input), or remove it with
--remove. Unknown fields are refused, so a typo cannot silently weaken a
policy. Example policy:

  {"comment": {"mode": "required", "onReveal": true,
               "pattern": "^(CHG|INC)[0-9]{7}$",
               "patternMessage": "Enter the change or incident number"},
   "notice": "Production access is logged and reviewed."}`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (folder == "") == (len(args) == 0) {
				return usagef("name either one SECRET or --folder PATH")
			}
			if (file == "") == !remove {
				return usagef("give either --file FILE or --remove")
			}
			var pol *escrow.Policy
			if file != "" {
				var err error
				if pol, err = readPolicy(a, file); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if folder != "" {
				f, err := c.SetFolderPolicy(cmd.Context(), folder, pol)
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, f)
				}
				fmt.Fprintf(a.stdout, "Policy of folder %s %s (revision %d).\n", f.Path, setOrRemoved(pol), f.Revision)
				return nil
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			sec, err := c.SetSecretPolicy(cmd.Context(), id, pol)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, sec)
			}
			fmt.Fprintf(a.stdout, "Policy of %s %s (revision %d).\n", sec.Path, setOrRemoved(pol), sec.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&folder, "folder", "", "set the policy of this folder instead of a secret")
	cmd.Flags().StringVar(&file, "file", "", "JSON policy file, or - for standard input")
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the policy")
	return cmd
}

func setOrRemoved(p *escrow.Policy) string {
	if p == nil {
		return "removed"
	}
	return "set"
}

// readPolicy reads and strictly decodes a policy.
func readPolicy(a *app, file string) (*escrow.Policy, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(a.stdin, 1<<20))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p escrow.Policy
	if err := dec.Decode(&p); err != nil {
		return nil, usagef("policy %s is not a valid policy: %v", file, err)
	}
	if err := p.Validate(); err != nil {
		return nil, usagef("policy %s: %s", file, escrow.ErrorMessage(err))
	}
	return &p, nil
}
