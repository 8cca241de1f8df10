package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/store"
)

// soakEnv selects the long variants of the fault tests (.ci/run sets it).
const soakEnv = "APISESSIONS_SOAK"

// countingEmitter counts records by kind and hands them on to next, when set.
type countingEmitter struct {
	requests, sessions atomic.Int64
	next               atomic.Pointer[sinks.Pipeline]
}

func (c *countingEmitter) Emit(rec record.Record) {
	switch rec.(type) {
	case *record.Request:
		c.requests.Add(1)
	case *record.Session:
		c.sessions.Add(1)
	}
	if p := c.next.Load(); p != nil {
		p.Emit(rec)
	}
}

// liveHeap is the heap the live objects take after a full collection. The heap in use would
// also count the free room in spans that the delivery path's churn (encoding, the store's
// driver) leaves partly used; the bounds are about what the engine keeps.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapInuse is the heap in use (spans holding any object), after liveHeap's collections.
func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Settings of the flood test and the memory they allow.
const (
	floodLiveParts = 10_000
	floodLookupMB  = 8
	// floodPartBudget is the most one live part may cost; measured about 0.5 KiB (see
	// docs/reliability.md), with room for allocator slack and the race detector.
	floodPartBudget = 4 << 10
	// floodSlack covers the runtime, the pools and GC timing.
	floodSlack = 16 << 20
)

// TestFaultFloodOfSessionKeys sends distinct session keys (100k; 1M with APISESSIONS_SOAK=1)
// through the engine in-process, its records going to the store through the sinks pipeline as
// in the binary, one second after an attack. Memory must stay within what the configuration
// bounds (sessions.max_live_parts parts and sessions.lookup_cache_mb of lookups), and the
// attack's request record and its session's part must be in the store afterwards,
// whatever the flood made the store's queue and spool drop.
func TestFaultFloodOfSessionKeys(t *testing.T) {
	keys, spoolMB := 100_000, 2
	if os.Getenv(soakEnv) != "" {
		keys, spoolMB = 1_000_000, config.DefaultSpoolMaxMB
	}
	eng, em := floodEngine(t)
	defer eng.Close()
	start := time.Now().UTC()
	observe := floodObserver(eng, start)

	var m floodMemory
	m.base, m.baseRSS = liveHeap(), rssKiB("self")
	for i := range floodLiveParts {
		observe(i)
	}
	m.full = liveHeap()
	// Records go to the store from here on. With the part table full, an attack, and a second
	// later the flood: it pushes the attacker's part out of the table (its final record) while
	// the store is far behind.
	st, p := startStore(t, spoolMB)
	defer func() {
		// After a failure; otherwise both are gone before the last heap measure.
		if p != nil {
			p.Shutdown(context.Background()) // closes its sink, the store
		}
	}()
	em.next.Store(p)
	eng.Observe(attackAt(start))
	time.Sleep(time.Second)
	began := time.Now()
	for i := floodLiveParts; i < keys; i++ {
		observe(i)
	}
	took := time.Since(began)
	out := drained(t, p)
	t.Logf("store sink: caught up %s after the flood began; accepted %d, delivered %d, dropped %d (evidence %d) by reason %v",
		time.Since(began).Round(time.Second), out.Accepted, out.Delivered, out.Dropped, out.EvidenceDropped, dropReasons(out.Drops))
	attackStored(t, st)
	// The pipeline and the store go before the last measure: their queue, spool buffers and
	// caches are bounded by their own settings, not by the engine's.
	em.next.Store(nil)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("shut the pipeline down: %v", err)
	}
	if err := st.Close(context.Background()); err != nil {
		t.Errorf("close the store: %v", err)
	}
	st, p = nil, nil
	m.end, m.endInuse, m.endRSS = liveHeap(), heapInuse(), rssKiB("self")
	t.Logf("%d distinct keys in %s (%.1f µs each); request records %d, session records %d", keys, took.Round(time.Millisecond),
		float64(took.Microseconds())/float64(keys-floodLiveParts), em.requests.Load(), em.sessions.Load())
	m.check(t, keys, eng.Stats())
	if got := em.requests.Load(); got != int64(keys)+1 {
		t.Errorf("%d request records, want %d and the attack's", got, keys)
	}
	// Every part pushed out of the full table ends with a final session record.
	if got, want := em.sessions.Load(), int64(keys-floodLiveParts); got < want {
		t.Errorf("%d session records, want at least %d (one per evicted part)", got, want)
	}
}

// floodEngine is an engine with a small part table that reads attack verdicts from the
// x-waf-attack response header, emitting to a countingEmitter.
func floodEngine(t *testing.T) (*sessions.Engine, *countingEmitter) {
	t.Helper()
	cfg := config.Default()
	cfg.Sessions.MaxLiveParts = floodLiveParts
	cfg.Sessions.LookupCacheMB = floodLookupMB
	cfg.Attacks.ResponseHeader = "x-waf-attack"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	em := &countingEmitter{}
	eng, err := sessions.New(cfg, sessions.Settings{Emitter: em, HashKey: []byte("flood-test-hash-key-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return eng, em
}

// floodObserver returns a function that observes the request of key i, at start.
func floodObserver(eng *sessions.Engine, start time.Time) func(i int) {
	x := traffic.Exchange{
		Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/api/items",
		SourceAddress: "192.0.2.1:1000", ResponseSeen: true, Status: 200,
	}
	return func(i int) {
		x.RequestID = "flood-" + strconv.Itoa(i)
		x.Start, x.End = start, start
		x.RequestHeaders = append(x.RequestHeaders[:0],
			traffic.Header{Name: "user-agent", Value: "flood/1"},
			traffic.Header{Name: "x-session-id", Value: fmt.Sprintf("key-%08d", i)})
		x.ResponseHeaders = x.ResponseHeaders[:0]
		eng.Observe(&x)
	}
}

// attackAt is a request a WAF in front flagged as SQL injection, of the session "attacker".
func attackAt(at time.Time) *traffic.Exchange {
	return &traffic.Exchange{
		RequestID: "attack-1", Method: "GET", Scheme: "https", Host: "api.example.com",
		Path: "/api/items?id=1%27%20OR%201=1", SourceAddress: "198.51.100.9:4444",
		Start: at, End: at, ResponseSeen: true, Status: 403,
		RequestHeaders:  []traffic.Header{{Name: "user-agent", Value: "sqlmap/1.8"}, {Name: "x-session-id", Value: "attacker"}},
		ResponseHeaders: []traffic.Header{{Name: "x-waf-attack", Value: "sqli"}},
	}
}

// floodMemory is what the flood test measures: the live heap before, with the part table full
// and at the end, the heap in use at the end, and the resident set.
type floodMemory struct {
	base, full, end, endInuse uint64
	baseRSS, endRSS           int64
}

// check logs the measures and holds them to the bounds the configuration sets.
func (m floodMemory) check(t *testing.T, keys int, es sessions.Stats) {
	t.Helper()
	bound := m.base + floodLiveParts*floodPartBudget + floodLookupMB<<20 + floodSlack
	perPart := float64(m.full-min(m.base, m.full)) / floodLiveParts
	t.Logf("live heap %.1f MiB before, %.1f MiB with the table full, %.1f MiB after (bound %.1f MiB; heap in use %.1f MiB); "+
		"%.0f B per live part; RSS %d → %d KiB; live parts %d",
		mib(m.base), mib(m.full), mib(m.end), mib(bound), mib(m.endInuse), perPart, m.baseRSS, m.endRSS, es.LiveParts)
	if es.LiveParts > floodLiveParts {
		t.Errorf("%d live parts, want at most max_live_parts %d", es.LiveParts, floodLiveParts)
	}
	if m.end > bound {
		t.Errorf("live heap %.1f MiB after %d keys exceeds the bound %.1f MiB derived from the configuration", mib(m.end), keys, mib(bound))
	}
	// The table was full before the flood proper: the flood must not grow the heap by more
	// than a tenth of the table plus slack, whatever the number of keys.
	if growth := int64(m.end) - int64(m.full); growth > int64(m.full-min(m.base, m.full))/10+floodSlack {
		t.Errorf("the heap grew by %.1f MiB between %d and %d keys; memory follows the key count", float64(growth)/(1<<20), floodLiveParts, keys)
	}
}

// startStore opens a store and the pipeline that feeds it, configured as the default store
// sink but for the spool's size. Shutting the pipeline down closes the store.
func startStore(t *testing.T, spoolMB int) (*store.Store, *sinks.Pipeline) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, NoRetentionJob: true})
	if err != nil {
		t.Fatal(err)
	}
	sc := config.DefaultSink(store.Type)
	sc.Name = "store"
	sc.Spool.MaxMB = spoolMB
	out, err := sinks.NewOutput(sc, dir, st, nil)
	if err != nil {
		st.Close(context.Background())
		t.Fatal(err)
	}
	return st, sinks.NewPipeline(nil, []sinks.Output{out})
}

// drained waits until the store has taken every record its queue and spool hold, and returns
// its counters.
func drained(t *testing.T, p *sinks.Pipeline) sinks.OutputStats {
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for {
		out := p.Stats()[0]
		if out.Queued == 0 && out.SpoolRecords == 0 && out.Delivered+out.Dropped+out.Failed >= out.Accepted {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store has not caught up after 8 minutes: %+v", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// attackStored checks that the store holds the attack's request record and the final record
// of its session, which the flood pushed out of the part table.
func attackStored(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	found, err := st.Request(ctx, "attack-1")
	if err != nil {
		t.Fatalf("the attack's request record is not in the store after the flood: %v", err)
	}
	var req record.Request
	if err := json.Unmarshal(found.Request, &req); err != nil || !req.Malicious {
		t.Errorf("stored attack record %s: malicious %v, %v; want malicious", found.Request, req.Malicious, err)
	}
	v, err := st.Part(ctx, found.Session, found.Part, store.PartQuery{})
	if err != nil {
		t.Fatalf("the attack's session is not in the store: %v", err)
	}
	// The store builds a part from its request records; the engine's final record (evicted)
	// goes to the live feeds, and the store derives the end from time alone.
	if s := v.Session; s.Malicious != 1 || s.Requests != 1 || len(v.Requests) != 1 {
		t.Errorf("the attack's session after the flood: malicious %d, %d requests (%d rows); want the one malicious request",
			s.Malicious, s.Requests, len(v.Requests))
	}
}

// dropReasons names the non-zero drop counts.
func dropReasons(d sinks.DropCounts) map[string]uint64 {
	out := map[string]uint64{}
	for r, n := range d {
		if n > 0 {
			out[sinks.DropReason(r).String()] = n
		}
	}
	return out
}

func mib[N uint64 | int64](n N) float64 { return float64(n) / (1 << 20) }
