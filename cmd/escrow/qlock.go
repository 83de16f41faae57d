package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/escrow-pam/escrow/internal/client"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/qlock"
	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// QuantumLock in the CLI. Every seal and open happens here: the server gets
// public keys, sealed private keys and locked blobs, never a QuantumLock
// password or the plaintext of a locked field. Passwords are kept in byte
// slices that are cleared after use, and never printed or put in an error.

const (
	// minQLockPassword is the shortest new QuantumLock password, in
	// characters: a leak of the server's data leaves the sealed keys open
	// to offline guessing, so the password is all that protects them.
	minQLockPassword = 12
	// maxQLockPassword bounds a password read from a file or descriptor.
	maxQLockPassword = 1024
)

// accountFields stay readable when a non-password secret is locked by
// default: a rotation needs them to reach the account, and they are not
// what an attacker wants.
var accountFields = []string{"username", "host", "port", "database", "url"}

const qlockHelp = `QuantumLock encrypts chosen fields of a secret end to end, with post-quantum
keys (X-Wing: ML-KEM-768 + X25519), to the people allowed to read them. Each
user has one key pair; its private half is sealed under their own
QuantumLock password, in this CLI, and stored on the server sealed. Every
lock and unlock happens in the CLI: the server stores only public keys,
sealed keys and locked values, and never sees a QuantumLock password or a
locked field, so neither its operators nor its administrators can read a
QuantumLocked secret.

If you forget your QuantumLock password, nothing locked to you can be
opened again, by you or by the server: choose one you will keep.`

// passwordSource is where a QuantumLock password comes from: a file
// descriptor, a file, or else the terminal (without echo).
type passwordSource struct {
	fd             int
	file           string
	fdFlag, fdFile string // flag names, for messages
}

// addPasswordFlags registers --<prefix>password-fd and --<prefix>password-file.
func addPasswordFlags(cmd *cobra.Command, p *passwordSource, prefix, what string) {
	p.fdFlag, p.fdFile = prefix+"password-fd", prefix+"password-file"
	cmd.Flags().IntVar(&p.fd, p.fdFlag, -1, "read "+what+" from the first line of this file descriptor (for scripts)")
	cmd.Flags().StringVar(&p.file, p.fdFile, "", "read "+what+" from the first line of this file (for scripts)")
}

// check rejects contradictory flags before anything is sent.
func (p *passwordSource) check() error {
	if p.fd >= 0 && p.file != "" {
		return usagef("give --%s or --%s, not both", p.fdFlag, p.fdFile)
	}
	if p.fd < -1 {
		return usagef("--%s %d is not a file descriptor", p.fdFlag, p.fd)
	}
	return nil
}

// qlockPassword returns a QuantumLock password from p, or asked at the
// terminal with prompt (twice if confirm). The caller clears it.
func (a *app) qlockPassword(p *passwordSource, prompt string, confirm bool) ([]byte, error) {
	var (
		pw  []byte
		err error
	)
	switch {
	case p.file != "":
		pw, err = readPasswordFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("read --%s: %w", p.fdFile, err)
		}
	case p.fd >= 0:
		pw, err = a.readPasswordFD(p.fd, prompt)
		if err != nil {
			return nil, fmt.Errorf("read --%s %d: %w", p.fdFlag, p.fd, err)
		}
	default:
		f, ok := a.terminal()
		if !ok {
			return nil, usagef("no terminal to ask the QuantumLock password on: give --%s FILE or --%s N", p.fdFile, p.fdFlag)
		}
		if pw, err = readSecret(a.stderr, f, prompt); err != nil {
			return nil, err
		}
		if confirm && len(pw) > 0 {
			again, err := readSecret(a.stderr, f, "Repeat "+strings.ToLower(prompt[:1])+prompt[1:])
			same := bytes.Equal(again, pw)
			clear(again)
			if err != nil || !same {
				clear(pw)
				if err != nil {
					return nil, err
				}
				return nil, errors.New("the two entries differ: nothing changed")
			}
		}
	}
	if len(pw) == 0 {
		return nil, errors.New("empty QuantumLock password")
	}
	return pw, nil
}

// newQLockPassword is qlockPassword for a password that will seal a key:
// confirmed on the terminal, and long enough.
func (a *app) newQLockPassword(p *passwordSource, prompt string) ([]byte, error) {
	pw, err := a.qlockPassword(p, prompt, true)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCount(pw) < minQLockPassword {
		clear(pw)
		return nil, fmt.Errorf("a QuantumLock password must be at least %d characters: if the server's data ever leaks, it is all that protects your key", minQLockPassword)
	}
	return pw, nil
}

// readSecret prompts on w and reads one line from the terminal f without
// echo, as bytes the caller can clear.
func readSecret(w io.Writer, f *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(w)
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("read from terminal: %w", err)
	}
	return b, nil
}

// readPasswordFile returns the first line of a file.
func readPasswordFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLine(f)
}

// readPasswordFD returns the first line read from descriptor fd (0 is the
// command's standard input); a terminal is read without echo. Each
// descriptor is opened once, so --password-fd and --new-password-fd may
// name the same one (two lines).
func (a *app) readPasswordFD(fd int, prompt string) ([]byte, error) {
	var r io.Reader
	if fd == 0 {
		r = a.stdin
	} else {
		f, ok := a.fds[fd]
		if !ok {
			f = os.NewFile(uintptr(fd), "fd "+strconv.Itoa(fd))
			if a.fds == nil {
				a.fds = map[int]*os.File{}
			}
			a.fds[fd] = f
		}
		r = f
	}
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return readSecret(a.stderr, f, prompt)
	}
	return readLine(r)
}

// readLine reads up to the first newline, one byte at a time so nothing
// past it is consumed and no buffer but the result holds the password.
func readLine(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, maxQLockPassword+1)
	var one [1]byte
	defer clear(one[:])
	for {
		n, err := r.Read(one[:])
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			if len(buf) == maxQLockPassword {
				clear(buf)
				return nil, fmt.Errorf("the password is longer than %d bytes", maxQLockPassword)
			}
			buf = append(buf, one[0])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf[n-1] = 0
		buf = buf[:n-1]
	}
	return buf, nil
}

// ownKey is the caller's opened QuantumLock key.
type ownKey struct {
	subject string
	key     *qlock.PrivateKey
}

// openOwnKey fetches the caller's sealed key and opens it with their
// QuantumLock password. A wrong password is exactly qlock.ErrWrongPassword.
func (a *app) openOwnKey(ctx context.Context, c *client.Client, p *passwordSource) (*ownKey, error) {
	k, err := c.QLockKey(ctx)
	if err != nil {
		return nil, err
	}
	pw, err := a.qlockPassword(p, "QuantumLock password: ", false)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	key, err := qlock.OpenPrivateKey(k.Sealed, pw)
	if err != nil {
		return nil, err
	}
	return &ownKey{subject: k.Subject, key: key}, nil
}

// lockedBlob decodes the blob of a locked value as the server sent it.
func lockedBlob(what string, value map[string]string) ([]byte, error) {
	blob, err := base64.StdEncoding.DecodeString(value[escrow.QLockField])
	if err != nil {
		return nil, fmt.Errorf("%s: the server sent a QuantumLock field that is not base64", what)
	}
	return blob, nil
}

// openLocked opens the blob of a locked value (version of secret id) and
// returns its locked fields.
func openLocked(blob []byte, id string, version int, k *ownKey, what string) (escrow.SecretValue, error) {
	pt, err := qlock.Open(blob, id, version, k.subject, k.key)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", what, version, err)
	}
	defer clear(pt)
	locked, err := escrow.DecodeLocked(pt)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", what, version, err)
	}
	return locked, nil
}

// unlockValue returns value as is if it is not QuantumLocked; else it asks
// the caller's QuantumLock password, opens the blob here and returns the
// locked fields merged with the readable ones, as a plain reveal has them.
func (a *app) unlockValue(ctx context.Context, c *client.Client, p *passwordSource, id string, version int, what string, value map[string]string) (map[string]string, error) {
	if _, ok := value[escrow.QLockField]; !ok {
		return value, nil
	}
	blob, err := lockedBlob(what, value)
	if err != nil {
		return nil, err
	}
	k, err := a.openOwnKey(ctx, c, p)
	if err != nil {
		return nil, err
	}
	defer k.key.Destroy()
	locked, err := openLocked(blob, id, version, k, what)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(value)+len(locked))
	for f, v := range value {
		if f != escrow.QLockField {
			out[f] = v
		}
	}
	for f, v := range locked {
		out[f] = v
	}
	return out, nil
}

// nextVersion is the version a new value of sec is sealed for.
func nextVersion(sec *client.Secret) int {
	return max(sec.CurrentVersion, sec.PendingVersion) + 1
}

func (a *app) qlockCmd() *cobra.Command {
	return groupCmd("qlock", "End-to-end, post-quantum locks under your own password (QuantumLock)",
		qlockHelp+`

Start with 'escrow qlock init', then lock a secret and share it.`,
		`  escrow qlock init
  escrow qlock lock /prod/db/admin
  escrow qlock share /prod/db/admin carol
  escrow secret reveal /prod/db/admin
  escrow qlock status /prod/db/admin`,
		a.qlockInitCmd(),
		a.qlockPasswdCmd(),
		a.qlockLockCmd(),
		a.qlockShareCmd(),
		a.qlockRevokeCmd(),
		a.qlockSetCmd(),
		a.qlockStatusCmd(),
	)
}

func (a *app) qlockInitCmd() *cobra.Command {
	var pw passwordSource
	cmd := &cobra.Command{
		Use:   "init [--password-file FILE | --password-fd N]",
		Short: "Create your QuantumLock key, sealed under a new password",
		Long: `Create your QuantumLock key pair here, seal its private half under a new
QuantumLock password (Argon2id, then XChaCha20-Poly1305) and store both
halves on the server, which can never open the sealed one. The password is
asked twice at the terminal without echo; scripts give it as the first line
of --password-file or --password-fd. It must be at least 12 characters,
and it is not your login: the server never sees it.

The key's fingerprint is printed; others compare it when they share with
you. You have one key: if you already have one, change its password with
'escrow qlock passwd'.`,
		Example: `  escrow qlock init
  escrow qlock init --password-file ~/.config/escrow/qlock-pass
  escrow qlock init --password-fd 3 3< <(pass show escrow/qlock)`,
		Args:    exactArgs(0, "no arguments"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			old, err := c.QLockKey(ctx)
			if err == nil {
				return fmt.Errorf("you already have a QuantumLock key (%s); change its password with 'escrow qlock passwd': a new key would lock you out of every secret locked to this one",
					qlock.Fingerprint(old.PublicKey))
			}
			if !client.IsCode(err, "not_found") {
				return err
			}
			password, err := a.newQLockPassword(&pw, "New QuantumLock password: ")
			if err != nil {
				return err
			}
			defer clear(password)
			key, err := qlock.GenerateKey(nil)
			if err != nil {
				return fmt.Errorf("generate QuantumLock key: %w", err)
			}
			sealed, err := key.Seal(nil, password, qlock.DefaultKDF)
			if err != nil {
				return fmt.Errorf("seal QuantumLock key: %w", err)
			}
			out, err := c.PutQLockKey(ctx, key.Public(), sealed)
			if err != nil {
				return err
			}
			fp := qlock.Fingerprint(key.Public())
			if a.json() {
				out.Sealed, out.Fingerprint = nil, fp
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "Created your QuantumLock key.\nFingerprint: %s\n", fp)
			fmt.Fprintln(a.stderr, "escrow: note: keep your QuantumLock password safe: nobody, the server included, can recover what is locked to you without it")
			return nil
		},
	}
	addPasswordFlags(cmd, &pw, "", "the new QuantumLock password")
	return cmd
}

func (a *app) qlockPasswdCmd() *cobra.Command {
	var oldPW, newPW passwordSource
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Change your QuantumLock password",
		Long: `Change the password that seals your QuantumLock private key: the key is
opened with the current password and sealed again under the new one, here,
and the server stores the newly sealed key. The key itself is unchanged, so
every secret locked to you still opens.

The current password comes from --password-file / --password-fd, the new
one from --new-password-file / --new-password-fd; either is otherwise asked
at the terminal without echo (the new one twice). The new password must be
at least 12 characters. Both --password-fd and --new-password-fd may name
the same descriptor: its first line is the current password, its second
the new one.`,
		Example: `  escrow qlock passwd
  escrow qlock passwd --password-file old.txt --new-password-file new.txt
  printf '%s\n%s\n' "$OLD" "$NEW" | escrow qlock passwd --password-fd 0 --new-password-fd 0`,
		Args: exactArgs(0, "no arguments"),
		PreRunE: func(*cobra.Command, []string) error {
			if err := oldPW.check(); err != nil {
				return err
			}
			return newPW.check()
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.QLockKey(ctx)
			if err != nil {
				return err
			}
			oldPass, err := a.qlockPassword(&oldPW, "Current QuantumLock password: ", false)
			if err != nil {
				return err
			}
			defer clear(oldPass)
			newPass, err := a.newQLockPassword(&newPW, "New QuantumLock password: ")
			if err != nil {
				return err
			}
			defer clear(newPass)
			if bytes.Equal(oldPass, newPass) {
				return errors.New("the new QuantumLock password is the current one: nothing changed")
			}
			sealed, err := qlock.Reseal(nil, k.Sealed, oldPass, newPass, qlock.DefaultKDF)
			if err != nil {
				return err
			}
			out, err := c.PutQLockKey(ctx, k.PublicKey, sealed)
			if err != nil {
				return err
			}
			fp := qlock.Fingerprint(k.PublicKey)
			if a.json() {
				out.Sealed, out.Fingerprint = nil, fp
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "Changed your QuantumLock password (key %s is unchanged).\n", fp)
			return nil
		},
	}
	addPasswordFlags(cmd, &oldPW, "", "the current QuantumLock password")
	addPasswordFlags(cmd, &newPW, "new-", "the new QuantumLock password")
	return cmd
}

func (a *app) qlockLockCmd() *cobra.Command {
	var (
		fields  []string
		comment string
		pw      passwordSource
	)
	cmd := &cobra.Command{
		Use:   "lock SECRET [--fields NAME,...]",
		Short: "QuantumLock a secret's fields to yourself",
		Long: `Lock fields of a plain secret to yourself: its current value is revealed
(an audited reveal), the chosen fields are encrypted here to your
QuantumLock key, and the server stores the locked value, with the other
fields left readable, as a new version. From then on only members can
fetch it, administrators included, and only in the CLI can it be read.

--fields names the fields to lock. By default a password secret locks its
password, and any other secret every field except username, host, port,
database and url (which a rotation needs to reach the account).

Your QuantumLock password is asked (or read from --password-file /
--password-fd) to make sure you can open what you lock.

The earlier, plain versions stay in the secret's history and can still be
revealed: change or rotate the value once it is locked.`,
		Example: `  escrow qlock lock /prod/db/admin
  escrow qlock lock /prod/app/config --fields api_key,signing_secret
  escrow qlock lock /prod/db/admin --password-file ~/.config/escrow/qlock-pass`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range fields {
				if f == "" || f == escrow.QLockField {
					return usagef("--fields %q: name the value fields to lock (not %q)", f, escrow.QLockField)
				}
			}
			ctx := cmd.Context()
			c, id, err := a.secretClient(ctx, args[0])
			if err != nil {
				return err
			}
			sec, err := c.GetSecret(ctx, id)
			if err != nil {
				return err
			}
			if sec.QLock != nil {
				return fmt.Errorf("%s is already QuantumLocked (members %s); use escrow qlock share, revoke or set",
					sec.SecretPath(), strings.Join(sec.QLock.Members, ", "))
			}
			var rv *client.RevealedValue
			if comment != "" {
				rv, err = c.RevealSecretWith(ctx, id, sec.CurrentVersion, comment)
			} else {
				rv, err = c.RevealSecret(ctx, id, sec.CurrentVersion)
			}
			if err != nil {
				return err
			}
			if _, ok := rv.Value[escrow.QLockField]; ok {
				return fmt.Errorf("%s version %d already holds a QuantumLock value", sec.SecretPath(), rv.Version)
			}
			names, err := fieldsToLock(sec, rv.Value, fields)
			if err != nil {
				return err
			}
			k, err := a.openOwnKey(ctx, c, &pw)
			if err != nil {
				return err
			}
			defer k.key.Destroy()
			locked, readable := escrow.SecretValue{}, map[string]string{}
			for f, v := range rv.Value {
				if slices.Contains(names, f) {
					locked[f] = v
				} else {
					readable[f] = v
				}
			}
			version := nextVersion(sec)
			blob, err := sealLocked(id, version, locked, []qlock.Recipient{{Subject: k.subject, Key: k.key.Public()}})
			if err != nil {
				return err
			}
			out, err := c.LockSecret(ctx, id, &client.QLockRequest{
				Action: client.QLockLock, Blob: blob, Fields: names, Value: readable, Revision: &sec.Revision,
			})
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "QuantumLocked %s of %s to you (version %d).\n", strings.Join(names, ", "), out.SecretPath(), out.CurrentVersion)
			fmt.Fprintf(a.stderr, "escrow: note: version %d and earlier still hold the plain value in the secret's history; change it now (escrow qlock set %s --field %s) or rotate it\n",
				sec.CurrentVersion, args[0], names[0])
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&fields, "fields", nil, "fields to lock, comma-separated (default: password, or all but username, host, port, database, url)")
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "the reason for the reveal, stored in the audit record (the policy may require one)")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password")
	return cmd
}

// fieldsToLock returns the sorted fields a first lock encrypts: those
// asked for, which must exist, or the default for the secret's type.
func fieldsToLock(sec *client.Secret, value map[string]string, asked []string) ([]string, error) {
	var names []string
	if len(asked) > 0 {
		for _, f := range asked {
			if _, ok := value[f]; !ok {
				return nil, fmt.Errorf("%s has no field %q; its fields are %s",
					sec.SecretPath(), f, strings.Join(escrow.SecretValue(value).FieldNames(), ", "))
			}
			if !slices.Contains(names, f) {
				names = append(names, f)
			}
		}
	} else if sec.Type == string(escrow.TypePassword) {
		if _, ok := value["password"]; !ok {
			return nil, fmt.Errorf("%s has no password field; name the fields to lock with --fields", sec.SecretPath())
		}
		names = []string{"password"}
	} else {
		for f := range value {
			if !slices.Contains(accountFields, f) {
				names = append(names, f)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s holds only account fields (%s); name the fields to lock with --fields",
				sec.SecretPath(), strings.Join(escrow.SecretValue(value).FieldNames(), ", "))
		}
	}
	slices.Sort(names)
	return names, nil
}

// sealLocked locks the fields for (id, version) to the recipients.
func sealLocked(id string, version int, locked escrow.SecretValue, to []qlock.Recipient) ([]byte, error) {
	pt, err := escrow.EncodeLocked(locked)
	if err != nil {
		return nil, fmt.Errorf("encode locked fields: %w", err)
	}
	defer clear(pt)
	blob, err := qlock.Lock(nil, id, version, pt, to)
	if err != nil {
		return nil, fmt.Errorf("lock value: %w", err)
	}
	return blob, nil
}

// relock is what share, revoke and set have in common: open the current
// locked value here, let edit change the members or the locked fields,
// and lock it again for the next version.
type relock struct {
	action  string
	subject string // the member shared with or revoked
	comment string
	pw      *passwordSource
	// members returns the new member list from the current one, or
	// refuses the change before any password is asked.
	members func(sec *client.Secret) ([]string, error)
	// edit, if set, changes the locked fields.
	edit func(sec *client.Secret, locked escrow.SecretValue) error
}

// relockResult is a relock's answer and the public keys locked to.
type relockResult struct {
	secret *client.Secret
	keys   map[string]qlock.PublicKey
}

func (a *app) relock(ctx context.Context, arg string, r relock) (*relockResult, error) {
	c, id, err := a.secretClient(ctx, arg)
	if err != nil {
		return nil, err
	}
	sec, err := c.GetSecret(ctx, id)
	if err != nil {
		return nil, err
	}
	if sec.QLock == nil {
		return nil, fmt.Errorf("%s is not QuantumLocked: lock it first with escrow qlock lock %s", sec.SecretPath(), arg)
	}
	members, err := r.members(sec)
	if err != nil {
		return nil, err
	}
	keys, err := publicKeys(ctx, c, members)
	if err != nil {
		return nil, err
	}
	// The server answers 403 here to a non-member, before any password.
	var rv *client.RevealedValue
	if r.comment != "" {
		rv, err = c.RevealSecretWith(ctx, id, sec.CurrentVersion, r.comment)
	} else {
		rv, err = c.RevealSecret(ctx, id, sec.CurrentVersion)
	}
	if err != nil {
		return nil, err
	}
	if _, ok := rv.Value[escrow.QLockField]; !ok {
		return nil, fmt.Errorf("%s version %d holds no QuantumLock value", sec.SecretPath(), rv.Version)
	}
	blob, err := lockedBlob(sec.SecretPath(), rv.Value)
	if err != nil {
		return nil, err
	}
	k, err := a.openOwnKey(ctx, c, r.pw)
	if err != nil {
		return nil, err
	}
	defer k.key.Destroy()
	locked, err := openLocked(blob, id, rv.Version, k, sec.SecretPath())
	if err != nil {
		return nil, err
	}
	if err := checkMemberKeys(sec.SecretPath(), blob, keys, k); err != nil {
		return nil, err
	}
	if r.edit != nil {
		if err := r.edit(sec, locked); err != nil {
			return nil, err
		}
	}
	to := make([]qlock.Recipient, 0, len(members))
	for _, m := range members {
		to = append(to, qlock.Recipient{Subject: m, Key: keys[m]})
	}
	newBlob, err := sealLocked(id, nextVersion(sec), locked, to)
	if err != nil {
		return nil, err
	}
	out, err := c.LockSecret(ctx, id, &client.QLockRequest{Action: r.action, Subject: r.subject, Blob: newBlob, Revision: &sec.Revision})
	if err != nil {
		return nil, err
	}
	return &relockResult{secret: out, keys: keys}, nil
}

// publicKeys fetches the members' public keys; every member must have one.
func publicKeys(ctx context.Context, c *client.Client, members []string) (map[string]qlock.PublicKey, error) {
	ks, err := c.QLockPublicKeys(ctx, members)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]qlock.PublicKey, len(ks))
	for _, k := range ks {
		if slices.Contains(members, k.Subject) {
			keys[k.Subject] = k.PublicKey
		}
	}
	for _, m := range members {
		if _, ok := keys[m]; !ok {
			return nil, fmt.Errorf("%s has no QuantumLock key yet: they must run 'escrow qlock init' first", m)
		}
	}
	return keys, nil
}

// checkMemberKeys refuses to lock to a key the server hands out for a
// member that differs from the key the current (opened, so authentic)
// value is locked to: keys never change (the server refuses a new key
// while one exists), so a difference means the server is substituting
// one. The caller's own key must be the one they just opened.
func checkMemberKeys(what string, blob []byte, keys map[string]qlock.PublicKey, k *ownKey) error {
	if mine, ok := keys[k.subject]; ok && !bytes.Equal(mine, k.key.Public()) {
		return fmt.Errorf("the server gives %s a QuantumLock key (%s) other than yours (%s): refusing to lock to it",
			k.subject, qlock.Fingerprint(mine), qlock.Fingerprint(k.key.Public()))
	}
	infos, _, _, err := qlockfmt.Recipients(blob)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, in := range infos {
		pub, ok := keys[in.Subject]
		if !ok {
			continue
		}
		if fp := qlock.Fingerprint(pub); fp != in.Fingerprint {
			return fmt.Errorf("the server gives %s a QuantumLock key (%s) other than the one %s is locked to (%s): refusing to lock to it",
				in.Subject, fp, what, in.Fingerprint)
		}
	}
	return nil
}

func (a *app) qlockShareCmd() *cobra.Command {
	var (
		comment string
		pw      passwordSource
	)
	cmd := &cobra.Command{
		Use:   "share SECRET USER",
		Short: "Add USER to a QuantumLocked secret's members",
		Long: `Let USER read a QuantumLocked secret: its locked value is opened here with
your QuantumLock password and locked again, as a new version, to the
members and USER. USER needs a QuantumLock key ('escrow qlock init') and
view permission on the secret to fetch it.

The fingerprint of the key the server gave for USER is printed: compare it
with USER out of band (in person, or on a call), as they see it in
'escrow qlock status'. If it differs, the key is not theirs: revoke it at
once. USER cannot read earlier versions.`,
		Example: `  escrow qlock share /prod/db/admin carol
  escrow qlock share /prod/db/admin carol --password-fd 3 3<pass.txt`,
		Args:    secretArgs(2, "a SECRET (id or /path) and a USER"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[1]
			if err := qlockfmt.CheckName(user); err != nil {
				return usagef("USER %q: %v", user, err)
			}
			res, err := a.relock(cmd.Context(), args[0], relock{
				action: client.QLockShare, subject: user, comment: comment, pw: &pw,
				members: func(sec *client.Secret) ([]string, error) {
					if sec.QLock.IsMember(user) {
						return nil, fmt.Errorf("%s is already a member of %s", user, sec.SecretPath())
					}
					return sortedWith(sec.QLock.Members, user), nil
				},
			})
			if err != nil {
				return err
			}
			fp := qlock.Fingerprint(res.keys[user])
			s := res.secret
			if a.json() {
				return writeJSON(a.stdout, map[string]any{"secret": s, "subject": user, "fingerprint": fp})
			}
			fmt.Fprintf(a.stdout, "Shared %s with %s (version %d; members %s).\n", s.SecretPath(), user, s.CurrentVersion, members(s))
			fmt.Fprintf(a.stdout, "%s's QuantumLock key: %s\n", user, fp)
			fmt.Fprintf(a.stderr, "escrow: compare that fingerprint with %s out of band (in person or on a call; they see it in 'escrow qlock status'); if it differs, run at once: escrow qlock revoke %s %s\n",
				user, args[0], user)
			return nil
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "the reason for the reveal, stored in the audit record (the policy may require one)")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password")
	return cmd
}

func (a *app) qlockRevokeCmd() *cobra.Command {
	var (
		comment string
		pw      passwordSource
	)
	cmd := &cobra.Command{
		Use:   "revoke SECRET USER",
		Short: "Remove USER from a QuantumLocked secret's members",
		Long: `Stop USER from reading a QuantumLocked secret: its locked value is opened
here and locked again, as a new version under a fresh data key, to the
other members. The server then refuses USER the value.

USER could read the versions locked to them and may have kept the value:
change it afterwards ('escrow qlock set') or rotate it. The last member
cannot be revoked.`,
		Example: `  escrow qlock revoke /prod/db/admin carol
  escrow qlock set /prod/db/admin --field password    # then change the value`,
		Args:    secretArgs(2, "a SECRET (id or /path) and a USER"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[1]
			res, err := a.relock(cmd.Context(), args[0], relock{
				action: client.QLockRevoke, subject: user, comment: comment, pw: &pw,
				members: func(sec *client.Secret) ([]string, error) {
					if !sec.QLock.IsMember(user) {
						return nil, fmt.Errorf("%s is not a member of %s (members %s)", user, sec.SecretPath(), strings.Join(sec.QLock.Members, ", "))
					}
					if len(sec.QLock.Members) == 1 {
						return nil, fmt.Errorf("%s is the last member of %s: revoking them would leave nobody able to open it", user, sec.SecretPath())
					}
					return slices.DeleteFunc(slices.Clone(sec.QLock.Members), func(m string) bool { return m == user }), nil
				},
			})
			if err != nil {
				return err
			}
			s := res.secret
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "Revoked %s from %s (version %d; members %s).\n", user, s.SecretPath(), s.CurrentVersion, members(s))
			fmt.Fprintf(a.stderr, "escrow: note: %s could read the earlier versions and may have kept the value; change it (escrow qlock set %s --field NAME) or rotate it\n", user, args[0])
			return nil
		},
	}
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "the reason for the reveal, stored in the audit record (the policy may require one)")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password")
	return cmd
}

func (a *app) qlockSetCmd() *cobra.Command {
	var (
		fields  []string
		comment string
		pw      passwordSource
	)
	cmd := &cobra.Command{
		Use:   "set SECRET --field NAME[=VALUE]...",
		Short: "Change the locked fields of a QuantumLocked secret",
		Long: `Change locked fields of a QuantumLocked secret: its locked value is opened
here, the fields given replace theirs, and it is locked again, as a new
version, to the same members. The new value never reaches the server in
clear. Only locked fields can be set here.

` + fieldHelp,
		Example: `  escrow qlock set /prod/db/admin --field password
  escrow qlock set /prod/db/admin --field password=@new.txt --password-file ~/.config/escrow/qlock-pass`,
		Args:    secretArgs(1, "one SECRET (id or /path)"),
		PreRunE: func(*cobra.Command, []string) error { return pw.check() },
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(fields) == 0 {
				return usagef("give at least one --field NAME=VALUE (or --field NAME to be asked)")
			}
			for _, f := range fields {
				if name, _, _ := strings.Cut(f, "="); name == "" || name == escrow.QLockField {
					return usagef("--field %q: want name=value, name=@file, name=- or name", f)
				}
			}
			res, err := a.relock(cmd.Context(), args[0], relock{
				action: client.QLockRelock, comment: comment, pw: &pw,
				members: func(sec *client.Secret) ([]string, error) {
					for _, f := range fields {
						if name, _, _ := strings.Cut(f, "="); !slices.Contains(sec.QLock.Fields, name) {
							return nil, fmt.Errorf("%s is not a locked field of %s (locked: %s); only locked fields can be set here",
								name, sec.SecretPath(), strings.Join(sec.QLock.Fields, ", "))
						}
					}
					return slices.Clone(sec.QLock.Members), nil
				},
				edit: func(sec *client.Secret, locked escrow.SecretValue) error {
					val, err := a.parseFields(fields, sec.SecretPath())
					if err != nil {
						return err
					}
					for f, v := range val {
						locked[f] = v
					}
					return nil
				},
			})
			if err != nil {
				return err
			}
			s := res.secret
			if a.json() {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "Changed the locked value of %s (version %d; members %s).\n", s.SecretPath(), s.CurrentVersion, members(s))
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&fields, "field", "f", nil, "locked field: name=value, name=@file, name=- (stdin) or name (prompt)")
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "the reason for the reveal, stored in the audit record (the policy may require one)")
	addPasswordFlags(cmd, &pw, "", "your QuantumLock password")
	return cmd
}

func (a *app) qlockStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status [SECRET]",
		Short: "Show your QuantumLock key and, with SECRET, who can open it",
		Long: `Show your QuantumLock key's fingerprint (computed here from the public key
the server holds for you) and when it was created and last resealed. With
SECRET, also whether it is QuantumLocked, its members, its locked fields,
and who locked the current version and when. Nothing is decrypted and no
password is asked.`,
		Example: `  escrow qlock status
  escrow qlock status /prod/db/admin -o json`,
		Args: cobra.MaximumNArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return checkSecretArg(args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			key, err := c.QLockKey(ctx)
			if err != nil && !client.IsCode(err, "not_found") {
				return err
			}
			if key != nil {
				key.Sealed, key.Fingerprint = nil, qlock.Fingerprint(key.PublicKey)
			}
			var sec *client.Secret
			if len(args) == 1 {
				id, err := resolve(ctx, c, args[0])
				if err != nil {
					return err
				}
				if sec, err = c.GetSecret(ctx, id); err != nil {
					return err
				}
			}
			if a.json() {
				out := map[string]any{"key": key}
				if sec != nil {
					out["secret"] = map[string]any{"id": sec.ID, "path": sec.SecretPath(), "version": sec.CurrentVersion, "qlock": sec.QLock}
				}
				return writeJSON(a.stdout, out)
			}
			t := newTable(a.stdout)
			if key == nil {
				t.row("Your key:", "none yet (create one with: escrow qlock init)")
			} else {
				t.row("Your key:", key.Fingerprint)
				t.row("Created:", fmtTime(key.CreatedAt))
				t.row("Password set:", fmtTime(key.UpdatedAt))
			}
			if sec != nil {
				t.row("Secret:", sec.SecretPath())
				t.row("Version:", fmt.Sprint(sec.CurrentVersion))
				if q := sec.QLock; q == nil {
					t.row("QuantumLocked:", "no (escrow qlock lock "+args[0]+")")
				} else {
					t.row("QuantumLocked:", "yes")
					t.row("Members:", strings.Join(q.Members, ", "))
					t.row("Locked fields:", strings.Join(q.Fields, ", "))
					t.row("Locked:", fmtTime(q.LockedAt)+" by "+q.LockedBy)
				}
			}
			return t.flush()
		},
	}
}

// sortedWith returns members plus m, sorted.
func sortedWith(members []string, m string) []string {
	out := append(slices.Clone(members), m)
	slices.Sort(out)
	return out
}

// members lists a locked secret's members for messages.
func members(s *client.Secret) string {
	if s.QLock == nil {
		return ""
	}
	return strings.Join(s.QLock.Members, ", ")
}
