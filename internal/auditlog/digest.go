package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Format constants of version 1 (see the package doc).
const (
	// DigestVersion is the version byte of the canonical digest encoding and
	// the "version" of the JSON form.
	DigestVersion = 1
	// MaxIDLen is the longest record ID a digest can hold, in bytes.
	MaxIDLen = math.MaxUint16

	// chainLabel prefixes the hash that links a digest to the next.
	chainLabel = "escrow/audit/digest-chain/v1\n"
	// keyIDLen is the length of a key id: 32 lowercase hex digits.
	keyIDLen = 32
)

// Leaf is one record of a digest: its ID and RecordHash.
type Leaf struct {
	ID   string
	Hash [32]byte
}

// Digest seals one period [From, To) of the audit log. A digest for a
// period without records has Count 0, empty IDs and Leaves, and the Merkle
// root of no leaves, so a deleted period leaves a gap in the chain.
type Digest struct {
	Seq      int64     // 0 for the first digest of a chain, then +1 each
	From, To time.Time // the period; the next digest's From is this To
	Count    int       // len(Leaves)
	FirstID  string    // Leaves[0].ID, or "" when empty
	LastID   string    // Leaves[Count-1].ID, or "" when empty
	Root     [32]byte  // MerkleRoot of the leaves' hashes
	PrevHash [32]byte  // Hash of the previous SignedDigest; zero for Seq 0
	Leaves   []Leaf    // every record of the period, in strictly increasing ID order
}

// SignedDigest is a Digest with both signatures over its canonical
// encoding. VerifyDigest accepts it only if both verify.
type SignedDigest struct {
	Digest
	KeyID      string // PublicKeys.KeyID of the signer
	Ed25519Sig []byte // ed25519.SignatureSize bytes
	MLDSA65Sig []byte // mldsa65.SignatureSize bytes
}

// Canonical returns the canonical binary encoding of d, the bytes both
// signatures cover (after the signing label). It returns ErrMalformed if d
// cannot be encoded: a negative Seq, Count differing from len(Leaves), a
// record ID longer than MaxIDLen or not valid UTF-8, or a time outside
// years 0000-9999.
func (d *Digest) Canonical() ([]byte, error) {
	if err := d.checkEncodable(); err != nil {
		return nil, err
	}
	n := 1 + 8 + 12 + 12 + 8 + 2 + len(d.FirstID) + 2 + len(d.LastID) + 32 + 32
	for i := range d.Leaves {
		n += 2 + len(d.Leaves[i].ID) + 32
	}
	b := make([]byte, 0, n)
	b = append(b, DigestVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Seq))
	b = appendBinaryTime(b, d.From)
	b = appendBinaryTime(b, d.To)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Count))
	b = appendBinaryString(b, d.FirstID)
	b = appendBinaryString(b, d.LastID)
	b = append(b, d.Root[:]...)
	b = append(b, d.PrevHash[:]...)
	for i := range d.Leaves {
		b = appendBinaryString(b, d.Leaves[i].ID)
		b = append(b, d.Leaves[i].Hash[:]...)
	}
	return b, nil
}

func appendBinaryTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func appendBinaryString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (d *Digest) checkEncodable() error {
	if d.Seq < 0 {
		return fmt.Errorf("%w: negative seq %d", ErrMalformed, d.Seq)
	}
	if d.Count != len(d.Leaves) {
		return fmt.Errorf("%w: digest %d: count %d but %d leaves", ErrMalformed, d.Seq, d.Count, len(d.Leaves))
	}
	for _, t := range []time.Time{d.From, d.To} {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return fmt.Errorf("%w: digest %d: period year outside 0000-9999", ErrMalformed, d.Seq)
		}
	}
	if !validID(d.FirstID) || !validID(d.LastID) {
		return fmt.Errorf("%w: digest %d: first or last ID too long or not UTF-8", ErrMalformed, d.Seq)
	}
	for i := range d.Leaves {
		if !validID(d.Leaves[i].ID) {
			return fmt.Errorf("%w: digest %d: leaf %d: ID too long or not UTF-8", ErrMalformed, d.Seq, i)
		}
	}
	return nil
}

func validID(id string) bool { return len(id) <= MaxIDLen && utf8.ValidString(id) }

// Check reports whether d is internally consistent: encodable (see
// Canonical), From before To, leaves with non-empty IDs in strictly
// increasing order, FirstID and LastID those of the first and last leaf
// ("" when there are none), and Root their Merkle root. It returns
// ErrMalformed, wrapped with the reason.
func (d *Digest) Check() error {
	_, err := d.check()
	return err
}

// check is Check that also returns the canonical bytes, so callers that
// need both encode once.
func (d *Digest) check() ([]byte, error) {
	canon, err := d.Canonical()
	if err != nil {
		return nil, err
	}
	if !d.From.Before(d.To) {
		return nil, fmt.Errorf("%w: digest %d: period from %s is not before to %s", ErrMalformed, d.Seq, fmtTime(d.From), fmtTime(d.To))
	}
	first, last := "", ""
	if len(d.Leaves) > 0 {
		first, last = d.Leaves[0].ID, d.Leaves[len(d.Leaves)-1].ID
	}
	if d.FirstID != first || d.LastID != last {
		return nil, fmt.Errorf("%w: digest %d: first and last ID do not match the leaves", ErrMalformed, d.Seq)
	}
	if !d.leavesSorted() {
		return nil, fmt.Errorf("%w: digest %d: leaf IDs are empty or not in increasing order", ErrMalformed, d.Seq)
	}
	if leavesRoot(d.Leaves) != d.Root {
		return nil, fmt.Errorf("%w: digest %d: Merkle root does not match the leaves", ErrMalformed, d.Seq)
	}
	return canon, nil
}

func (d *Digest) leavesSorted() bool {
	for i := range d.Leaves {
		if d.Leaves[i].ID == "" || i > 0 && d.Leaves[i-1].ID >= d.Leaves[i].ID {
			return false
		}
	}
	return true
}

// Hash returns the value the next digest's PrevHash must hold:
// SHA-256(chainLabel ‖ canonical digest ‖ key id length (1 byte) ‖ key id ‖
// Ed25519 signature ‖ ML-DSA-65 signature). It covers the signatures, so
// the chain commits to the exact signed digest, as CloudTrail's digest
// files chain the previous file's signature. It returns ErrMalformed if sd
// cannot be encoded.
func (sd *SignedDigest) Hash() ([32]byte, error) {
	canon, err := sd.Canonical()
	if err != nil {
		return [32]byte{}, err
	}
	return sd.hash(canon)
}

func (sd *SignedDigest) hash(canon []byte) ([32]byte, error) {
	if err := sd.checkSignatureShape(); err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	h.Write([]byte(chainLabel))
	h.Write(canon)
	h.Write([]byte{byte(len(sd.KeyID))})
	h.Write([]byte(sd.KeyID))
	h.Write(sd.Ed25519Sig)
	h.Write(sd.MLDSA65Sig)
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}

// checkSignatureShape checks the sizes of the key id and signatures.
func (sd *SignedDigest) checkSignatureShape() error {
	if !validKeyID(sd.KeyID) {
		return fmt.Errorf("%w: digest %d: key id is not %d lowercase hex digits", ErrMalformed, sd.Seq, keyIDLen)
	}
	if len(sd.Ed25519Sig) != ed25519.SignatureSize || len(sd.MLDSA65Sig) != mldsa65.SignatureSize {
		return fmt.Errorf("%w: digest %d: signature of the wrong size", ErrMalformed, sd.Seq)
	}
	return nil
}

func validKeyID(id string) bool {
	if len(id) != keyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// wireDigest is the JSON form of a SignedDigest; see the package doc.
type wireDigest struct {
	Version    int        `json:"version"`
	Seq        int64      `json:"seq"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Count      int        `json:"count"`
	FirstID    string     `json:"firstId"`
	LastID     string     `json:"lastId"`
	Root       string     `json:"root"`
	PrevHash   string     `json:"prevHash"`
	Leaves     []wireLeaf `json:"leaves"`
	KeyID      string     `json:"keyId"`
	Ed25519Sig []byte     `json:"ed25519Signature"`
	MLDSA65Sig []byte     `json:"mldsa65Signature"`
}

type wireLeaf struct {
	ID   string `json:"id"`
	Hash string `json:"hash"`
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// Marshal returns the JSON form of sd (see the package doc), one line ending
// in a newline. It returns ErrMalformed if sd cannot be encoded (see
// Digest.Canonical) or its key id or signatures have the wrong size. It
// does not check signatures or consistency: VerifyDigest does.
func (sd *SignedDigest) Marshal() ([]byte, error) {
	if err := sd.checkEncodable(); err != nil {
		return nil, err
	}
	if err := sd.checkSignatureShape(); err != nil {
		return nil, err
	}
	w := wireDigest{
		Version:    DigestVersion,
		Seq:        sd.Seq,
		From:       fmtTime(sd.From),
		To:         fmtTime(sd.To),
		Count:      sd.Count,
		FirstID:    sd.FirstID,
		LastID:     sd.LastID,
		Root:       hex.EncodeToString(sd.Root[:]),
		PrevHash:   hex.EncodeToString(sd.PrevHash[:]),
		Leaves:     make([]wireLeaf, len(sd.Leaves)),
		KeyID:      sd.KeyID,
		Ed25519Sig: sd.Ed25519Sig,
		MLDSA65Sig: sd.MLDSA65Sig,
	}
	for i := range sd.Leaves {
		w.Leaves[i] = wireLeaf{ID: sd.Leaves[i].ID, Hash: hex.EncodeToString(sd.Leaves[i].Hash[:])}
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("encode digest %d: %w", sd.Seq, err)
	}
	return append(b, '\n'), nil
}

// ParseSignedDigest parses the JSON form Marshal writes, strictly: the input
// must be exactly the bytes Marshal would give for the value it holds (no
// unknown, missing or repeated field, no other spelling of a number, time,
// hash or signature, no whitespace but the final newline), so one digest
// has one file and no two parsers can read it differently. It returns
// ErrMalformed, wrapped with the reason, and never panics. It does not
// check signatures or consistency: VerifyDigest does.
func ParseSignedDigest(b []byte) (*SignedDigest, error) {
	var w wireDigest
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.Version != DigestVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, w.Version)
	}
	sd := &SignedDigest{
		Digest: Digest{
			Seq:     w.Seq,
			Count:   w.Count,
			FirstID: w.FirstID,
			LastID:  w.LastID,
		},
		KeyID:      w.KeyID,
		Ed25519Sig: w.Ed25519Sig,
		MLDSA65Sig: w.MLDSA65Sig,
	}
	var err error
	if sd.From, err = parseTime(w.From); err != nil {
		return nil, err
	}
	if sd.To, err = parseTime(w.To); err != nil {
		return nil, err
	}
	if err := parseHash(&sd.Root, w.Root); err != nil {
		return nil, err
	}
	if err := parseHash(&sd.PrevHash, w.PrevHash); err != nil {
		return nil, err
	}
	if len(w.Leaves) > 0 {
		sd.Leaves = make([]Leaf, len(w.Leaves))
	}
	for i := range w.Leaves {
		sd.Leaves[i].ID = w.Leaves[i].ID
		if err := parseHash(&sd.Leaves[i].Hash, w.Leaves[i].Hash); err != nil {
			return nil, err
		}
	}
	again, err := sd.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: digest %d is not in canonical form", ErrMalformed, sd.Seq)
	}
	return sd, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q", ErrMalformed, s)
	}
	return t.UTC(), nil
}

func parseHash(dst *[32]byte, s string) error {
	if len(s) != 64 {
		return fmt.Errorf("%w: hash is not 64 hex digits", ErrMalformed)
	}
	if _, err := hex.Decode(dst[:], []byte(s)); err != nil {
		return fmt.Errorf("%w: hash is not hex", ErrMalformed)
	}
	return nil
}

// clone returns a deep copy of d; no leaves are a nil slice, as
// ParseSignedDigest gives them.
func (d *Digest) clone() Digest {
	c := *d
	c.From, c.To = normTime(d.From), normTime(d.To)
	c.Leaves = nil
	if len(d.Leaves) > 0 {
		c.Leaves = slices.Clone(d.Leaves)
	}
	return c
}
