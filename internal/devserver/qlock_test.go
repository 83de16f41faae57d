package devserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/qlock"
	"github.com/escrow-pam/escrow/internal/rotate/pgtest"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

// fastKDF keeps the tests quick; the format stores it, so opening works
// the same as at DefaultKDF.
var fastKDF = qlock.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// qlockUser is what a CLI holds: its private key, opened with its password.
type qlockUser struct {
	c   devClient
	key *qlock.PrivateKey
}

func newQLockUser(t *testing.T, s *Server, sub, password string) *qlockUser {
	t.Helper()
	k, err := qlock.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal(rand.Reader, []byte(password), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string][]byte{"publicKey": k.Public(), "sealed": sealed})
	u := &qlockUser{c: devClient{t, s, sub}, key: k}
	if code := u.c.call("PUT", "/v1/qlock/key", string(body), nil); code != 200 {
		t.Fatalf("%s: put key: %d", sub, code)
	}
	return u
}

// lock posts a blob of fields, locked to members, as the next version.
func (u *qlockUser) lock(t *testing.T, id, action, subject string, fields escrow.SecretValue, members []*qlockUser, extra map[string]any) int {
	t.Helper()
	var sec escrow.Secret
	if code := u.c.call("GET", "/v1/secrets/"+id, "", &sec); code != 200 {
		t.Fatalf("get secret: %d", code)
	}
	plain, _ := escrow.EncodeLocked(fields)
	var rs []qlock.Recipient
	for _, m := range members {
		rs = append(rs, qlock.Recipient{Subject: m.c.user, Key: m.key.Public()})
	}
	blob, err := qlock.Lock(rand.Reader, id, max(sec.CurrentVersion, sec.PendingVersion)+1, plain, rs)
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]any{"action": action, "blob": blob}
	if subject != "" {
		req["subject"] = subject
	}
	for k, v := range extra {
		req[k] = v
	}
	body, _ := json.Marshal(req)
	return u.c.call("POST", "/v1/secrets/"+id+"/qlock", string(body), nil)
}

// read fetches the value and opens it in the client.
func (u *qlockUser) read(t *testing.T, id string) (escrow.SecretValue, int) {
	t.Helper()
	var rv struct {
		Version int
		Value   escrow.SecretValue
	}
	if code := u.c.call("GET", "/v1/secrets/"+id+"/value", "", &rv); code != 200 {
		return nil, code
	}
	blob, err := base64.StdEncoding.DecodeString(rv.Value[escrow.QLockField])
	if err != nil {
		t.Fatal(err)
	}
	plain, err := qlock.Open(blob, id, rv.Version, u.c.user, u.key)
	if err != nil {
		t.Fatalf("%s opens: %v", u.c.user, err)
	}
	v, err := escrow.DecodeLocked(plain)
	if err != nil {
		t.Fatal(err)
	}
	return v, 200
}

// TestServerCannotDecryptQuantumLock is the proof: alice locks a secret
// whose locked value never reaches the server in clear, shares it with
// carol, and carol reads it. Then everything the server has (its database
// and WAL, the master key, the dev issuer key, the outbox, every log line)
// is searched for the value, and every version is decrypted with the
// master key as an attacker holding it would: none of it yields the value.
func TestServerCannotDecryptQuantumLock(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuffer
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const canary = "QL-canary-7Hq2-p0st-quantum"
	const aliceWord, carolWord = "alice's long QuantumLock password", "carol's long QuantumLock password"
	adm := devClient{t, s, "admin"}
	var sec escrow.Secret
	if code := adm.call("POST", "/v1/secrets", `{"name":"locked","folder":"/eng","type":"password","value":{"username":"svc","password":"not-the-canary"}}`, &sec); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code := adm.call("PUT", "/v1/folders", `{"path":"/eng","acl":[{"principal":"group:engineering","permission":"edit"}]}`, nil); code != 200 {
		t.Fatalf("acl: %d", code)
	}
	alice := newQLockUser(t, s, "alice", aliceWord)
	carol := newQLockUser(t, s, "carol", carolWord)
	if code := alice.lock(t, sec.ID, "lock", "", escrow.SecretValue{"password": canary}, []*qlockUser{alice}, map[string]any{
		"fields": []string{"password"}, "value": map[string]string{"username": "svc"}}); code != 200 {
		t.Fatalf("lock: %d", code)
	}
	if code := alice.lock(t, sec.ID, "share", "carol", escrow.SecretValue{"password": canary}, []*qlockUser{alice, carol}, nil); code != 200 {
		t.Fatalf("share: %d", code)
	}
	v, code := carol.read(t, sec.ID)
	if code != 200 || v["password"] != canary {
		t.Fatalf("carol's read: %d", code)
	}
	if code := adm.call("GET", "/v1/secrets/"+sec.ID+"/value", "", nil); code != 403 {
		t.Fatalf("the admin (not a member) fetched it: %d", code)
	}
	s.Close()

	// Everything the server had, as text, base64 and hex.
	forms := []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), hex.EncodeToString([]byte(canary))}
	seen := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		seen++
		for _, f := range forms {
			if bytes.Contains(b, []byte(f)) {
				t.Errorf("%s holds the locked value", p)
			}
		}
		return nil
	})
	if err != nil || seen < 4 {
		t.Fatalf("walked %d files: %v", seen, err)
	}
	for _, f := range forms {
		if strings.Contains(logs.String(), f) {
			t.Error("the server's log holds the locked value")
		}
	}
	if !strings.Contains(logs.String(), "escrow dev server listening") {
		t.Fatal("the log capture saw nothing: the search above proves nothing")
	}

	// An attacker with the database and the master key decrypts every
	// version: the locked ones hold only ciphertext; the first (plain)
	// version decrypts to its value, so the search can find what it seeks.
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keys, err := local.Open(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	for version := 1; version <= 3; version++ {
		ver, err := store.GetVersion(context.Background(), sec.ID, version)
		if err != nil {
			t.Fatal(err)
		}
		val, err := envelope.Open(context.Background(), keys, ver)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := json.Marshal(val)
		if version == 1 != strings.Contains(string(all), "not-the-canary") {
			t.Fatalf("version %d: the control does not hold", version)
		}
		for _, f := range forms {
			if strings.Contains(string(all), f) {
				t.Fatalf("version %d decrypts to the locked value", version)
			}
		}
		if version > 1 && val[escrow.QLockField] == "" {
			t.Fatalf("version %d has no blob", version)
		}
	}
	// And the sealed private keys it stores refuse guessed passwords.
	ks, err := store.GetQLockKeys(context.Background(), []string{"alice", "carol"})
	if err != nil || len(ks) != 2 {
		t.Fatalf("keys: %v", err)
	}
	for _, k := range ks {
		for _, guess := range []string{"", "password", "alice", "carol", "escrow"} {
			if _, err := qlock.OpenPrivateKey(k.Sealed, []byte(guess)); !errors.Is(err, qlock.ErrWrongPassword) {
				t.Fatalf("%s's key with %q: %v", k.Subject, guess, err)
			}
		}
	}
}

// TestQuantumLockRules: the server checks what a client sends against the
// action; a revoked member can neither fetch nor open the new version.
func TestQuantumLockRules(t *testing.T) {
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	adm := devClient{t, s, "admin"}
	var sec escrow.Secret
	if code := adm.call("POST", "/v1/secrets", `{"name":"rules","folder":"/eng","type":"password","value":{"password":"p"}}`, &sec); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code := adm.call("PUT", "/v1/folders", `{"path":"/eng","acl":[{"principal":"group:engineering","permission":"edit"}]}`, nil); code != 200 {
		t.Fatalf("acl: %d", code)
	}
	alice := newQLockUser(t, s, "alice", "alice's password, long")
	carol := newQLockUser(t, s, "carol", "carol's password, long")
	locked := map[string]any{"fields": []string{"password"}}
	// A first lock must include its author.
	if code := alice.lock(t, sec.ID, "lock", "", escrow.SecretValue{"password": "x"}, []*qlockUser{carol}, locked); code != 400 {
		t.Fatalf("lock without the author: %d", code)
	}
	if code := alice.lock(t, sec.ID, "lock", "", escrow.SecretValue{"password": "v1"}, []*qlockUser{alice}, locked); code != 200 {
		t.Fatalf("lock: %d", code)
	}
	// A plain value update is refused: the server cannot make one.
	if code := alice.c.call("PUT", "/v1/secrets/"+sec.ID, `{"value":{"password":"plain"}}`, nil); code != 400 {
		t.Fatalf("plain update of a locked secret: %d", code)
	}
	// A share must add exactly the subject.
	if code := alice.lock(t, sec.ID, "share", "carol", escrow.SecretValue{"password": "v1"}, []*qlockUser{alice}, nil); code != 400 {
		t.Fatalf("share that forgets carol: %d", code)
	}
	if code := alice.lock(t, sec.ID, "share", "carol", escrow.SecretValue{"password": "v1"}, []*qlockUser{alice, carol}, nil); code != 200 {
		t.Fatalf("share: %d", code)
	}
	if v, code := carol.read(t, sec.ID); code != 200 || v["password"] != "v1" {
		t.Fatalf("carol reads: %d %v", code, v)
	}
	// A revoke must remove exactly the subject, and never the last member.
	if code := alice.lock(t, sec.ID, "revoke", "carol", escrow.SecretValue{"password": "v2"}, []*qlockUser{alice, carol}, nil); code != 400 {
		t.Fatalf("revoke that keeps carol: %d", code)
	}
	if code := alice.lock(t, sec.ID, "revoke", "carol", escrow.SecretValue{"password": "v2"}, []*qlockUser{alice}, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if _, code := carol.read(t, sec.ID); code != 403 {
		t.Fatalf("revoked carol fetches: %d", code)
	}
	// Even with the new blob in hand, carol cannot open it.
	var after struct {
		Version int
		Value   escrow.SecretValue
	}
	alice.c.call("GET", "/v1/secrets/"+sec.ID+"/value", "", &after)
	blob, _ := base64.StdEncoding.DecodeString(after.Value[escrow.QLockField])
	if _, err := qlock.Open(blob, sec.ID, after.Version, "carol", carol.key); !errors.Is(err, qlock.ErrNotRecipient) {
		t.Fatalf("carol opens the new version: %v", err)
	}
	if code := alice.lock(t, sec.ID, "revoke", "alice", escrow.SecretValue{"password": "v3"}, []*qlockUser{alice}, nil); code != 400 {
		t.Fatalf("revoking the last member: %d", code)
	}
	// carol (no longer a member) cannot relock it.
	if code := carol.lock(t, sec.ID, "relock", "", escrow.SecretValue{"password": "mine"}, []*qlockUser{alice}, nil); code != 403 {
		t.Fatalf("a non-member relocks: %d", code)
	}
	// A new key pair while one exists is refused; the same key re-sealed
	// (a password change) is accepted.
	k2, _ := qlock.GenerateKey(rand.Reader)
	sealed2, _ := k2.Seal(rand.Reader, []byte("another long password"), fastKDF)
	body, _ := json.Marshal(map[string][]byte{"publicKey": k2.Public(), "sealed": sealed2})
	if code := alice.c.call("PUT", "/v1/qlock/key", string(body), nil); code != 409 {
		t.Fatalf("a second key pair: %d", code)
	}
	resealed, _ := alice.key.Seal(rand.Reader, []byte("alice's new password, long"), fastKDF)
	body, _ = json.Marshal(map[string][]byte{"publicKey": alice.key.Public(), "sealed": resealed})
	if code := alice.c.call("PUT", "/v1/qlock/key", string(body), nil); code != 200 {
		t.Fatalf("passwd: %d", code)
	}
	// A sealed key for another public key is refused.
	body, _ = json.Marshal(map[string][]byte{"publicKey": alice.key.Public(), "sealed": sealed2})
	if code := alice.c.call("PUT", "/v1/qlock/key", string(body), nil); code != 400 {
		t.Fatalf("mismatched sealed key: %d", code)
	}
}

// TestLockedSecretCheckoutRotateOnPostgres: beyond Secret Server, whose
// QuantumLocked secrets cannot be checked out. A locked secret is checked
// out (the server hands out only the blob), opened by its member, checked
// in and rotated on a real PostgreSQL: the server locks the new password
// to the members' public keys and forgets it. Both members open the new
// version, and it logs in; the admin, not a member, is refused.
func TestLockedSecretCheckoutRotateOnPostgres(t *testing.T) {
	pg := pgtest.StartShared(t)
	s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	adm := devClient{t, s, "admin"}
	pg.CreateRole(t, "app_locked", "Initial-locked-pw-1", false)
	var super, sec escrow.Secret
	body, _ := json.Marshal(map[string]any{"name": "pg-super", "folder": "/dba", "type": "password",
		"value": map[string]string{"username": pg.User, "password": pg.Password}})
	if code := adm.call("POST", "/v1/secrets", string(body), &super); code != 201 {
		t.Fatalf("create privileged: %d", code)
	}
	body, _ = json.Marshal(map[string]any{"name": "app", "folder": "/eng", "type": "password",
		"value": map[string]string{"username": "app_locked", "password": "Initial-locked-pw-1", "host": pg.Host, "port": pg.Port}})
	if code := adm.call("POST", "/v1/secrets", string(body), &sec); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code := adm.call("PUT", "/v1/folders", `{"path":"/eng","acl":[{"principal":"group:engineering","permission":"edit"}]}`, nil); code != 200 {
		t.Fatalf("acl: %d", code)
	}
	if code := adm.call("PUT", "/v1/folders/policy", `{"path":"/eng","policy":{"checkout":{"interval":"1h"}}}`, nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	rot, _ := json.Marshal(map[string]any{"rotation": map[string]any{"target": "postgres", "privileged": super.ID, "options": map[string]string{"tls": "disable"}}})
	if code := adm.call("PUT", "/v1/secrets/"+sec.ID+"/rotation", string(rot), nil); code != 200 {
		t.Fatalf("rotation: %d", code)
	}
	alice := newQLockUser(t, s, "alice", "alice's long QuantumLock password")
	carol := newQLockUser(t, s, "carol", "carol's long QuantumLock password")
	if code := alice.lock(t, sec.ID, "lock", "", escrow.SecretValue{"password": "Initial-locked-pw-1"}, []*qlockUser{alice, carol},
		map[string]any{"fields": []string{"password"}, "value": map[string]string{"username": "app_locked", "host": pg.Host, "port": pg.Port}}); code != 200 {
		t.Fatalf("lock: %d", code)
	}

	var co struct {
		Version int
		Value   escrow.SecretValue
	}
	if code := alice.c.call("POST", "/v1/secrets/"+sec.ID+"/checkout", "", &co); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	if co.Value["password"] != "" || co.Value[escrow.QLockField] == "" {
		t.Fatal("the checkout handed out a readable password")
	}
	blob, _ := base64.StdEncoding.DecodeString(co.Value[escrow.QLockField])
	plain, err := qlock.Open(blob, sec.ID, co.Version, "alice", alice.key)
	if err != nil {
		t.Fatal(err)
	}
	seen, _ := escrow.DecodeLocked(plain)
	if err := pg.CanLogin(context.Background(), "app_locked", seen["password"]); err != nil {
		t.Fatalf("the opened password: %v", err)
	}
	if code := alice.c.call("POST", "/v1/secrets/"+sec.ID+"/checkin", "", nil); code != 200 {
		t.Fatalf("checkin: %d", code)
	}
	waitReleased(t, alice.c, sec.ID, 20*time.Second)
	if pg.CanLogin(context.Background(), "app_locked", seen["password"]) == nil {
		t.Fatal("the password alice saw still logs in")
	}
	for _, u := range []*qlockUser{alice, carol} {
		v, code := u.read(t, sec.ID)
		if code != 200 {
			t.Fatalf("%s reads the rotated version: %d", u.c.user, code)
		}
		if v["password"] == seen["password"] {
			t.Fatalf("%s reads the old password", u.c.user)
		}
		if err := pg.CanLogin(context.Background(), "app_locked", v["password"]); err != nil {
			t.Fatalf("%s's rotated password does not log in: %v", u.c.user, err)
		}
	}
	if code := adm.call("GET", "/v1/secrets/"+sec.ID+"/value", "", nil); code != 403 {
		t.Fatalf("the admin read the locked secret: %d", code)
	}
}
