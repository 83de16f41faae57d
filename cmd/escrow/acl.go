package main

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

const aclHelp = `An entry is principal=permission. A principal is user:<name> or
group:<name>; permissions, each including the ones after it, are:
  owner  change the access list (and everything below)
  edit   change the value and metadata, delete
  view   reveal the value
  list   see that the secret exists and its metadata`

// aclTarget abstracts a secret's or a folder's ACL for the shared
// get/set/add/remove commands.
type aclTarget struct {
	noun    string // "secret" or "folder"
	argName string // "SECRET" or "FOLDER"
	check   func(arg string) error
	// load returns the current ACL and revision (0 for a folder that does
	// not exist yet).
	load func(ctx context.Context, c *client.Client, arg string) (acl []escrow.ACE, rev int64, key string, err error)
	// store writes acl, conditional on rev.
	store func(ctx context.Context, c *client.Client, key string, acl []escrow.ACE, rev int64) (any, []escrow.ACE, error)
}

func (a *app) secretACLCmd() *cobra.Command {
	t := aclTarget{
		noun: "secret", argName: "SECRET", check: checkSecretArg,
		load: func(ctx context.Context, c *client.Client, arg string) ([]escrow.ACE, int64, string, error) {
			id, err := resolve(ctx, c, arg)
			if err != nil {
				return nil, 0, "", err
			}
			s, err := c.GetSecret(ctx, id)
			if err != nil {
				return nil, 0, "", err
			}
			return s.ACL, s.Revision, id, nil
		},
		store: func(ctx context.Context, c *client.Client, id string, acl []escrow.ACE, rev int64) (any, []escrow.ACE, error) {
			s, err := c.SetSecretACL(ctx, id, acl, &rev)
			if err != nil {
				return nil, nil, err
			}
			return s, s.ACL, nil
		},
	}
	return groupCmd("acl", "Show or change a secret's access list",
		`Show or change the access list of one secret. Changing it needs owner
permission. Folder access lists ('escrow folder acl') also apply to every
secret below the folder: the effective permission is the highest one granted.

`+aclHelp,
		`  escrow secret acl get /prod/db/admin
  escrow secret acl add /prod/db/admin user:bob=view group:dba=edit
  escrow secret acl remove /prod/db/admin user:bob`,
		a.aclCmds(t)...)
}

func (a *app) folderCmd() *cobra.Command {
	t := aclTarget{
		noun: "folder", argName: "FOLDER",
		check: func(arg string) error {
			if !strings.HasPrefix(arg, "/") {
				return usagef("FOLDER %q must start with /", arg)
			}
			return nil
		},
		load: func(ctx context.Context, c *client.Client, arg string) ([]escrow.ACE, int64, string, error) {
			p := path.Clean(arg)
			f, err := c.GetFolder(ctx, p)
			if client.IsCode(err, "not_found") {
				return nil, 0, p, nil // a folder gets an ACL when first set
			}
			if err != nil {
				return nil, 0, "", err
			}
			return f.ACL, f.Revision, p, nil
		},
		store: func(ctx context.Context, c *client.Client, p string, acl []escrow.ACE, rev int64) (any, []escrow.ACE, error) {
			f, err := c.SetFolderACL(ctx, p, acl, rev)
			if err != nil {
				return nil, nil, err
			}
			return f, f.ACL, nil
		},
	}
	acl := groupCmd("acl", "Show or change a folder's access list",
		`Show or change the access list of a folder. It applies to every secret and
folder below it, and grants add up: a folder grant can be widened below,
never narrowed. Changing it needs owner permission on the folder (admins
hold owner everywhere).

`+aclHelp,
		`  escrow folder acl get /prod
  escrow folder acl add /prod/db group:dba=edit
  escrow folder acl set /prod group:sre=view group:dba=edit`,
		a.aclCmds(t)...)
	return groupCmd("folder", "Manage folders",
		`Manage folders. Folders exist implicitly through the secrets in them; their
access lists are set with 'escrow folder acl'.`,
		`  escrow folder acl get /prod`,
		acl)
}

// aclCmds builds get, set, add and remove for one kind of target.
func (a *app) aclCmds(t aclTarget) []*cobra.Command {
	get := &cobra.Command{
		Use:     "get " + t.argName,
		Short:   "Show the " + t.noun + "'s access list",
		Long:    "Show the access list of a " + t.noun + " and its revision.\n\n" + aclHelp,
		Example: "  escrow " + t.noun + " acl get " + exampleArg(t) + "\n  escrow " + t.noun + " acl get " + exampleArg(t) + " -o json",
		Args:    targetArgs(t, exactArgs(1, "one "+t.argName)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			acl, rev, _, err := t.load(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if a.json() {
				if acl == nil {
					acl = []escrow.ACE{}
				}
				return writeJSON(a.stdout, map[string]any{"acl": acl, "revision": rev})
			}
			return a.printACL(acl)
		},
	}
	edit := func(use, short, long, example, what string, apply func(cur, given []escrow.ACE, args []string) ([]escrow.ACE, error)) *cobra.Command {
		return &cobra.Command{
			Use:     use,
			Short:   short,
			Long:    long + "\n\n" + aclHelp,
			Example: example,
			Args:    targetArgs(t, minArgs(2, t.argName+" and "+what)),
			RunE: func(cmd *cobra.Command, args []string) error {
				var given []escrow.ACE
				if !strings.HasPrefix(use, "remove") {
					var err error
					if given, err = parseACL(args[1:]); err != nil {
						return err
					}
				}
				c, err := a.client()
				if err != nil {
					return err
				}
				ctx := cmd.Context()
				cur, rev, key, err := t.load(ctx, c, args[0])
				if err != nil {
					return err
				}
				next, err := apply(cur, given, args[1:])
				if err != nil {
					return err
				}
				// Conditional on the revision just read: a concurrent change
				// is a conflict to retry, not silently overwritten.
				obj, acl, err := t.store(ctx, c, key, next, rev)
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, obj)
				}
				return a.printACL(acl)
			},
		}
	}
	ex := exampleArg(t)
	set := edit("set "+t.argName+" ENTRY...", "Replace the "+t.noun+"'s access list",
		"Replace the whole access list of a "+t.noun+" with the given entries.",
		"  escrow "+t.noun+" acl set "+ex+" user:alice=owner group:dba=edit", "at least one ENTRY",
		func(_, given []escrow.ACE, _ []string) ([]escrow.ACE, error) { return given, nil })
	add := edit("add "+t.argName+" ENTRY...", "Grant or change entries",
		"Add entries to a "+t.noun+"'s access list; a principal already listed gets the new permission.",
		"  escrow "+t.noun+" acl add "+ex+" user:bob=view", "at least one ENTRY",
		func(cur, given []escrow.ACE, _ []string) ([]escrow.ACE, error) {
			next := append([]escrow.ACE(nil), cur...)
		outer:
			for _, g := range given {
				for i := range next {
					if next[i].Principal == g.Principal {
						next[i].Permission = g.Permission
						continue outer
					}
				}
				next = append(next, g)
			}
			return next, nil
		})
	remove := edit("remove "+t.argName+" PRINCIPAL...", "Remove principals from the access list",
		"Remove principals (user:<name> or group:<name>) from a "+t.noun+"'s access list.",
		"  escrow "+t.noun+" acl remove "+ex+" user:bob", "at least one PRINCIPAL",
		func(cur, _ []escrow.ACE, args []string) ([]escrow.ACE, error) {
			drop := map[string]bool{}
			for _, p := range args {
				p, _, _ = strings.Cut(p, "=") // accept user:bob=view too
				drop[p] = true
			}
			next := make([]escrow.ACE, 0, len(cur))
			for _, e := range cur {
				if drop[e.Principal] {
					delete(drop, e.Principal)
					continue
				}
				next = append(next, e)
			}
			for p := range drop {
				return nil, fmt.Errorf("%s is not in the access list; nothing changed", p)
			}
			return next, nil
		})
	return []*cobra.Command{get, set, add, remove}
}

// targetArgs runs count, then checks the first argument's syntax.
func targetArgs(t aclTarget, count cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := count(cmd, args); err != nil {
			return err
		}
		return t.check(args[0])
	}
}

func exampleArg(t aclTarget) string {
	if t.noun == "folder" {
		return "/prod"
	}
	return "/prod/db/admin"
}

func (a *app) printACL(acl []escrow.ACE) error {
	if len(acl) == 0 {
		fmt.Fprintln(a.stderr, "The access list is empty.")
		return nil
	}
	t := newTable(a.stdout, "PRINCIPAL", "PERMISSION")
	for _, e := range acl {
		t.row(e.Principal, string(e.Permission))
	}
	return t.flush()
}
