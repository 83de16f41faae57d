package main

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func (a *app) secretCmd() *cobra.Command {
	return groupCmd("secret", "Create, read, change and share secrets",
		`Manage secrets. A secret has a type (password, ssh_key, api_key or generic),
lives at a path (/folder/.../name), holds named fields, and keeps every
earlier value as a version. Deleting is soft: the secret stays in the audit
trail and in 'secret list --deleted'.

A SECRET argument is the secret's id or its full path starting with "/".`,
		`  escrow secret create /prod/db/admin --type password --field username=admin
  escrow secret list /prod
  escrow secret reveal /prod/db/admin --field password`,
		a.secretCreateCmd(),
		a.secretGetCmd(),
		a.secretListCmd(),
		a.secretUpdateCmd(),
		a.secretDeleteCmd(),
		a.secretRevealCmd(),
		a.secretVersionsCmd(),
		a.secretACLCmd(),
	)
}

// checkSecretArg rejects a SECRET argument that is neither an id nor a full
// path, before anything is sent.
func checkSecretArg(arg string) error {
	if arg == "" || (!strings.HasPrefix(arg, "/") && strings.Contains(arg, "/")) || arg == "/" {
		return usagef("secret %q: give its id or its full path starting with /", arg)
	}
	return nil
}

// secretArgs accepts exactly n arguments, the first a SECRET.
func secretArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := exactArgs(n, what)(cmd, args); err != nil {
			return err
		}
		return checkSecretArg(args[0])
	}
}

// resolve turns a SECRET argument into an id: paths (leading "/") are looked
// up with GET /v1/secrets?path=.
func resolve(ctx context.Context, c *client.Client, arg string) (string, error) {
	if err := checkSecretArg(arg); err != nil {
		return "", err
	}
	if strings.HasPrefix(arg, "/") {
		s, err := c.SecretByPath(ctx, arg)
		if err != nil {
			return "", err
		}
		return s.ID, nil
	}
	return arg, nil
}

const fieldHelp = `Values come from --field, repeated once per field:
  --field name=value   the value as given (it lands in your shell history)
  --field name=@file   the file's content, verbatim (keys, certificates)
  --field name=-       standard input, without one trailing newline
  --field name         typed at a prompt without echo (a terminal is needed)`

func (a *app) secretCreateCmd() *cobra.Command {
	var (
		typ, desc         string
		fields, tags, acl []string
	)
	cmd := &cobra.Command{
		Use:   "create PATH --type TYPE --field NAME=VALUE...",
		Short: "Create a secret",
		Long: `Create a secret at PATH (/folder/.../name) with its first version.

TYPE is password (field password required; also username, host, port,
database, url, notes), ssh_key (private_key required), api_key (key required)
or generic (any fields). For a password secret without a password field, the
password is asked for at the terminal without echo, so it never lands in your
shell history.

` + fieldHelp + `

You become the owner. --acl adds entries such as user:bob=view or
group:dba=edit (permissions: owner, edit, view, list).`,
		Example: `  escrow secret create /prod/db/admin --type password --field username=admin --field host=db1
  escrow secret create /prod/ssh/deploy --type ssh_key --field private_key=@$HOME/.ssh/id_ed25519
  printf %s "$KEY" | escrow secret create /ci/stripe --type api_key --field key=- --tag team=payments
  escrow secret create /team/wiki --field user=me --field password --acl group:team=view`,
		Args: exactArgs(1, "one PATH, like /prod/db/admin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
				return usagef("PATH %q must start with / and end with the secret's name, like /prod/db/admin", p)
			}
			p = path.Clean(p)
			req := &client.CreateSecretRequest{
				Name: path.Base(p), Folder: path.Dir(p), Type: typ, Description: desc,
			}
			if _, ok := map[string]bool{"password": true, "ssh_key": true, "api_key": true, "generic": true}[typ]; !ok {
				return usagef("--type %q must be password, ssh_key, api_key or generic", typ)
			}
			var err error
			if req.Tags, err = parseKV("tag", tags); err != nil {
				return err
			}
			if req.ACL, err = parseACL(acl); err != nil {
				return err
			}
			val, err := a.parseFields(fields, p)
			if err != nil {
				return err
			}
			if typ == "password" && val["password"] == "" {
				f, ok := a.terminal()
				if !ok {
					return usagef("a password secret needs a password: give --field password=- (stdin) or --field password=@file, or run in a terminal to be asked")
				}
				if val["password"], err = a.promptNew(f, "password for "+p); err != nil {
					return err
				}
			}
			if len(val) == 0 {
				return usagef("give at least one --field name=value")
			}
			req.Value = val
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.CreateSecret(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "Created %s (id %s, version %d).\n", s.SecretPath(), s.ID, s.CurrentVersion)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&typ, "type", "t", "generic", "password, ssh_key, api_key or generic")
	f.StringArrayVarP(&fields, "field", "f", nil, "value field: name=value, name=@file, name=- (stdin) or name (prompt)")
	f.StringVarP(&desc, "description", "d", "", "what the secret is for")
	f.StringArrayVar(&tags, "tag", nil, "tag key=value (repeatable)")
	f.StringArrayVar(&acl, "acl", nil, "extra ACL entry principal=permission, like user:bob=view (repeatable)")
	return cmd
}

func (a *app) secretGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get SECRET",
		Short: "Show a secret's metadata (not its value)",
		Long: `Show a secret's metadata: id, path, type, description, tags, access list,
current version, revision, who created and last changed it, and when it was
deleted if it was. The value is never shown; use 'escrow secret reveal'.`,
		Example: `  escrow secret get /prod/db/admin
  escrow secret get 01JD3X7ZQ4M2B5N8P0R6T9V1WY -o json`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			s, err := c.GetSecret(cmd.Context(), id)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			return a.printSecret(s)
		},
	}
}

func (a *app) printSecret(s *client.Secret) error {
	t := newTable(a.stdout)
	t.row("ID:", s.ID)
	t.row("Path:", s.SecretPath())
	t.row("Type:", s.Type)
	t.row("Description:", s.Description)
	t.row("Tags:", fmtTags(s.Tags))
	t.row("ACL:", fmtACL(s.ACL))
	t.row("Version:", fmt.Sprint(s.CurrentVersion))
	t.row("Revision:", fmt.Sprint(s.Revision))
	t.row("Created:", fmtTime(s.CreatedAt)+" by "+s.CreatedBy)
	t.row("Updated:", fmtTime(s.UpdatedAt)+" by "+s.UpdatedBy)
	if q := s.QLock; q != nil {
		t.row("QuantumLock:", fmt.Sprintf("%s locked to %s (%s by %s)", strings.Join(q.Fields, ", "), strings.Join(q.Members, ", "), fmtTime(q.LockedAt), q.LockedBy))
	}
	if s.DeletedAt != nil {
		t.row("Deleted:", fmtTime(*s.DeletedAt))
	}
	return t.flush()
}

func (a *app) secretListCmd() *cobra.Command {
	var (
		recursive, deleted bool
		limit              int
		cursor             string
	)
	cmd := &cobra.Command{
		Use:   "list [FOLDER]",
		Short: "List the secrets you can see",
		Long: `List the secrets in FOLDER (default /) that you may at least list, ordered
by path. Subfolders are included unless --recursive=false. Deleted secrets
are shown only with --deleted.

Without --limit every page is fetched; with --limit N one page of at most N
is shown, and its continuation cursor goes to stderr (text) or "next" (json).`,
		Example: `  escrow secret list
  escrow secret list /prod --recursive=false
  escrow secret list --deleted -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			folder := "/"
			if len(args) == 1 {
				folder = args[0]
			}
			if !strings.HasPrefix(folder, "/") {
				return usagef("FOLDER %q must start with /", folder)
			}
			if limit < 0 {
				return usagef("--limit must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			opt := client.ListSecretsOptions{Folder: path.Clean(folder), Recursive: recursive, Deleted: deleted, Cursor: cursor, Limit: limit}
			var all client.SecretPage
			for {
				page, err := c.ListSecrets(cmd.Context(), opt)
				if err != nil {
					return err
				}
				all.Secrets = append(all.Secrets, page.Secrets...)
				all.Next = page.Next
				if limit > 0 || page.Next == "" {
					break
				}
				opt.Cursor = page.Next
			}
			if all.Secrets == nil {
				all.Secrets = []*client.Secret{}
			}
			if a.json() {
				return writeJSON(a.stdout, all)
			}
			if len(all.Secrets) == 0 {
				fmt.Fprintf(a.stderr, "No secrets in %s that you can see.\n", opt.Folder)
				return nil
			}
			header := []string{"PATH", "TYPE", "VERSION", "UPDATED", "BY", "ID"}
			if deleted {
				header = append(header, "DELETED")
			}
			t := newTable(a.stdout, header...)
			for _, s := range all.Secrets {
				row := []string{s.SecretPath(), s.Type, fmt.Sprint(s.CurrentVersion), fmtTime(s.UpdatedAt), s.UpdatedBy, s.ID}
				if deleted {
					del := ""
					if s.DeletedAt != nil {
						del = fmtTime(*s.DeletedAt)
					}
					row = append(row, del)
				}
				t.row(row...)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if all.Next != "" {
				fmt.Fprintf(a.stderr, "More: --cursor %s\n", all.Next)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&recursive, "recursive", "r", true, "include subfolders")
	f.BoolVar(&deleted, "deleted", false, "include soft-deleted secrets")
	f.IntVar(&limit, "limit", 0, "show one page of at most this many")
	f.StringVar(&cursor, "cursor", "", "continue from a previous page's cursor")
	return cmd
}

func (a *app) secretUpdateCmd() *cobra.Command {
	var (
		fields, tags       []string
		name, folder, desc string
		merge, clearTags   bool
		revision           int64
	)
	cmd := &cobra.Command{
		Use:   "update SECRET [flags]",
		Short: "Change a secret's value or metadata",
		Long: `Change a secret. --field sets a new value, which is stored as a new
version (earlier versions are kept). By default the new value is exactly the
fields given; with --merge the current value is read first (an audited
reveal) and the given fields replace or add to it.

--name and --folder rename or move the secret; --description and --tag
replace those (--tag replaces the whole tag set; --clear-tags empties it).
--revision N makes the change conditional: it fails with a conflict if the
secret changed since you read revision N.

` + fieldHelp,
		Example: `  escrow secret update /prod/db/admin --merge --field password
  escrow secret update /prod/db/admin --field password=- --field username=admin < pw.txt
  escrow secret update /prod/db/admin --description "primary, rotated monthly" --tag env=prod
  escrow secret update 01JD3X7ZQ4M2B5N8P0R6T9V1WY --folder /archive --revision 4`,
		Args: secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			req := &client.UpdateSecretRequest{}
			if fl.Changed("name") {
				req.Name = &name
			}
			if fl.Changed("folder") {
				if !strings.HasPrefix(folder, "/") {
					return usagef("--folder %q must start with /", folder)
				}
				req.Folder = &folder
			}
			if fl.Changed("description") {
				req.Description = &desc
			}
			if fl.Changed("tag") || clearTags {
				if fl.Changed("tag") && clearTags {
					return usagef("--tag and --clear-tags together make no sense")
				}
				m, err := parseKV("tag", tags)
				if err != nil {
					return err
				}
				req.Tags = &m
			}
			if fl.Changed("revision") {
				req.Revision = &revision
			}
			if merge && len(fields) == 0 {
				return usagef("--merge needs at least one --field")
			}
			if len(fields) == 0 && req.Name == nil && req.Folder == nil && req.Description == nil && req.Tags == nil {
				return usagef("nothing to update: give --field, --name, --folder, --description or --tag")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id, err := resolve(ctx, c, args[0])
			if err != nil {
				return err
			}
			if len(fields) > 0 {
				val, err := a.parseFields(fields, args[0])
				if err != nil {
					return err
				}
				if merge {
					// Read the revision first, so a change made between our
					// reveal and our write is a conflict, not a lost update.
					cur, err := c.GetSecret(ctx, id)
					if err != nil {
						return err
					}
					old, err := c.RevealSecret(ctx, id, cur.CurrentVersion)
					if err != nil {
						return fmt.Errorf("read current value for --merge: %w", err)
					}
					for k, v := range val {
						old.Value[k] = v
					}
					val = old.Value
					if req.Revision == nil {
						req.Revision = &cur.Revision
					}
				}
				req.Value = val
			}
			s, err := c.UpdateSecret(ctx, id, req)
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "Updated %s (version %d, revision %d).\n", s.SecretPath(), s.CurrentVersion, s.Revision)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&fields, "field", "f", nil, "value field: name=value, name=@file, name=- (stdin) or name (prompt)")
	f.BoolVar(&merge, "merge", false, "keep the current fields that --field does not set")
	f.StringVar(&name, "name", "", "new name")
	f.StringVar(&folder, "folder", "", "move to this folder")
	f.StringVarP(&desc, "description", "d", "", "new description")
	f.StringArrayVar(&tags, "tag", nil, "tag key=value; replaces all tags (repeatable)")
	f.BoolVar(&clearTags, "clear-tags", false, "remove all tags")
	f.Int64Var(&revision, "revision", 0, "only update if the secret is still at this revision")
	return cmd
}

func (a *app) secretDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete SECRET",
		Short: "Soft-delete a secret",
		Long: `Delete a secret. The deletion is soft: the secret and its versions are
kept, 'escrow secret get' still shows it with its deletion time, and
'escrow secret list --deleted' lists it, but it can no longer be revealed or
changed. Needs edit permission.`,
		Example: `  escrow secret delete /prod/db/old-admin`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), id); err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, map[string]any{"id": id, "deleted": true})
			}
			if id != args[0] {
				fmt.Fprintf(a.stdout, "Deleted %s (id %s).\n", args[0], id)
			} else {
				fmt.Fprintf(a.stdout, "Deleted %s.\n", id)
			}
			return nil
		},
	}
}

func (a *app) secretRevealCmd() *cobra.Command {
	var (
		field   string
		version int
		comment string
		pw      passwordSource
	)
	cmd := &cobra.Command{
		Use:   "reveal SECRET [--field NAME] [--version N] [--comment TEXT]",
		Short: "Print a secret's value (audited)",
		Long: `Print a secret's value: every field, or with --field NAME just that field,
raw, for scripts. Raw output ends with a newline only when it goes to a
terminal, so $(...) and redirections get the exact value.

Every reveal is recorded in the audit trail, whether it is allowed or not.
Needs view permission. --version N reveals an earlier version.

The secret's policy may require a comment on every reveal, such as a change
number that matches a pattern ('escrow policy get SECRET' shows the rule);
give it with --comment. It is stored in the reveal's audit record.

A QuantumLocked secret ('escrow qlock') is opened here: your QuantumLock
password is asked at the terminal without echo (or read from
--password-file / --password-fd), and the locked fields are printed with
the readable ones. Only its members can fetch it.`,
		Example: `  escrow secret reveal /prod/db/admin
  PGPASSWORD=$(escrow secret reveal /prod/db/admin --field password) psql -h db1 -U admin
  escrow secret reveal /prod/ssh/deploy --field private_key > id_deploy
  escrow secret reveal /prod/db/admin --version 1 -o json
  escrow secret reveal /prod/db/admin --comment CHG0012345
  escrow secret reveal /prod/db/locked --field password --password-fd 3 3<pass.txt`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return usagef("--version must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			var v *client.RevealedValue
			if comment != "" {
				v, err = c.RevealSecretWith(cmd.Context(), id, version, comment)
			} else {
				v, err = c.RevealSecret(cmd.Context(), id, version)
			}
			if err != nil {
				return err
			}
			if v.Value, err = a.unlockValue(cmd.Context(), c, &pw, id, v.Version, args[0], v.Value); err != nil {
				return err
			}
			return a.printRevealed(args[0], v.Value, field, v)
		},
	}
	cmd.Flags().StringVarP(&field, "field", "f", "", "print only this field, raw")
	cmd.Flags().IntVar(&version, "version", 0, "reveal this version (default: current)")
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "the reason, stored in the audit record (the policy may require one)")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password, for a QuantumLocked secret")
	return cmd
}

// printRevealed prints a value that the server handed out: with field, that
// field alone, raw, for scripts (a newline only when stdout is a terminal,
// so $(...) gets the exact value); else, with -o json, the whole answer;
// else every field (printValue). what names the secret in errors, which
// never hold a value.
func (a *app) printRevealed(what string, v map[string]string, field string, answer any) error {
	if field != "" {
		val, ok := v[field]
		if !ok {
			names := escrow.SecretValue(v).FieldNames()
			return fmt.Errorf("%s has no field %q; its fields are %s", what, field, strings.Join(names, ", "))
		}
		fmt.Fprint(a.stdout, val)
		if _, tty := a.stdoutTerminal(); tty {
			fmt.Fprintln(a.stdout)
		}
		return nil
	}
	if a.json() {
		return writeJSON(a.stdout, answer)
	}
	return printValue(a, v)
}

// printValue prints one-line fields as aligned "name  value" rows, then
// multi-line fields (keys, certificates) as blocks.
func printValue(a *app, v map[string]string) error {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	t := newTable(a.stdout)
	var blocks []string
	for _, k := range names {
		if strings.Contains(v[k], "\n") {
			blocks = append(blocks, k)
			continue
		}
		t.row(k+":", v[k])
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, k := range blocks {
		fmt.Fprintf(a.stdout, "%s:\n", k)
		for _, line := range strings.Split(strings.TrimSuffix(v[k], "\n"), "\n") {
			fmt.Fprintf(a.stdout, "  %s\n", line)
		}
	}
	return nil
}

func (a *app) secretVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions SECRET",
		Short: "List a secret's versions",
		Long: `List every stored version of a secret: number, when and by whom it was
created. Values are not shown; reveal one with
'escrow secret reveal SECRET --version N'.`,
		Example: `  escrow secret versions /prod/db/admin`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := resolve(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			vs, err := c.ListVersions(cmd.Context(), id)
			if err != nil {
				return err
			}
			if vs == nil {
				vs = []client.Version{}
			}
			if a.json() {
				return writeJSON(a.stdout, map[string]any{"versions": vs})
			}
			t := newTable(a.stdout, "VERSION", "CREATED", "BY")
			for _, v := range vs {
				t.row(fmt.Sprint(v.Version), fmtTime(v.CreatedAt), v.CreatedBy)
			}
			return t.flush()
		},
	}
}
