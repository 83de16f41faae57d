// Package qlock is QuantumLock: end-to-end, post-quantum encryption of a
// secret's value to the members allowed to read it, each holding an X-Wing
// (ML-KEM-768 + X25519) key pair sealed under their own password.
//
// Sealing and opening happen in the client (the CLI). The server stores only
// public keys, sealed private keys and locked values, and may Lock (for
// rotation it locks a new password to the members), but it can never open
// anything: a full compromise of the server, its database and its KMS key
// yields sealed keys and ciphertexts. A sealed key is then only as strong as
// its password against offline guessing, each guess costing one Argon2id at
// the sealed parameters (DefaultKDF: t=3, 64 MiB, p=4), so the CLI must
// insist on strong passwords.
//
// This package must never send, log or put into an error a password, a seed,
// a data key or a plaintext; never encrypt to anything but a full X-Wing key
// (a classical key is refused, not used); and never tell a wrong password
// from a modified sealed key. Package qlockfmt holds all parsing and framing
// and no crypto, so the server can check what a client sends without
// linking this package.
//
// # Sharing and revoking
//
// A locked value has no "add a member" operation. Callers share and revoke
// by Open, then Lock to the new member list under a new secret version: the
// data key is fresh and everything (AEAD associated data, HPKE info) is
// bound to the new version, so a revoked member's wrap and data key open
// nothing new, and an old blob cannot be replayed as the new version.
//
// Lock does not authenticate its author: anyone who has the members' public
// keys (the server included, by design) can lock a value to them. What a
// member gets from Open is that the value was made for this secret id,
// version, recipient list and member, and was not modified since.
//
// # Encodings (version 1)
//
// All integers are big-endian. Every encoding starts with a 16-byte ASCII
// label and a version byte (1). Sizes are in qlockfmt.
//
// Public key (1233 bytes), what the server stores per user and Lock takes:
//
//	off   len   field
//	0     16    "escrow/qlock/pub"
//	16    1     version 0x01 (also the algorithm: X-Wing)
//	17    1216  X-Wing public key: ML-KEM-768 encapsulation key (1184) || X25519 point (32)
//
// Its fingerprint is SHA-256 over all 1233 bytes, truncated to 16 bytes,
// written as 8 colon-separated groups of 4 lowercase hex digits.
//
// Sealed private key (1347 bytes):
//
//	off   len   field
//	0     16    "escrow/qlock/key"
//	16    1     version 0x01
//	17    4     Argon2id time (passes), 1..100
//	21    4     Argon2id memory in KiB, 8192..4194304 (8 MiB..4 GiB)
//	25    1     Argon2id threads, >= 1
//	26    16    salt (random)
//	42    24    XChaCha20-Poly1305 nonce (random)
//	66    1233  public key, as above
//	1299  48    XChaCha20-Poly1305(key, nonce, seed (32), aad = bytes 0..1299) || tag (16)
//
// key = Argon2id(password, salt, time, memory, threads, 32 bytes). The seed
// is the X-Wing seed (draft-connolly-cfrg-xwing-kem); opening re-derives the
// key pair from it and requires its public key to equal bytes 66..1299.
// Parsing refuses any other length, label or version, and parameters outside
// the bounds (ErrMalformed) before running Argon2id.
//
// Locked value (variable length):
//
//	len   field
//	16    "escrow/qlock/val"
//	1     version 0x01
//	2     n = length of secret id, 1..1024
//	n     secret id (UTF-8)
//	4     secret version, 1..2^31-1
//	2     r = number of recipients, 1..1024
//	r ×   recipient:
//	  2     s = length of subject, 1..1024
//	  s     subject (UTF-8; unique within the value)
//	  16    fingerprint of the recipient's public key
//	  1120  HPKE encapsulated key (X-Wing ciphertext)
//	  48    HPKE ciphertext of the data key (32) || tag (16)
//	12    AES-256-GCM nonce (random)
//	rest  AES-256-GCM(data key, nonce, plaintext, aad = every byte before the nonce) || tag (16)
//
// Each recipient adds 1186 bytes plus its subject, so a value for 300
// members is about 360 KB: callers storing values in DynamoDB (400 KB items)
// should cap membership well below qlockfmt.MaxRecipients.
//
// The data key is 32 random bytes, fresh for every Lock. The associated data
// of the value's AEAD is the whole header above: label, version byte, secret
// id and version, and the recipient table. Each wrap is RFC 9180 HPKE, Base
// mode, KEM X-Wing (0x647a), HKDF-SHA256, AES-256-GCM, with
//
//	info = "escrow/qlock/wrap" || 0x01 || u16 len(secret id) || secret id ||
//	       u32 secret version || u16 len(subject) || subject
//	aad  = the recipient's 16-byte fingerprint
//
// so a wrap opens only for the member, secret id and version it was made
// for. Open checks the stored secret id and version against the ones asked
// for (ErrTampered), finds the subject (ErrNotRecipient), checks the
// fingerprint against its key (ErrNotRecipient), then unwraps and decrypts
// (ErrTampered).
package qlock
