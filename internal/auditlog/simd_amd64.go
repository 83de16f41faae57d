package auditlog

// circl's ML-DSA-65 runs AVX2 assembly that returns without VZEROUPPER.
// Until something clears the upper halves of the YMM registers, every
// legacy-SSE instruction on that thread pays an AVX-SSE transition penalty,
// and SHA-256 (which Go runs with the SSE-encoded SHA-NI instructions) was
// measured 90 times slower: Verify fell from ~400,000 to ~30,000 records/s.
// So every ML-DSA call is followed, on the same OS thread, by VZEROUPPER.

// haveAVX reports whether the CPU and OS support AVX, so that VZEROUPPER
// is a valid instruction.
var haveAVX = hasAVX()

func hasAVX() bool

func vzeroupper()

func clearUpperYMM() {
	if haveAVX {
		vzeroupper()
	}
}
