package auditlog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
)

// mth is RFC 6962 section 2.1's Merkle Tree Hash, as written there.
func mth(data [][]byte) [32]byte {
	switch n := len(data); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0x00}, data[0]...))
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		l, r := mth(data[:k]), mth(data[k:])
		return sha256.Sum256(append(append([]byte{0x01}, l[:]...), r[:]...))
	}
}

func TestMerkleRootMatchesRecursiveDefinition(t *testing.T) {
	t.Parallel()
	for n := 0; n <= 70; n++ {
		hashes := make([][32]byte, n)
		data := make([][]byte, n)
		for i := range hashes {
			hashes[i] = sha256.Sum256(fmt.Appendf(nil, "record %d", i))
			data[i] = hashes[i][:]
		}
		if got, want := MerkleRoot(hashes), mth(data); got != want {
			t.Errorf("%d leaves: root %x, RFC 6962 gives %x", n, got, want)
		}
	}
}

// TestMerkleRootCTVectors checks the tree against the Certificate
// Transparency reference vectors (RFC 6962 test data, as published in
// transparency-dev/merkle testonly), whose leaves are arbitrary byte strings.
func TestMerkleRootCTVectors(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	for size, want := range roots {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			nodes := make([][32]byte, size)
			for i := range nodes {
				d, err := hex.DecodeString(leaves[i])
				if err != nil {
					t.Fatal(err)
				}
				nodes[i] = sha256.Sum256(append([]byte{0x00}, d...))
			}
			if got := rootOfLeafHashes(nodes); hex.EncodeToString(got[:]) != want {
				t.Errorf("root of %d leaves = %x, want %s", size, got, want)
			}
		})
	}
}

func TestLeafHash(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte("x"))
	if got, want := LeafHash(h), sha256.Sum256(append([]byte{0}, h[:]...)); got != want {
		t.Fatalf("LeafHash = %x, want %x", got, want)
	}
	if got := MerkleRoot([][32]byte{h}); got != LeafHash(h) {
		t.Fatalf("root of one leaf is not its leaf hash")
	}
}
