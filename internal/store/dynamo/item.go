package dynamo

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Key prefixes and fixed sort keys of the main table (template.yaml uses the
// same names).
const (
	secretPrefix = "SECRET#"
	folderPrefix = "FOLDER#"
	pathPrefix   = "PATH#"
	versionSK    = "V#"
	acePrefix    = "ACE#"
	metaSK       = "META"
	pathSK       = "PATH"
	bySecretPath = "SECRET" // the one hash key of byPath
	dayPrefix    = "DAY#"
)

// Index names.
const (
	idxByFolder    = "byFolder"
	idxByPath      = "byPath"
	idxByPrincipal = "byPrincipal"
	idxByActor     = "byActor"
	idxBySecret    = "bySecret"
	idxByAction    = "byAction"
	idxByTicket    = "byTicket"
)

type item = map[string]types.AttributeValue

func secretPK(id string) string     { return secretPrefix + id }
func folderPK(path string) string   { return folderPrefix + path }
func pathPK(path string) string     { return pathPrefix + path }
func versionKey(version int) string { return fmt.Sprintf("%s%010d", versionSK, version) }
func dayPK(t time.Time) string      { return dayPrefix + t.UTC().Format(time.DateOnly) }

func key(pk, sk string) item { return item{"pk": s(pk), "sk": s(sk)} }

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func tm(t time.Time) types.AttributeValue { return s(t.UTC().Format(time.RFC3339Nano)) }

// putS sets a string attribute unless it is empty: absent and "" read back
// the same, and index key attributes may not be empty.
func putS(it item, name, v string) {
	if v != "" {
		it[name] = s(v)
	}
}

// putB sets a binary attribute unless b is nil.
func putB(it item, name string, b []byte) {
	if b != nil {
		it[name] = &types.AttributeValueMemberB{Value: b}
	}
}

// putStrings stores a list of strings as L (ordered, may be empty); nil is
// left out so that it reads back as nil.
func putStrings(it item, name string, v []string) {
	if v == nil {
		return
	}
	l := make([]types.AttributeValue, len(v))
	for i, x := range v {
		l[i] = s(x)
	}
	it[name] = &types.AttributeValueMemberL{Value: l}
}

// putMap stores a string map as M; nil is left out.
func putMap(it item, name string, v map[string]string) {
	if v == nil {
		return
	}
	m := make(map[string]types.AttributeValue, len(v))
	for k, x := range v {
		m[k] = s(x)
	}
	it[name] = &types.AttributeValueMemberM{Value: m}
}

// putACL stores an ACL as a list of {principal, permission} maps, in order;
// nil is left out.
func putACL(it item, name string, acl []escrow.ACE) {
	if acl == nil {
		return
	}
	l := make([]types.AttributeValue, len(acl))
	for i, a := range acl {
		l[i] = &types.AttributeValueMemberM{Value: item{
			"principal":  s(a.Principal),
			"permission": s(string(a.Permission)),
		}}
	}
	it[name] = &types.AttributeValueMemberL{Value: l}
}

// decoder reads attributes of one item and remembers the first malformed
// one, so that decode functions read as a list of fields.
type decoder struct {
	it  item
	err error
}

func (d *decoder) fail(name, want string) {
	if d.err == nil {
		d.err = fmt.Errorf("attribute %q is not %s", name, want)
	}
}

func (d *decoder) str(name string) string {
	av, ok := d.it[name]
	if !ok {
		return ""
	}
	v, ok := av.(*types.AttributeValueMemberS)
	if !ok {
		d.fail(name, "a string")
		return ""
	}
	return v.Value
}

func (d *decoder) num(name string) int64 {
	av, ok := d.it[name]
	if !ok {
		return 0
	}
	v, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		d.fail(name, "a number")
		return 0
	}
	x, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		d.fail(name, "an integer")
	}
	return x
}

func (d *decoder) bytes(name string) []byte {
	av, ok := d.it[name]
	if !ok {
		return nil
	}
	v, ok := av.(*types.AttributeValueMemberB)
	if !ok {
		d.fail(name, "binary")
		return nil
	}
	return v.Value
}

func (d *decoder) time(name string) time.Time {
	v := d.str(name)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		d.fail(name, "an RFC 3339 time")
	}
	return t.UTC()
}

func (d *decoder) strings(name string) []string {
	av, ok := d.it[name]
	if !ok {
		return nil
	}
	l, ok := av.(*types.AttributeValueMemberL)
	if !ok {
		d.fail(name, "a list")
		return nil
	}
	out := make([]string, 0, len(l.Value))
	for _, x := range l.Value {
		v, ok := x.(*types.AttributeValueMemberS)
		if !ok {
			d.fail(name, "a list of strings")
			return nil
		}
		out = append(out, v.Value)
	}
	return out
}

func (d *decoder) stringMap(name string) map[string]string {
	av, ok := d.it[name]
	if !ok {
		return nil
	}
	m, ok := av.(*types.AttributeValueMemberM)
	if !ok {
		d.fail(name, "a map")
		return nil
	}
	out := make(map[string]string, len(m.Value))
	for k, x := range m.Value {
		v, ok := x.(*types.AttributeValueMemberS)
		if !ok {
			d.fail(name, "a map of strings")
			return nil
		}
		out[k] = v.Value
	}
	return out
}

func (d *decoder) acl(name string) []escrow.ACE {
	av, ok := d.it[name]
	if !ok {
		return nil
	}
	l, ok := av.(*types.AttributeValueMemberL)
	if !ok {
		d.fail(name, "a list")
		return nil
	}
	out := make([]escrow.ACE, 0, len(l.Value))
	for _, x := range l.Value {
		m, ok := x.(*types.AttributeValueMemberM)
		if !ok {
			d.fail(name, "a list of maps")
			return nil
		}
		e := decoder{it: m.Value}
		out = append(out, escrow.ACE{Principal: e.str("principal"), Permission: escrow.Permission(e.str("permission"))})
		if e.err != nil {
			d.fail(name, "an ACL")
		}
	}
	return out
}

// putJSON stores v (a policy, a rotation, a QuantumLock mark) as its JSON
// text; nil is left out. Such values are read whole, never queried, and
// JSON keeps them in step with the API's form.
func putJSON[T any](it item, name string, v *T) {
	if v == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("escrow: a %T does not marshal: %v", v, err)) // plain strings, numbers, maps and slices: cannot happen
	}
	it[name] = s(string(b))
}

// jsonAttr reads a value stored by putJSON (nil if absent).
func jsonAttr[T any](d *decoder, name, what string) *T {
	raw := d.str(name)
	if raw == "" || d.err != nil {
		return nil
	}
	v := new(T)
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		d.fail(name, what)
		return nil
	}
	return v
}

// policy reads a policy stored by putJSON (nil if absent).
func (d *decoder) policy(name string) *escrow.Policy {
	return jsonAttr[escrow.Policy](d, name, "a JSON policy")
}

// secretItem is the META item of a secret, with the attributes of the
// byFolder and byPath indexes. pendingVersion is left out while 0.
func secretItem(sec *escrow.Secret) item {
	it := item{
		"pk":             s(secretPK(sec.ID)),
		"sk":             s(metaSK),
		"fpk":            s(sec.Folder),
		"fsk":            s(sec.Name),
		"ppk":            s(bySecretPath),
		"psk":            s(sec.Path()),
		"id":             s(sec.ID),
		"name":           s(sec.Name),
		"folder":         s(sec.Folder),
		"type":           s(string(sec.Type)),
		"currentVersion": n(int64(sec.CurrentVersion)),
		"revision":       n(sec.Revision),
		"createdAt":      tm(sec.CreatedAt),
		"updatedAt":      tm(sec.UpdatedAt),
	}
	putS(it, "description", sec.Description)
	putS(it, "createdBy", sec.CreatedBy)
	putS(it, "updatedBy", sec.UpdatedBy)
	putMap(it, "tags", sec.Tags)
	putACL(it, "acl", sec.ACL)
	putJSON(it, "policy", sec.Policy)
	putJSON(it, "rotation", sec.Rotation)
	putJSON(it, "qlock", sec.QLock)
	if sec.PendingVersion != 0 {
		it["pendingVersion"] = n(int64(sec.PendingVersion))
	}
	if sec.DeletedAt != nil {
		it["deletedAt"] = tm(*sec.DeletedAt)
	}
	return it
}

func decodeSecret(it item) (*escrow.Secret, error) {
	d := decoder{it: it}
	sec := &escrow.Secret{
		ID:             d.str("id"),
		Name:           d.str("name"),
		Folder:         d.str("folder"),
		Type:           escrow.SecretType(d.str("type")),
		Description:    d.str("description"),
		Tags:           d.stringMap("tags"),
		ACL:            d.acl("acl"),
		CurrentVersion: int(d.num("currentVersion")),
		Revision:       d.num("revision"),
		CreatedAt:      d.time("createdAt"),
		CreatedBy:      d.str("createdBy"),
		UpdatedAt:      d.time("updatedAt"),
		UpdatedBy:      d.str("updatedBy"),
	}
	if _, ok := it["deletedAt"]; ok {
		t := d.time("deletedAt")
		sec.DeletedAt = &t
	}
	sec.Policy = d.policy("policy")
	sec.Rotation = jsonAttr[escrow.RotationConfig](&d, "rotation", "a JSON rotation")
	sec.QLock = jsonAttr[escrow.QLock](&d, "qlock", "a JSON QuantumLock mark")
	sec.PendingVersion = int(d.num("pendingVersion"))
	if d.err != nil {
		return nil, fmt.Errorf("decode secret: %w", d.err)
	}
	return sec, nil
}

func versionItem(v *escrow.SecretVersion) item {
	it := item{
		"pk":        s(secretPK(v.SecretID)),
		"sk":        s(versionKey(v.Version)),
		"secretId":  s(v.SecretID),
		"version":   n(int64(v.Version)),
		"createdAt": tm(v.CreatedAt),
	}
	putS(it, "createdBy", v.CreatedBy)
	putS(it, "keyId", v.KeyID)
	putB(it, "wrappedKey", v.WrappedKey)
	putB(it, "ciphertext", v.Ciphertext)
	return it
}

func decodeVersion(it item) (*escrow.SecretVersion, error) {
	d := decoder{it: it}
	v := &escrow.SecretVersion{
		SecretID:   d.str("secretId"),
		Version:    int(d.num("version")),
		CreatedAt:  d.time("createdAt"),
		CreatedBy:  d.str("createdBy"),
		KeyID:      d.str("keyId"),
		WrappedKey: d.bytes("wrappedKey"),
		Ciphertext: d.bytes("ciphertext"),
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode version: %w", d.err)
	}
	return v, nil
}

func folderItem(f *escrow.Folder) item {
	it := item{
		"pk":       s(folderPK(f.Path)),
		"sk":       s(metaSK),
		"path":     s(f.Path),
		"revision": n(f.Revision),
	}
	putS(it, "updatedBy", f.UpdatedBy)
	putACL(it, "acl", f.ACL)
	putJSON(it, "policy", f.Policy)
	return it
}

func decodeFolder(it item) (escrow.Folder, error) {
	d := decoder{it: it}
	f := escrow.Folder{
		Path:      d.str("path"),
		ACL:       d.acl("acl"),
		Revision:  d.num("revision"),
		UpdatedBy: d.str("updatedBy"),
		Policy:    d.policy("policy"),
	}
	if d.err != nil {
		return escrow.Folder{}, fmt.Errorf("decode folder: %w", d.err)
	}
	return f, nil
}

// aceItem is one row of the ACL index, kept beside its secret or folder
// (same pk) so that an ACL change rewrites it in the same transaction.
func aceItem(pk, target string, a escrow.ACE) item {
	return item{
		"pk":   s(pk),
		"sk":   s(acePrefix + a.Principal),
		"gpk":  s(a.Principal),
		"gsk":  s(target),
		"perm": s(string(a.Permission)),
	}
}

func decodeGrant(it item) (escrow.ACLGrant, error) {
	d := decoder{it: it}
	g := escrow.ACLGrant{
		Principal:  d.str("gpk"),
		Target:     d.str("gsk"),
		Permission: escrow.Permission(d.str("perm")),
	}
	if d.err != nil {
		return escrow.ACLGrant{}, fmt.Errorf("decode acl grant: %w", d.err)
	}
	return g, nil
}

// auditItem is one audit record. The index attributes (actor, secretId,
// action) are left out when empty, which keeps the indexes sparse; the rest
// of the actor is kept beside them under actor* names.
func auditItem(rec *escrow.AuditRecord) item {
	it := item{
		"pk":      s(dayPK(rec.Time)),
		"sk":      s(rec.ID),
		"id":      s(rec.ID),
		"time":    tm(rec.Time),
		"outcome": s(string(rec.Outcome)),
	}
	putS(it, "actor", rec.Actor.Subject)
	putS(it, "actorEmail", rec.Actor.Email)
	putStrings(it, "actorGroups", rec.Actor.Groups)
	putStrings(it, "actorRoles", rec.Actor.Roles)
	putS(it, "action", rec.Action)
	putS(it, "secretId", rec.SecretID)
	putS(it, "target", rec.Target)
	putS(it, "errorCode", string(rec.ErrorCode))
	putS(it, "reason", rec.Reason)
	putS(it, "requestId", rec.RequestID)
	putS(it, "sourceIp", rec.SourceIP)
	putS(it, "userAgent", rec.UserAgent)
	putS(it, "comment", rec.Comment)
	putS(it, "ticket", rec.Ticket)
	putMap(it, "details", rec.Details)
	return it
}

func decodeAudit(it item) (*escrow.AuditRecord, error) {
	d := decoder{it: it}
	rec := &escrow.AuditRecord{
		ID:   d.str("id"),
		Time: d.time("time"),
		Actor: escrow.Actor{
			Subject: d.str("actor"),
			Email:   d.str("actorEmail"),
			Groups:  d.strings("actorGroups"),
			Roles:   d.strings("actorRoles"),
		},
		Action:    d.str("action"),
		SecretID:  d.str("secretId"),
		Target:    d.str("target"),
		Outcome:   escrow.Outcome(d.str("outcome")),
		ErrorCode: escrow.Code(d.str("errorCode")),
		Reason:    d.str("reason"),
		RequestID: d.str("requestId"),
		SourceIP:  d.str("sourceIp"),
		UserAgent: d.str("userAgent"),
		Comment:   d.str("comment"),
		Ticket:    d.str("ticket"),
		Details:   d.stringMap("details"),
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode audit record: %w", d.err)
	}
	return rec, nil
}
