package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// cursor is the opaque Next of a page: the index queried, the day partition
// (audit walks only) and the key of the last item returned, from which the
// next page starts exclusively. It is built from the last item returned
// rather than from DynamoDB's LastEvaluatedKey, because a page may stop in
// the middle of what one Query read.
type cursor struct {
	Index string            `json:"i"`
	Day   string            `json:"d,omitempty"`
	Key   map[string]string `json:"k"`
}

func (c cursor) encode() string {
	b, err := json.Marshal(c)
	if err != nil {
		panic("dynamo: marshal cursor: " + err.Error()) // strings only: cannot fail
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func errCursor(why string) error {
	return escrow.Errorf(escrow.CodeInvalid, "malformed cursor: %s", why)
}

// decodeCursor parses v and checks that it belongs to a query of index whose
// key attributes are exactly attrs, none empty.
func decodeCursor(v, index string, attrs ...string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return cursor{}, errCursor("not base64")
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return cursor{}, errCursor("not JSON")
	}
	if c.Index != index {
		return cursor{}, errCursor("from another query")
	}
	got := slices.Sorted(maps.Keys(c.Key))
	if !slices.Equal(got, slices.Sorted(slices.Values(attrs))) {
		return cursor{}, errCursor("wrong key")
	}
	for _, a := range attrs {
		if c.Key[a] == "" {
			return cursor{}, errCursor("empty key")
		}
	}
	return c, nil
}

// startKey is the cursor's key as an ExclusiveStartKey.
func (c cursor) startKey() item {
	k := make(item, len(c.Key))
	for a, v := range c.Key {
		k[a] = s(v)
	}
	return k
}

// keyOf copies the string attributes attrs of it, for a cursor.
func keyOf(it item, attrs ...string) map[string]string {
	d := decoder{it: it}
	k := make(map[string]string, len(attrs))
	for _, a := range attrs {
		k[a] = d.str(a)
	}
	return k
}

// ListSecrets queries byFolder (one folder) or byPath (a subtree: the paths
// that begin with folder+"/", or all of them under "/"), both ordered by
// path. Deleted secrets are dropped by a filter, so a page may take several
// Query calls. See escrow.Store.
func (st *Store) ListSecrets(ctx context.Context, q escrow.SecretQuery) (escrow.SecretPage, error) {
	folder, err := escrow.CleanFolder(q.Folder)
	if err != nil {
		return escrow.SecretPage{}, err
	}
	limit := pageLimit(q.Limit)
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(st.tables.Main),
		KeyConditionExpression:    aws.String("#h = :h"),
		ExpressionAttributeNames:  map[string]string{},
		ExpressionAttributeValues: item{},
	}
	var index, hashAttr, rangeAttr, hash, prefix string
	if q.Recursive {
		index, hashAttr, rangeAttr, hash = idxByPath, "ppk", "psk", bySecretPath
		if folder != "/" {
			prefix = folder + "/"
			in.KeyConditionExpression = aws.String("#h = :h AND begins_with(#r, :prefix)")
			in.ExpressionAttributeNames["#r"] = rangeAttr
			in.ExpressionAttributeValues[":prefix"] = s(prefix)
		}
	} else {
		index, hashAttr, rangeAttr, hash = idxByFolder, "fpk", "fsk", folder
	}
	in.IndexName = aws.String(index)
	in.ExpressionAttributeNames["#h"] = hashAttr
	in.ExpressionAttributeValues[":h"] = s(hash)
	if !q.IncludeDeleted {
		in.FilterExpression = aws.String("attribute_not_exists(#del)")
		in.ExpressionAttributeNames["#del"] = "deletedAt"
	}
	attrs := []string{"pk", "sk", hashAttr, rangeAttr}
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, index, attrs...)
		if err != nil {
			return escrow.SecretPage{}, err
		}
		if c.Key[hashAttr] != hash || !strings.HasPrefix(c.Key[rangeAttr], prefix) ||
			!strings.HasPrefix(c.Key["pk"], secretPrefix) || c.Key["sk"] != metaSK {
			return escrow.SecretPage{}, errCursor("from another query")
		}
		in.ExclusiveStartKey = c.startKey()
	}

	// One more than the page, to know whether a next page exists.
	need := limit + 1
	secrets := make([]*escrow.Secret, 0, min(need, 64))
	var keys []item
	for len(secrets) < need {
		in.Limit = aws.Int32(int32(queryLimit(need-len(secrets), in.FilterExpression != nil)))
		resp, err := st.client.Query(ctx, in)
		if err != nil {
			return escrow.SecretPage{}, convertError("list secrets", err)
		}
		for _, it := range resp.Items {
			if len(secrets) == need {
				break
			}
			sec, err := decodeSecret(it)
			if err != nil {
				return escrow.SecretPage{}, err
			}
			secrets = append(secrets, sec)
			keys = append(keys, it)
		}
		if resp.LastEvaluatedKey == nil {
			break
		}
		in.ExclusiveStartKey = resp.LastEvaluatedKey
	}
	page := escrow.SecretPage{Secrets: secrets}
	if len(secrets) > limit {
		page.Secrets = secrets[:limit]
		page.Next = cursor{Index: index, Key: keyOf(keys[limit-1], attrs...)}.encode()
	}
	return page, nil
}

// queryLimit is the Limit of one Query that still needs want items. A
// filter is applied after Limit, so a filtered query reads a larger batch
// rather than loop on small ones.
func queryLimit(want int, filtered bool) int {
	if filtered {
		return min(max(want, 100), maxLimit+1)
	}
	return want
}
