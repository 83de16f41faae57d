package dynamo

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Tables names the two tables: Main holds secrets, versions, folders, path
// reservations, the ACL index, checkout slots, requests, grants,
// QuantumLock keys, report schedules, web console sessions and
// configuration items; Audit holds the append-only audit trail.
type Tables struct{ Main, Audit string }

// API is the part of *dynamodb.Client the store uses. Keeping it narrow lets
// a unit test fake one call, and documents which IAM actions the store needs.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store is escrow.Store and escrow.AuditLog on DynamoDB. It is safe for
// concurrent use.
type Store struct {
	client API
	tables Tables
	now    func() time.Time // default bounds of audit queries
}

var (
	_ escrow.Store    = (*Store)(nil)
	_ escrow.AuditLog = (*Store)(nil)
)

// New returns a Store on the given tables.
func New(client API, tables Tables) *Store {
	return &Store{client: client, tables: tables, now: time.Now}
}

// Default and maximum page sizes of the list operations (escrow's ports).
const (
	defaultLimit = 100
	maxLimit     = 1000
)

func pageLimit(l int) int {
	switch {
	case l <= 0:
		return defaultLimit
	case l > maxLimit:
		return maxLimit
	}
	return l
}

// Condition expressions. Attribute names always go through placeholders:
// several of ours (name, path, action, time, type) are reserved words.
const (
	condNotExists = "attribute_not_exists(#pk)"
	condExists    = "attribute_exists(#pk)"
	condRevision  = "attribute_exists(#pk) AND #rev = :prev"
	condOwnsPath  = "#sid = :id"
)

// txn collects the items of one TransactWriteItems.
type txn struct{ items []types.TransactWriteItem }

func (x *txn) put(table string, it item, cond string, vals item) {
	p := &types.Put{TableName: aws.String(table), Item: it}
	if cond != "" {
		p.ConditionExpression = aws.String(cond)
		p.ExpressionAttributeNames = condNames(cond)
		if len(vals) > 0 {
			p.ExpressionAttributeValues = vals
		}
	}
	x.items = append(x.items, types.TransactWriteItem{Put: p})
}

func (x *txn) del(table string, k item, cond string, vals item) {
	d := &types.Delete{TableName: aws.String(table), Key: k}
	if cond != "" {
		d.ConditionExpression = aws.String(cond)
		d.ExpressionAttributeNames = condNames(cond)
		if len(vals) > 0 {
			d.ExpressionAttributeValues = vals
		}
	}
	x.items = append(x.items, types.TransactWriteItem{Delete: d})
}

// condNames returns the placeholders a condition above uses.
func condNames(cond string) map[string]string {
	switch cond {
	case condNotExists, condExists:
		return map[string]string{"#pk": "pk"}
	case condRevision:
		return map[string]string{"#pk": "pk", "#rev": "revision"}
	case condOwnsPath:
		return map[string]string{"#sid": "secretId"}
	}
	panic("dynamo: unknown condition " + cond)
}

// audit adds rec to x: a Put on the audit table under the same
// attribute_not_exists condition as Append, so a reused ID cancels the
// whole write.
func (st *Store) audit(x *txn, rec *escrow.AuditRecord) {
	x.put(st.tables.Audit, auditItem(rec), condNotExists, nil)
}

// commit runs x as one transaction. The audit record's ID is the idempotency
// token: an SDK retry of a write that did land then succeeds instead of
// failing its own conditions.
func (st *Store) commit(ctx context.Context, op string, x *txn, rec *escrow.AuditRecord) error {
	in := &dynamodb.TransactWriteItemsInput{TransactItems: x.items}
	if len(rec.ID) <= 36 && !strings.ContainsFunc(rec.ID, unicode.IsSpace) {
		in.ClientRequestToken = aws.String(rec.ID)
	}
	_, err := st.client.TransactWriteItems(ctx, in)
	return convertError(op, err)
}

func checkRecord(rec *escrow.AuditRecord) error {
	if rec == nil || rec.ID == "" || rec.Time.IsZero() {
		return escrow.Errorf(escrow.CodeInternal, "a write needs an audit record with an ID and a time")
	}
	return nil
}

// aclChanges adds to x the index rows that turn old into acl for the
// secret or folder at pk: deletes for principals that left, puts for new or
// changed ones. Unchanged rows are not touched, so no item appears twice in
// the transaction.
func (st *Store) aclChanges(x *txn, pk, target string, old, acl []escrow.ACE) {
	now := make(map[string]escrow.Permission, len(acl))
	for _, a := range acl {
		now[a.Principal] = a.Permission
	}
	before := make(map[string]escrow.Permission, len(old))
	for _, a := range old {
		before[a.Principal] = a.Permission
		if _, ok := now[a.Principal]; !ok {
			x.del(st.tables.Main, key(pk, acePrefix+a.Principal), "", nil)
		}
	}
	for _, a := range acl {
		if p, ok := before[a.Principal]; !ok || p != a.Permission {
			x.put(st.tables.Main, aceItem(pk, target, a), "", nil)
		}
	}
}

func pathItem(sec *escrow.Secret) item {
	return item{"pk": s(pathPK(sec.Path())), "sk": s(pathSK), "secretId": s(sec.ID)}
}

// CreateSecret writes the secret, its first version, its path reservation,
// its ACL index rows and rec in one transaction. See escrow.Store.
func (st *Store) CreateSecret(ctx context.Context, sec *escrow.Secret, v *escrow.SecretVersion, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case sec == nil || v == nil || sec.ID == "" || sec.Name == "" || sec.Folder == "":
		return escrow.Errorf(escrow.CodeInvalid, "a new secret needs an id, a name, a folder and a first version")
	case v.SecretID != sec.ID || v.Version != 1 || sec.CurrentVersion != 1 || sec.Revision != 1:
		return escrow.Errorf(escrow.CodeInvalid, "a new secret starts at version 1 and revision 1")
	}
	if err := escrow.ValidateACL(sec.ACL); err != nil {
		return err
	}
	var x txn
	pk := secretPK(sec.ID)
	x.put(st.tables.Main, secretItem(sec), condNotExists, nil)
	x.put(st.tables.Main, versionItem(v), condNotExists, nil)
	x.put(st.tables.Main, pathItem(sec), condNotExists, nil)
	st.aclChanges(&x, pk, escrow.SecretTarget(sec.ID), nil, sec.ACL)
	st.audit(&x, rec)
	return st.commit(ctx, "create secret", &x, rec)
}

// newVersionOf reports whether an update of sec may add version n: its
// current version, or a rotation's pending one (escrow.Store.UpdateSecret).
func newVersionOf(sec *escrow.Secret, n int) bool {
	return n == sec.CurrentVersion || (sec.PendingVersion != 0 && n == sec.PendingVersion)
}

// UpdateSecret reads the stored secret (to learn its old path and ACL, and
// to tell a missing secret from a stale revision), then writes everything
// in one transaction conditional on that revision. See escrow.Store.
func (st *Store) UpdateSecret(ctx context.Context, sec *escrow.Secret, prevRevision int64, v *escrow.SecretVersion, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	switch {
	case sec == nil || sec.ID == "" || sec.Name == "" || sec.Folder == "":
		return escrow.Errorf(escrow.CodeInvalid, "a secret needs an id, a name and a folder")
	case sec.Revision != prevRevision+1:
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	case v != nil && (v.SecretID != sec.ID || !newVersionOf(sec, v.Version)):
		return escrow.Errorf(escrow.CodeInvalid, "a new version must be the secret's current or pending version")
	}
	if err := escrow.ValidateACL(sec.ACL); err != nil {
		return err
	}
	old, err := st.GetSecret(ctx, sec.ID)
	if err != nil {
		return err
	}
	if old.Revision != prevRevision {
		return fmt.Errorf("update secret %s: revision is %d, not %d: %w", sec.ID, old.Revision, prevRevision, escrow.ErrConflict)
	}
	var x txn
	pk := secretPK(sec.ID)
	x.put(st.tables.Main, secretItem(sec), condRevision, item{":prev": n(prevRevision)})
	if v != nil {
		x.put(st.tables.Main, versionItem(v), condNotExists, nil)
	}
	if old.Path() != sec.Path() {
		x.del(st.tables.Main, key(pathPK(old.Path()), pathSK), condOwnsPath, item{":id": s(sec.ID)})
		x.put(st.tables.Main, pathItem(sec), condNotExists, nil)
	}
	st.aclChanges(&x, pk, escrow.SecretTarget(sec.ID), old.ACL, sec.ACL)
	st.audit(&x, rec)
	return st.commit(ctx, "update secret", &x, rec)
}

// GetSecret is one strongly consistent GetItem. See escrow.Store.
func (st *Store) GetSecret(ctx context.Context, id string) (*escrow.Secret, error) {
	out, err := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.tables.Main),
		Key:            key(secretPK(id), metaSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, convertError("get secret", err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("get secret %s: %w", id, escrow.ErrNotFound)
	}
	return decodeSecret(out.Item)
}

// GetSecretByPath reads the path reservation, then the secret: two
// strongly consistent reads, where the byFolder index would be one
// eventually consistent read that could miss a secret just created or
// renamed. See escrow.Store.
func (st *Store) GetSecretByPath(ctx context.Context, folder, name string) (*escrow.Secret, error) {
	folder, err := escrow.CleanFolder(folder)
	if err != nil {
		return nil, err
	}
	if name == "" || strings.Contains(name, "/") {
		// No secret has such a name; "a/b" must not reach into a subfolder.
		return nil, fmt.Errorf("get secret by path: %w", escrow.ErrNotFound)
	}
	p := (&escrow.Secret{Folder: folder, Name: name}).Path()
	out, err := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.tables.Main),
		Key:            key(pathPK(p), pathSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, convertError("get secret path", err)
	}
	d := decoder{it: out.Item}
	id := d.str("secretId")
	if d.err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("get secret path: %w", d.err), "")
	}
	if id == "" {
		return nil, fmt.Errorf("get secret by path: %w", escrow.ErrNotFound)
	}
	sec, err := st.GetSecret(ctx, id)
	if err != nil {
		return nil, err
	}
	if sec.Path() != p {
		// Cannot happen: a rename moves the reservation in its transaction.
		return nil, fmt.Errorf("get secret by path: reservation points at a secret elsewhere: %w", escrow.ErrNotFound)
	}
	return sec, nil
}

// GetVersion is one strongly consistent GetItem. See escrow.Store.
func (st *Store) GetVersion(ctx context.Context, id string, version int) (*escrow.SecretVersion, error) {
	out, err := st.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(st.tables.Main),
		Key:            key(secretPK(id), versionKey(version)),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, convertError("get version", err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("get version %s/%d: %w", id, version, escrow.ErrNotFound)
	}
	return decodeVersion(out.Item)
}

// ListVersions queries the secret's partition for its V# items, leaving the
// ciphertext out of the projection. See escrow.Store.
func (st *Store) ListVersions(ctx context.Context, id string) ([]*escrow.SecretVersion, error) {
	in := &dynamodb.QueryInput{
		TableName:              aws.String(st.tables.Main),
		KeyConditionExpression: aws.String("#pk = :pk AND begins_with(#sk, :v)"),
		ProjectionExpression:   aws.String("#sid, #ver, #ca, #cb, #kid, #wk"),
		ExpressionAttributeNames: map[string]string{
			"#pk": "pk", "#sk": "sk", "#sid": "secretId", "#ver": "version",
			"#ca": "createdAt", "#cb": "createdBy", "#kid": "keyId", "#wk": "wrappedKey",
		},
		ExpressionAttributeValues: item{":pk": s(secretPK(id)), ":v": s(versionSK)},
		ConsistentRead:            aws.Bool(true),
	}
	out := []*escrow.SecretVersion{}
	for {
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return nil, convertError("list versions", err)
		}
		for _, it := range resp.Items {
			v, err := decodeVersion(it)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if resp.LastEvaluatedKey == nil {
			return out, nil
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
}

// GetVersionAndFolders reads the version and the folders in one
// BatchGetItem (more than 99 folders take further calls). See escrow.Store.
func (st *Store) GetVersionAndFolders(ctx context.Context, id string, version int, paths []string) (*escrow.SecretVersion, []escrow.Folder, error) {
	vkey := key(secretPK(id), versionKey(version))
	keys := []item{vkey}
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			keys = append(keys, key(folderPK(p), metaSK))
		}
	}
	var v *escrow.SecretVersion
	var folders []escrow.Folder
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), maxBatchGet)]
		keys = keys[len(chunk):]
		items, err := st.batchGet(ctx, "get version and folders", chunk)
		if err != nil {
			return nil, nil, err
		}
		for _, it := range items {
			pk, _ := it["pk"].(*types.AttributeValueMemberS)
			if pk != nil && strings.HasPrefix(pk.Value, folderPrefix) {
				f, err := decodeFolder(it)
				if err != nil {
					return nil, nil, err
				}
				folders = append(folders, f)
				continue
			}
			if v, err = decodeVersion(it); err != nil {
				return nil, nil, err
			}
		}
	}
	if v == nil {
		return nil, nil, fmt.Errorf("get version %s/%d: %w", id, version, escrow.ErrNotFound)
	}
	return v, folders, nil
}

// GetFolders reads the folders in BatchGetItem calls of at most 100 keys
// (one call for any real folder depth), retrying unprocessed keys. See
// escrow.Store.
func (st *Store) GetFolders(ctx context.Context, paths []string) ([]escrow.Folder, error) {
	seen := make(map[string]bool, len(paths))
	var keys []item
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			keys = append(keys, key(folderPK(p), metaSK))
		}
	}
	var out []escrow.Folder
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), maxBatchGet)]
		keys = keys[len(chunk):]
		items, err := st.batchGet(ctx, "get folders", chunk)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			f, err := decodeFolder(it)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// maxBatchGet is the most keys one BatchGetItem takes.
const maxBatchGet = 100

// batchGet fetches keys (at most maxBatchGet, none twice: BatchGetItem
// refuses either) from the main table for operation op, retrying what
// DynamoDB leaves unprocessed (under throttling) with a short backoff.
func (st *Store) batchGet(ctx context.Context, op string, keys []item) ([]item, error) {
	var out []item
	req := map[string]types.KeysAndAttributes{st.tables.Main: {Keys: keys, ConsistentRead: aws.Bool(true)}}
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := st.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return nil, convertError(op, err)
		}
		out = append(out, resp.Responses[st.tables.Main]...)
		rest, ok := resp.UnprocessedKeys[st.tables.Main]
		if !ok || len(rest.Keys) == 0 {
			return out, nil
		}
		if attempt == 8 {
			return nil, escrow.Wrap(escrow.CodeUnavailable,
				fmt.Errorf("%s: %d keys still unprocessed after %d attempts", op, len(rest.Keys), attempt+1), msgUnavailable)
		}
		req = map[string]types.KeysAndAttributes{st.tables.Main: rest}
		select {
		case <-ctx.Done():
			return nil, convertError(op, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// PutFolder creates a folder (prevRevision 0) or replaces it at
// prevRevision, rewriting its ACL index rows in the same transaction. See
// escrow.Store.
func (st *Store) PutFolder(ctx context.Context, f *escrow.Folder, prevRevision int64, rec *escrow.AuditRecord) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	if f == nil || f.Path == "" {
		return escrow.Errorf(escrow.CodeInvalid, "a folder needs a path")
	}
	if f.Revision != prevRevision+1 {
		return escrow.Errorf(escrow.CodeInvalid, "the new revision must be the previous one plus one")
	}
	if err := escrow.ValidateACL(f.ACL); err != nil {
		return err
	}
	pk := folderPK(f.Path)
	var x txn
	var old []escrow.ACE
	if prevRevision == 0 {
		x.put(st.tables.Main, folderItem(f), condNotExists, nil)
	} else {
		cur, err := st.GetFolders(ctx, []string{f.Path})
		if err != nil {
			return err
		}
		if len(cur) == 0 {
			return fmt.Errorf("put folder %s: no folder at revision %d: %w", f.Path, prevRevision, escrow.ErrConflict)
		}
		if cur[0].Revision != prevRevision {
			return fmt.Errorf("put folder %s: revision is %d, not %d: %w", f.Path, cur[0].Revision, prevRevision, escrow.ErrConflict)
		}
		old = cur[0].ACL
		x.put(st.tables.Main, folderItem(f), condRevision, item{":prev": n(prevRevision)})
	}
	st.aclChanges(&x, pk, escrow.FolderTarget(f.Path), old, f.ACL)
	st.audit(&x, rec)
	return st.commit(ctx, "put folder", &x, rec)
}

// ListACLGrants queries byPrincipal once per distinct principal. See
// escrow.Store.
func (st *Store) ListACLGrants(ctx context.Context, principals []string) ([]escrow.ACLGrant, error) {
	var out []escrow.ACLGrant
	seen := make(map[string]bool, len(principals))
	for _, p := range principals {
		if seen[p] || p == "" {
			continue
		}
		seen[p] = true
		in := &dynamodb.QueryInput{
			TableName:                 aws.String(st.tables.Main),
			IndexName:                 aws.String(idxByPrincipal),
			KeyConditionExpression:    aws.String("#g = :g"),
			ExpressionAttributeNames:  map[string]string{"#g": "gpk"},
			ExpressionAttributeValues: item{":g": s(p)},
		}
		for {
			resp, err := st.client.Query(ctx, in)
			if err != nil {
				return nil, convertError("list acl grants", err)
			}
			for _, it := range resp.Items {
				g, err := decodeGrant(it)
				if err != nil {
					return nil, err
				}
				out = append(out, g)
			}
			if resp.LastEvaluatedKey == nil {
				break
			}
			in.ExclusiveStartKey = resp.LastEvaluatedKey
		}
	}
	return out, nil
}
