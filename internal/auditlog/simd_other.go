//go:build !amd64

package auditlog

// clearUpperYMM is needed only on amd64; see simd_amd64.go.
func clearUpperYMM() {}
