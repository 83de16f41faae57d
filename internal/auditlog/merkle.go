package auditlog

import "crypto/sha256"

// LeafHash returns the RFC 6962 leaf hash of a record hash:
// SHA-256(0x00 ‖ recordHash).
func LeafHash(recordHash [32]byte) [32]byte {
	var b [1 + 32]byte
	b[0] = 0x00
	copy(b[1:], recordHash[:])
	return sha256.Sum256(b[:])
}

// nodeHash is RFC 6962's interior node: SHA-256(0x01 ‖ left ‖ right).
func nodeHash(left, right *[32]byte) [32]byte {
	var b [1 + 32 + 32]byte
	b[0] = 0x01
	copy(b[1:33], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

// MerkleRoot returns the RFC 6962 Merkle Tree Hash whose leaf inputs are
// recordHashes, in order: SHA-256("") for none, LeafHash for one, and for
// n > 1 the node hash of the trees over the first k and the other n-k,
// where k is the largest power of two less than n.
func MerkleRoot(recordHashes [][32]byte) [32]byte {
	nodes := make([][32]byte, len(recordHashes))
	for i := range recordHashes {
		nodes[i] = LeafHash(recordHashes[i])
	}
	return rootOfLeafHashes(nodes)
}

// leavesRoot is MerkleRoot over the hashes of leaves.
func leavesRoot(leaves []Leaf) [32]byte {
	nodes := make([][32]byte, len(leaves))
	for i := range leaves {
		nodes[i] = LeafHash(leaves[i].Hash)
	}
	return rootOfLeafHashes(nodes)
}

// rootOfLeafHashes reduces leaf hashes to the root in place, a level at a
// time, lifting a level's odd last node unchanged. That equals RFC 6962's
// split at the largest power of two below n (the tree is filled from the
// left), without recursion; TestMerkleRootMatchesRecursiveDefinition checks
// it against the RFC's definition.
func rootOfLeafHashes(nodes [][32]byte) [32]byte {
	if len(nodes) == 0 {
		return sha256.Sum256(nil)
	}
	for n := len(nodes); n > 1; n = (n + 1) / 2 {
		for i := 0; i+1 < n; i += 2 {
			nodes[i/2] = nodeHash(&nodes[i], &nodes[i+1])
		}
		if n%2 == 1 {
			nodes[n/2] = nodes[n-1]
		}
	}
	return nodes[0]
}
