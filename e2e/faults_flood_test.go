package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// soakEnv selects the long variants of the fault tests (.ci/run sets it).
const soakEnv = "APISESSIONS_SOAK"

// countingEmitter counts records by kind and keeps none, so the heap holds only the engine.
type countingEmitter struct {
	requests, sessions atomic.Int64
}

func (c *countingEmitter) Emit(rec record.Record) {
	switch rec.(type) {
	case *record.Request:
		c.requests.Add(1)
	case *record.Session:
		c.sessions.Add(1)
	}
}

// heapInuse is the live heap after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestFaultFloodOfSessionKeys sends distinct session keys (100k; 1M with APISESSIONS_SOAK=1)
// through the engine in-process and checks that memory stays within what the configuration
// bounds: sessions.max_live_parts parts and sessions.lookup_cache_mb of lookups.
func TestFaultFloodOfSessionKeys(t *testing.T) {
	const (
		maxLiveParts  = 10_000
		lookupCacheMB = 8
		// perPartBudget is the most one live part may cost; measured about 0.5 KiB (see
		// docs/reliability.md), with room for allocator slack and the race detector.
		perPartBudget = 4 << 10
		// slack covers the runtime, the pools and GC timing.
		slack = 16 << 20
	)
	keys := 100_000
	if os.Getenv(soakEnv) != "" {
		keys = 1_000_000
	}
	cfg := config.Default()
	cfg.Sessions.MaxLiveParts = maxLiveParts
	cfg.Sessions.LookupCacheMB = lookupCacheMB
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	em := &countingEmitter{}
	eng, err := sessions.New(cfg, sessions.Settings{Emitter: em, HashKey: []byte("flood-test-hash-key-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	start := time.Now().UTC()
	x := traffic.Exchange{
		Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/api/items",
		SourceAddress: "192.0.2.1:1000", ResponseSeen: true, Status: 200,
	}
	observe := func(i int) {
		x.RequestID = "flood-" + strconv.Itoa(i)
		x.Start, x.End = start, start
		x.RequestHeaders = append(x.RequestHeaders[:0],
			traffic.Header{Name: "user-agent", Value: "flood/1"},
			traffic.Header{Name: "x-session-id", Value: fmt.Sprintf("key-%08d", i)})
		x.ResponseHeaders = x.ResponseHeaders[:0]
		eng.Observe(&x)
	}

	base := heapInuse()
	baseRSS := rssKiB("self")
	for i := range maxLiveParts {
		observe(i)
	}
	full := heapInuse()
	perPart := float64(full-min(base, full)) / maxLiveParts
	began := time.Now()
	for i := maxLiveParts; i < keys; i++ {
		observe(i)
	}
	took := time.Since(began)
	end := heapInuse()
	endRSS := rssKiB("self")
	st := eng.Stats()

	bound := base + maxLiveParts*perPartBudget + lookupCacheMB<<20 + slack
	t.Logf("%d distinct keys in %s (%.1f µs each): heap in use %.1f MiB before, %.1f MiB with the table full, %.1f MiB after "+
		"(bound %.1f MiB); %.0f B per live part; RSS %d → %d KiB; live parts %d, request records %d, session records %d",
		keys, took.Round(time.Millisecond), float64(took.Microseconds())/float64(keys-maxLiveParts),
		mib(base), mib(full), mib(end), mib(bound), perPart, baseRSS, endRSS, st.LiveParts, em.requests.Load(), em.sessions.Load())

	if st.LiveParts > maxLiveParts {
		t.Errorf("%d live parts, want at most max_live_parts %d", st.LiveParts, maxLiveParts)
	}
	if end > bound {
		t.Errorf("heap in use %.1f MiB after %d keys exceeds the bound %.1f MiB derived from the configuration", mib(end), keys, mib(bound))
	}
	// The table was full before the flood proper: the flood must not grow the heap by more
	// than a tenth of the table plus slack, whatever the number of keys.
	if growth := int64(end) - int64(full); growth > int64(full-min(base, full))/10+slack {
		t.Errorf("the heap grew by %.1f MiB between %d and %d keys; memory follows the key count", float64(growth)/(1<<20), maxLiveParts, keys)
	}
	if got := em.requests.Load(); got != int64(keys) {
		t.Errorf("%d request records, want %d", got, keys)
	}
	// Every part pushed out of the full table ends with a final session record.
	if got, want := em.sessions.Load(), int64(keys-maxLiveParts); got < want {
		t.Errorf("%d session records, want at least %d (one per evicted part)", got, want)
	}
}

func mib[N uint64 | int64](n N) float64 { return float64(n) / (1 << 20) }
