package rotation

import (
	"crypto/rand"
	"math/big"
	"strings"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Generate returns a new password under p from crypto/rand: every class
// the policy names at least once, the rest drawn from all of them, then
// shuffled (Fisher-Yates) so the guaranteed characters sit anywhere.
func Generate(p escrow.PasswordPolicy) (string, error) {
	sets, n, err := p.Alphabets()
	if err != nil {
		return "", err
	}
	all := strings.Join(sets, "")
	out := make([]byte, 0, n)
	for _, set := range sets {
		c, err := pick(set)
		if err != nil {
			return "", err
		}
		out = append(out, c)
	}
	for len(out) < n {
		c, err := pick(all)
		if err != nil {
			return "", err
		}
		out = append(out, c)
	}
	for i := len(out) - 1; i > 0; i-- {
		j, err := randInt(i + 1)
		if err != nil {
			return "", err
		}
		out[i], out[j] = out[j], out[i]
	}
	return string(out), nil
}

func pick(set string) (byte, error) {
	i, err := randInt(len(set))
	if err != nil {
		return 0, err
	}
	return set[i], nil
}

// randInt is uniform in [0, n): rand.Int rejects the biased tail.
func randInt(n int) (int, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0, escrow.Wrap(escrow.CodeInternal, err, "generate password")
	}
	return int(v.Int64()), nil
}
