package auditlog

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// benchLog is a million generated records, 1,000 an hour, and their hourly
// digests. It lives in memory only; nothing generated is written anywhere.
const (
	benchRecords = 1_000_000
	benchPerHour = 1_000
)

var benchLog struct {
	once    sync.Once
	ids     []string
	times   []time.Time
	digests []*SignedDigest
	err     error
}

func loadBenchLog(b *testing.B) {
	b.Helper()
	benchLog.once.Do(func() {
		benchLog.ids = make([]string, benchRecords)
		benchLog.times = make([]time.Time, benchRecords)
		step := time.Hour / benchPerHour
		for i := range benchRecords {
			at := t0.Add(time.Duration(i) * step)
			benchLog.ids[i], benchLog.times[i] = testID(at, uint64(i)), at
		}
		benchLog.digests, benchLog.err = sealBenchLog()
	})
	if benchLog.err != nil {
		b.Fatal(benchLog.err)
	}
}

// benchRecordsSeq yields the generated records, reusing one AuditRecord as
// a store adapter decoding rows would.
func benchRecordsSeq(yield func(*escrow.AuditRecord, error) bool) {
	var rec escrow.AuditRecord
	for i := range benchLog.ids {
		fillRecord(&rec, benchLog.ids[i], i, benchLog.times[i])
		if !yield(&rec, nil) {
			return
		}
	}
}

func sealBenchLog() ([]*SignedDigest, error) {
	s, err := NewSealer(testSigner, time.Hour, nil, t0)
	if err != nil {
		return nil, err
	}
	var out []*SignedDigest
	for rec := range benchRecordsSeq {
		sealed, err := s.Add(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, sealed...)
	}
	sealed, err := s.Advance(t0.Add(benchRecords / benchPerHour * time.Hour))
	return append(out, sealed...), err
}

// sha256Baseline times SHA-256 over one generated record's canonical bytes
// (what hashing a record cannot avoid), so the benchmarks can print a
// machine-independent ratio. Call it outside the timed loop.
func sha256Baseline(b *testing.B) time.Duration {
	var rec escrow.AuditRecord
	fillRecord(&rec, benchLog.ids[0], 1, benchLog.times[0])
	canon, err := CanonicalRecord(&rec)
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	start := time.Now()
	var sink [32]byte
	for range n {
		sink = sha256.Sum256(canon)
	}
	_ = sink
	return time.Since(start) / n
}

// reportRecords reports records/s and x-sha256 (time per record over the
// smaller of two SHA-256 baselines, one from before the loop).
func reportRecords(b *testing.B, before time.Duration) {
	perRecord := b.Elapsed() / time.Duration(b.N*benchRecords)
	b.ReportMetric(float64(b.N*benchRecords)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(perRecord)/float64(min(before, sha256Baseline(b))), "x-sha256")
}

// BenchmarkVerify verifies a million records against 1,000 hourly digests
// (both signatures of each, the chain, every Merkle root and record hash).
// records/s should stay at or above 200,000; x-sha256 is the time per
// record over one SHA-256 of a record's canonical JSON.
func BenchmarkVerify(b *testing.B) {
	loadBenchLog(b)
	keys := testSigner.PublicKeys()
	base := sha256Baseline(b)
	for b.Loop() {
		r, err := Verify(b.Context(), benchRecordsSeq, benchLog.digests, keys)
		if err != nil || !r.Clean() || r.Records != benchRecords {
			b.Fatalf("Verify = %d records, %d problems, %v", r.Records, len(r.Problems), err)
		}
	}
	b.StopTimer()
	reportRecords(b, base)
}

// BenchmarkSeal seals a million records into 1,000 hourly digests with a
// Sealer, as the stream consumer does.
func BenchmarkSeal(b *testing.B) {
	loadBenchLog(b)
	base := sha256Baseline(b)
	for b.Loop() {
		ds, err := sealBenchLog()
		if err != nil || len(ds) != benchRecords/benchPerHour {
			b.Fatalf("sealed %d digests, %v", len(ds), err)
		}
	}
	b.StopTimer()
	reportRecords(b, base)
}

func BenchmarkRecordHash(b *testing.B) {
	rec := newRecord(7, t0)
	var h recordHasher
	for b.Loop() {
		if _, err := h.hash(rec); err != nil {
			b.Fatal(err)
		}
	}
}
