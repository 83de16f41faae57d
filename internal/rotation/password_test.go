package rotation

import (
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestGenerateMeetsPolicy(t *testing.T) {
	t.Parallel()
	cases := []escrow.PasswordPolicy{
		{},
		{Length: 8},
		{Length: 128, Classes: []string{"digit"}},
		{Length: 12, Classes: []string{"lower", "symbol"}, Symbols: "!@", Exclude: "lI"},
		{Length: 16, Exclude: "0O1lI"},
	}
	for _, p := range cases {
		sets, n, err := p.Alphabets()
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		seen := map[string]bool{}
		for range 200 {
			pw, err := Generate(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(pw) != n {
				t.Fatalf("%+v: length %d, want %d", p, len(pw), n)
			}
			for _, set := range sets {
				if !strings.ContainsAny(pw, set) {
					t.Fatalf("%+v: %q lacks a character of %q", p, pw, set)
				}
			}
			all := strings.Join(sets, "")
			for _, c := range pw {
				if !strings.ContainsRune(all, c) {
					t.Fatalf("%+v: %q holds %q, outside the policy", p, pw, c)
				}
				if strings.ContainsRune(p.Exclude, c) {
					t.Fatalf("%+v: %q holds excluded %q", p, pw, c)
				}
			}
			seen[pw] = true
		}
		if len(seen) < 200 {
			t.Fatalf("%+v: %d distinct passwords in 200", p, len(seen))
		}
	}
}

// Every position takes every class: the guaranteed characters are
// shuffled, not always first.
func TestGenerateShufflesGuaranteedCharacters(t *testing.T) {
	t.Parallel()
	p := escrow.PasswordPolicy{Length: 8, Classes: []string{"lower", "digit"}}
	digitFirst, lowerFirst := 0, 0
	for range 400 {
		pw, err := Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		if pw[0] >= '0' && pw[0] <= '9' {
			digitFirst++
		} else {
			lowerFirst++
		}
	}
	if digitFirst < 40 || lowerFirst < 40 {
		t.Fatalf("first character: %d digits, %d letters in 400; not shuffled", digitFirst, lowerFirst)
	}
}

func TestGenerateRefusesImpossiblePolicies(t *testing.T) {
	t.Parallel()
	for _, p := range []escrow.PasswordPolicy{
		{Length: 7},
		{Length: 129},
		{Classes: []string{"emoji"}},
		{Classes: []string{"digit", "digit"}},
		{Classes: []string{"digit"}, Exclude: "0123456789"},
		{Symbols: "a b"},
	} {
		if _, err := Generate(p); !errorsIsInvalid(err) {
			t.Errorf("%+v: err = %v, want invalid", p, err)
		}
	}
}

func errorsIsInvalid(err error) bool { return escrow.ErrorCode(err) == escrow.CodeInvalid }

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(escrow.PasswordPolicy{}); err != nil {
			b.Fatal(err)
		}
	}
}
