// Package auditlog makes the append-only audit log tamper-evident, as
// CloudTrail does with its digest files (DESIGN 6): each record is hashed,
// each period's records (an hour, say) become an RFC 6962 Merkle tree, and
// a digest of the period, chained to the previous digest, is signed with
// both Ed25519 and ML-DSA-65. Verify then checks a whole range offline and
// names what was altered, removed, inserted or reordered.
//
// Seal and Sealer build digests (the audit-stream consumer and the -dev
// process feed them); DigestStore keeps them (auditlog/dir for a folder,
// an S3 adapter for production); Verify and VerifyDigest check them
// (`escrow audit verify`).
//
// This package must never accept a digest on one signature alone, never
// hash a repaired copy of a record (a record it cannot encode exactly is an
// error), never let a Signer's keys be printed, and never trust what it
// reads: digests are parsed strictly and verified, never merely loaded. It
// knows no AWS.
//
// # Record hash (version 1)
//
//	RecordHash = SHA-256("escrow/audit/record/v1\n" ‖ canonical JSON)
//
// The canonical JSON of an escrow.AuditRecord is, with no whitespace:
//
//	{"id":S,"time":T,"actor":{"sub":S[,"email":S][,"groups":[S,…]][,"roles":[S,…]]},
//	"action":S[,"secretId":S][,"target":S],"outcome":S[,"errorCode":S][,"reason":S]
//	[,"requestId":S][,"sourceIp":S][,"userAgent":S][,"comment":S][,"ticket":S]
//	[,"details":{K:S,…}]}
//
// where:
//
//   - Fields come in the struct's order. A bracketed field is left out when
//     empty (an empty string, a nil or zero-length slice or map), exactly
//     what encoding/json's omitempty leaves out; the others are always
//     there, even when empty ("sub":"").
//   - details keys are sorted by their bytes (UTF-8 byte order, which is
//     code point order), as encoding/json sorts map keys.
//   - T is the time in UTC as "YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ", always nine
//     fractional digits, so one instant has one spelling whatever its zone
//     or monotonic reading. Years outside 0000-9999 are an error.
//   - S, K are JSON strings: '"' and '\' as \" and \\; U+0008, U+0009,
//     U+000A, U+000C, U+000D as \b \t \n \f \r; other U+0000-U+001F as
//     \u00xx (lowercase hex); every other character, '/', DEL, '<', '>',
//     '&', U+2028 and U+2029 included, as its UTF-8 bytes.
//   - A string that is not valid UTF-8 (anywhere: keys, groups, details) is
//     an error, ErrInvalidRecord. encoding/json would silently write U+FFFD
//     instead, giving two different records one hash.
//
// This is byte for byte what encoding/json writes for the record, except
// that encoding/json escapes '<', '>', '&', U+2028 and U+2029 and trims
// the time's fractional zeros (TestCanonicalRecordMatchesEncodingJSON). A
// field added to escrow.AuditRecord must be added to the encoder, which
// TestCanonicalRecordCoversEveryField enforces. An omitempty field added
// that way changes no existing record's hash, since it is empty in them.
//
// # Merkle tree
//
// RFC 6962 section 2.1, the leaf inputs being the 32-byte record hashes of
// the period's records in strictly increasing ID order (IDs are ULIDs, so
// that is time order): the root of no leaves is SHA-256 of nothing; a leaf
// is SHA-256(0x00 ‖ record hash); a node is SHA-256(0x01 ‖ left ‖ right);
// n > 1 leaves split at the largest power of two below n.
//
// # Digest, canonical encoding (version 1)
//
// A digest covers the period [From, To). Integers are big-endian; strings
// are a 2-byte length and UTF-8 bytes:
//
//	size           field
//	1              version, 0x01
//	8              seq: 0 for the first digest of a chain, then +1 each (below 2^63)
//	8, 4           from: seconds since 1970-01-01T00:00:00Z (two's complement), nanoseconds
//	8, 4           to: likewise; from < to
//	8              count: the number of leaves
//	2+n            firstId: the first leaf's record ID, "" when count is 0
//	2+n            lastId: the last leaf's record ID, "" when count is 0
//	32             root: the Merkle root of the leaves
//	32             prevHash: the chain hash of the previous digest; zeros for seq 0
//	count×(2+n+32) leaves: record ID, record hash; IDs strictly increasing
//
// A period without records is sealed too (count 0, the root of no leaves),
// so that deleting an hour of records and its digest leaves a gap in the
// chain. Each digest's from is the previous digest's to.
//
// # Signatures and the chain
//
// Both algorithms sign the same message, "escrow/audit/digest/v1\n" ‖
// canonical encoding: Ed25519 (RFC 8032, pure) and ML-DSA-65 (FIPS 204,
// deterministic variant, empty context string). Both must verify.
//
// The chain hash of a signed digest, which the next digest's prevHash
// holds, is
//
//	SHA-256("escrow/audit/digest-chain/v1\n" ‖ canonical encoding ‖
//	        len(keyId) (1 byte) ‖ keyId ‖ Ed25519 signature (64 bytes) ‖
//	        ML-DSA-65 signature (3309 bytes))
//
// # Keys
//
// A signer is a 32-byte seed. The Ed25519 seed is HKDF-SHA256(seed, no
// salt, info "escrow/audit/signer/v1 ed25519", 32 bytes) and the ML-DSA-65
// seed (FIPS 204's ξ) HKDF-SHA256(seed, no salt, info
// "escrow/audit/signer/v1 ml-dsa-65", 32 bytes). The key id is the first 16
// bytes, as 32 lowercase hex digits, of SHA-256("escrow/audit/key/v1\n" ‖
// Ed25519 public key (32 bytes) ‖ ML-DSA-65 public key (1952 bytes)).
//
// The public key file (PublicKeys.Marshal) is one line and a newline:
//
//	{"keyId":K,"ed25519":B,"mldsa65":B}
//
// # Digest file (SignedDigest.Marshal)
//
// One line of JSON and a newline, fields in this order:
//
//	{"version":1,"seq":N,"from":T,"to":T,"count":N,"firstId":S,"lastId":S,
//	"root":H,"prevHash":H,"leaves":[{"id":S,"hash":H},…],"keyId":K,
//	"ed25519Signature":B,"mldsa65Signature":B}
//
// N is a decimal integer, T a time as in records, H 64 lowercase hex
// digits, K the key id, B standard base64 with padding (RFC 4648 section
// 4), S a string as encoding/json writes it. ParseSignedDigest accepts only
// exactly these bytes for the value they hold (Marshal of the parsed value
// must give the input back), so there is no second spelling of a digest:
// no whitespace, unknown, missing or repeated field, other number or time
// format, uppercase hex, or unpadded base64 (testdata/hostile holds such
// files). The file adds nothing the canonical encoding does not hold.
//
// # Verification and its limits
//
// Verify checks each digest (consistency, key id, both signatures), the
// chain (Seq +1, prevHash, from = previous to) and each record against the
// leaf of its ID in the digest of its period, and reports problems of kind
// altered, removed, inserted, reordered, chain, signature and digest.
//
// Offline, deleting the newest digests together with their records cannot
// be told from records not yet sealed: Report.Unsealed and FirstUnsealed
// say how long records have waited, which the caller compares with the
// sealing schedule; the production store anchors digests beyond deletion
// (S3 Object Lock). Verify takes one key pair: a chain that changed keys is
// verified one key's stretch at a time.
package auditlog
