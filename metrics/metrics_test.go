package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/state"
)

type fakeExtproc struct{ s extproc.Stats }

func (f *fakeExtproc) Stats() extproc.Stats { return f.s }

type fakeEngine struct{ s sessions.Stats }

func (f *fakeEngine) Stats() sessions.Stats { return f.s }

type fakeSinks struct{ s []sinks.OutputStats }

func (f *fakeSinks) Stats() []sinks.OutputStats { return f.s }

type fakeState struct{ s state.Stats }

func (f fakeState) Stats() state.Stats { return f.s }

type fakeProtect struct{ s protect.Stats }

func (f fakeProtect) Stats() protect.Stats {
	if f.s.Rules == nil {
		return protect.Stats{Rules: []protect.RuleStats{{Rule: "manual", Action: "block"}}}
	}
	return f.s
}

// fakeProcessor records the calls the timing wrapper forwards.
type fakeProcessor struct {
	observed, peeked int
}

func (f *fakeProcessor) InScope(host string) bool { return host == "api.example.com" }
func (f *fakeProcessor) Needs() traffic.Needs     { return traffic.Needs{RequestBody: true} }
func (f *fakeProcessor) MaxBodyBytes() int        { return 123 }
func (f *fakeProcessor) WantBody(side traffic.Side, _ string) bool {
	return side == traffic.Request
}
func (f *fakeProcessor) Observe(*traffic.Exchange) {
	f.observed++
}
func (f *fakeProcessor) Peek(*traffic.Exchange) (string, string, record.Key) {
	f.peeked++
	return "s_1", "p_1", record.Key{Source: "param", Name: "token"}
}
func (f *fakeProcessor) PeekSession(x *traffic.Exchange) (string, record.Key) {
	session, _, key := f.Peek(x)
	return session, key
}

func TestCollectorReadsSourcesAtScrape(t *testing.T) {
	t.Parallel()
	ext := &fakeExtproc{s: extproc.Stats{
		StreamsOpen: 3, Streams: 10,
		Inline:         extproc.PhaseCounts{extproc.PhaseRequestHeaders: 7, extproc.PhaseRequestBody: 2},
		Observability:  extproc.PhaseCounts{extproc.PhaseRequestHeaders: 3, extproc.PhaseResponseBody: 5},
		Observed:       9,
		ProtocolErrors: 4, Panics: 1, HeadersDropped: 2000,
		StreamsRefused: 6, StreamIdleTimeouts: 8, BodyBytesHeld: 61440, BodiesOverBudget: 13,
		StreamsRefusedMemory: 5, BodiesOverMemory: 21, MemoryLevel: 2,
	}}
	eng := &fakeEngine{s: sessions.Stats{Observed: 9, Malicious: 2, LiveParts: 6, LookupCacheHits: 11, LookupCacheMisses: 4,
		ParseErrors: [extract.NumParseSources]uint64{extract.ParseJSONBody: 5, extract.ParseJWT: 2}}}
	snk := &fakeSinks{s: []sinks.OutputStats{{Name: "audit", Queued: 12, Accepted: 40, Delivered: 25, Dropped: 3, Failed: 1,
		Drops:   sinks.DropCounts{sinks.DropFloodKey: 1, sinks.DropSpoolFull: 2},
		Retried: 7, Spooled: 9, Replayed: 4, SpoolDropped: 2, EvidenceDropped: 1, Rejected: 1, SpoolRecords: 5, SpoolBytes: 4096}}}
	r := New(BuildInfo{Version: "v1.2.3", Commit: "abc"})
	if err := r.Watch(Sources{Extproc: ext, Engine: eng, Sinks: snk}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP apisessions_extproc_streams_open ext_proc streams being served now.
# TYPE apisessions_extproc_streams_open gauge
apisessions_extproc_streams_open 3
# HELP apisessions_extproc_protocol_errors_total Messages that break the ext_proc protocol: no request case, duplicate or out-of-order phases, headers with both value and raw_value.
# TYPE apisessions_extproc_protocol_errors_total counter
apisessions_extproc_protocol_errors_total 4
# HELP apisessions_sessions_active_parts Session parts held in memory now (bounded by sessions.max_live_parts).
# TYPE apisessions_sessions_active_parts gauge
apisessions_sessions_active_parts 6
# HELP apisessions_sink_records_queued Records waiting in the sink's queue now (queue depth).
# TYPE apisessions_sink_records_queued gauge
apisessions_sink_records_queued{sink="audit"} 12
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want),
		"apisessions_extproc_streams_open", "apisessions_extproc_protocol_errors_total",
		"apisessions_sessions_active_parts", "apisessions_sink_records_queued"); err != nil {
		t.Error(err)
	}

	// The collector reads at every scrape: a changed snapshot shows without re-registering.
	ext.s.StreamsOpen = 0
	snk.s[0].Delivered = 36
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{name: "open streams after they closed", metric: "apisessions_extproc_streams_open", want: 0},
		{name: "streams", metric: "apisessions_extproc_streams_total", want: 10},
		{name: "inline request headers", metric: "apisessions_extproc_messages_total", labels: map[string]string{"phase": "request_headers", "mode": "inline"}, want: 7},
		{name: "observability request headers", metric: "apisessions_extproc_messages_total", labels: map[string]string{"phase": "request_headers", "mode": "observability"}, want: 3},
		{name: "observability response body", metric: "apisessions_extproc_messages_total", labels: map[string]string{"phase": "response_body", "mode": "observability"}, want: 5},
		{name: "inline response trailers never seen", metric: "apisessions_extproc_messages_total", labels: map[string]string{"phase": "response_trailers", "mode": "inline"}, want: 0},
		{name: "panics", metric: "apisessions_extproc_panics_total", want: 1},
		{name: "headers dropped", metric: "apisessions_extproc_headers_dropped_total", want: 2000},
		{name: "streams refused past max_streams", metric: "apisessions_extproc_streams_refused_total", labels: map[string]string{"reason": "max_streams"}, want: 6},
		{name: "streams refused for memory", metric: "apisessions_extproc_streams_refused_total", labels: map[string]string{"reason": "memory"}, want: 5},
		{name: "idle timeouts", metric: "apisessions_extproc_stream_idle_timeouts_total", want: 8},
		{name: "body bytes held", metric: "apisessions_extproc_body_buffer_bytes", want: 61440},
		{name: "bodies over the body budget", metric: "apisessions_extproc_bodies_over_budget_total", labels: map[string]string{"reason": "body_budget"}, want: 13},
		{name: "bodies not kept for memory", metric: "apisessions_extproc_bodies_over_budget_total", labels: map[string]string{"reason": "memory"}, want: 21},
		{name: "memory level", metric: "apisessions_extproc_memory_level", want: 2},
		{name: "engine requests", metric: "apisessions_sessions_requests_total", want: 9},
		{name: "malicious", metric: "apisessions_sessions_malicious_requests_total", want: 2},
		{name: "lookup cache hits", metric: "apisessions_lookup_cache_hits_total", want: 11},
		{name: "lookup cache misses", metric: "apisessions_lookup_cache_misses_total", want: 4},
		{name: "JSON body parse errors", metric: "apisessions_parse_errors_total", labels: map[string]string{"source": "json_body"}, want: 5},
		{name: "JWT parse errors", metric: "apisessions_parse_errors_total", labels: map[string]string{"source": "jwt"}, want: 2},
		{name: "form parse errors, none", metric: "apisessions_parse_errors_total", labels: map[string]string{"source": "form_body"}, want: 0},
		{name: "accepted", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "accepted"}, want: 40},
		{name: "delivered after the change", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "delivered"}, want: 36},
		{name: "dropped", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "dropped"}, want: 3},
		{name: "failed", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "failed"}, want: 1},
		{name: "spooled", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "spooled"}, want: 9},
		{name: "replayed", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "replayed"}, want: 4},
		{name: "spool dropped", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "spool_dropped"}, want: 2},
		{name: "rejected", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "rejected"}, want: 1},
		{name: "evidence dropped", metric: "apisessions_sink_records_total", labels: map[string]string{"sink": "audit", "outcome": "evidence_dropped"}, want: 1},
		{name: "dropped, flood key", metric: "apisessions_sink_records_dropped_total", labels: map[string]string{"sink": "audit", "reason": "flood_key"}, want: 1},
		{name: "dropped, spool full", metric: "apisessions_sink_records_dropped_total", labels: map[string]string{"sink": "audit", "reason": "spool_full"}, want: 2},
		{name: "dropped, queue full", metric: "apisessions_sink_records_dropped_total", labels: map[string]string{"sink": "audit", "reason": "queue_full"}, want: 0},
		{name: "dropped, evicted for evidence", metric: "apisessions_sink_records_dropped_total", labels: map[string]string{"sink": "audit", "reason": "evicted_for_evidence"}, want: 0},
		{name: "retries", metric: "apisessions_sink_write_retries_total", labels: map[string]string{"sink": "audit"}, want: 7},
		{name: "spool records", metric: "apisessions_sink_spool_records", labels: map[string]string{"sink": "audit"}, want: 5},
		{name: "spool bytes", metric: "apisessions_sink_spool_bytes", labels: map[string]string{"sink": "audit"}, want: 4096},
		{name: "build info", metric: "apisessions_build_info", labels: map[string]string{"version": "v1.2.3", "commit": "abc"}, want: 1},
	}
	families := gather(t, r)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := value(families, tc.metric, tc.labels)
			if !ok {
				t.Fatalf("%s: no %s%v in the scrape", tc.name, tc.metric, tc.labels)
			}
			if got != tc.want {
				t.Errorf("%s: %s%v = %v, want %v", tc.name, tc.metric, tc.labels, got, tc.want)
			}
		})
	}
}

func TestRegistryHasRuntimeMetricsAndNoComponentWithoutSource(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{})
	if err := r.Watch(Sources{Engine: &fakeEngine{}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Watch(Sources{Extproc: &fakeExtproc{}}); err != nil {
		t.Errorf("a second Watch returned %v, want the first call's nil", err)
	}
	families := gather(t, r)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "apisessions_sessions_active_parts"} {
		if _, ok := families[name]; !ok {
			t.Errorf("the scrape lacks %s", name)
		}
	}
	for _, name := range []string{"apisessions_extproc_streams_open", "apisessions_sink_records_queued"} {
		if _, ok := families[name]; ok {
			t.Errorf("the scrape has %s though no source for it was watched", name)
		}
	}
}

func TestTimedForwardsAndObserves(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{})
	if r.Timed(nil) != nil {
		t.Fatal("Timed(nil) is not nil; extproc would take it for a processor")
	}
	f := &fakeProcessor{}
	p := r.Timed(f)
	x := &traffic.Exchange{Host: "api.example.com"}
	if !p.InScope("api.example.com") || p.InScope("other") {
		t.Error("InScope is not forwarded")
	}
	if p.Needs() != (traffic.Needs{RequestBody: true}) || p.MaxBodyBytes() != 123 {
		t.Error("Needs or MaxBodyBytes is not forwarded")
	}
	if !p.WantBody(traffic.Request, "application/json") || p.WantBody(traffic.Response, "application/json") {
		t.Error("WantBody is not forwarded")
	}
	for range 3 {
		p.Observe(x)
	}
	if s, part, key := p.Peek(x); s != "s_1" || part != "p_1" || key.Name != "token" {
		t.Errorf("Peek returned %q %q %+v", s, part, key)
	}
	if f.observed != 3 || f.peeked != 1 {
		t.Errorf("engine saw %d observes and %d peeks, want 3 and 1", f.observed, f.peeked)
	}
	families := gather(t, r)
	h := families["apisessions_sessions_processing_duration_seconds"]
	if h == nil {
		t.Fatal("no processing histogram")
	}
	counts := map[string]uint64{}
	for _, m := range h.GetMetric() {
		counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
	}
	if counts["observe"] != 3 || counts["peek"] != 1 {
		t.Errorf("histogram counts %v, want observe 3 and peek 1", counts)
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{Version: "dev"})
	if err := r.Watch(Sources{Sinks: &fakeSinks{s: []sinks.OutputStats{{Name: "stdout"}}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("answer %d %q, want 200 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`apisessions_sink_records_total{outcome="delivered",sink="stdout"} 0`, "apisessions_build_info{", "go_gc_duration_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestPhaseObserver(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{})
	o := r.PhaseObserver()
	o.ObservePhase(extproc.PhaseRequestHeaders, false, 3*time.Microsecond)
	o.ObservePhase(extproc.PhaseRequestHeaders, false, 5*time.Microsecond)
	o.ObservePhase(extproc.PhaseResponseBody, true, time.Millisecond)
	h := gather(t, r)["apisessions_extproc_phase_duration_seconds"]
	if h == nil {
		t.Fatal("no phase histogram")
	}
	counts := map[string]uint64{}
	for _, m := range h.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		counts[labels["phase"]+"/"+labels["mode"]] += m.GetHistogram().GetSampleCount()
	}
	want := map[string]uint64{"request_headers/inline": 2, "response_body/observability": 1}
	for k, n := range counts {
		if n != want[k] {
			t.Errorf("%s observed %d times; want %d", k, n, want[k])
		}
	}
	if len(counts) != 12 {
		t.Errorf("%d series; want 12 (six phases by two modes)", len(counts))
	}
}

func TestProtectionMetrics(t *testing.T) {
	t.Parallel()
	r := New(BuildInfo{})
	src := fakeProtect{s: protect.Stats{Rules: []protect.RuleStats{{Rule: "slow", Action: "rate_limit", Fired: 7, DryRun: 2}}, Buckets: 5, BucketsEvicted: 3, Blocks: 1}}
	if err := r.Watch(Sources{Protect: src}); err != nil {
		t.Fatal(err)
	}
	fam := gather(t, r)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"apisessions_protection_verdicts_total", map[string]string{"rule": "slow", "action": "rate_limit", "dry_run": "false"}, 7},
		{"apisessions_protection_verdicts_total", map[string]string{"rule": "slow", "action": "rate_limit", "dry_run": "true"}, 2},
		{"apisessions_protection_buckets", nil, 5},
		{"apisessions_protection_buckets_evicted_total", nil, 3},
		{"apisessions_protection_blocks", nil, 1},
	} {
		if got, ok := value(fam, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

// Regroups: every response phase asks Peek again.
func (f *fakeProcessor) Regroups(*traffic.Exchange, bool) bool { return true }
func (f *fakeProcessor) BodyRegroups(record.Key) bool          { return true }
