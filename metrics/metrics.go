package metrics

import (
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/state"
)

// namespace prefixes every apisessions metric.
const namespace = "apisessions"

// ExtprocSource is what the ext_proc server exposes (implemented by *extproc.Server).
type ExtprocSource interface{ Stats() extproc.Stats }

// EngineSource is what the sessions engine exposes (implemented by *sessions.Engine).
type EngineSource interface{ Stats() sessions.Stats }

// SinkSource is what the sink pipeline exposes (implemented by *sinks.Pipeline).
type SinkSource interface{ Stats() []sinks.OutputStats }

// StateSource is what the shared-state client exposes (implemented by *state.Client).
type StateSource interface{ Stats() state.Stats }

// Sources are the components read at scrape time; a nil field exports none of its metrics.
type Sources struct {
	Extproc ExtprocSource
	Engine  EngineSource
	Sinks   SinkSource
	// State is the shared-state client; nil without state.redis.
	State StateSource
	// Protect is the protection engine; nil when there is none.
	Protect ProtectSource
}

// ProtectSource is what the protection engine exposes (implemented by *protect.Engine).
type ProtectSource interface{ Stats() protect.Stats }

// BuildInfo labels apisessions_build_info.
type BuildInfo struct {
	Version, Commit string
}

// Registry is the metrics registry of one process.
type Registry struct {
	reg *prometheus.Registry
	// processing times the engine's work per exchange; observe and peek are its two children,
	// resolved once so the stream path does no label lookup.
	processing    *prometheus.HistogramVec
	observe, peek prometheus.Observer
	// phases times each ext_proc message; phaseObs are its children by [observability][phase].
	phases   *prometheus.HistogramVec
	phaseObs [2][extproc.NumPhases]prometheus.Observer
	// stateRTT times round trips to the shared state; stateObs are its children by state.Op.
	stateRTT  *prometheus.HistogramVec
	stateObs  [state.NumOps]prometheus.Observer
	stateOnce sync.Once

	watchOnce sync.Once
	watchErr  error
}

// processingBuckets span what one exchange costs the engine: a few microseconds for a bare
// GET, up to tens of milliseconds for the largest JSON bodies on a loaded machine.
var processingBuckets = prometheus.ExponentialBuckets(1e-6, 4, 11) // 1µs … ~1s

// stateBuckets span a round trip to Redis: tens of microseconds on one machine, a few hundred
// in a data centre, up to state.redis.timeout (at most 1 s).
var stateBuckets = prometheus.ExponentialBuckets(25e-6, 2, 16) // 25µs … ~0.8s

// New returns a registry with the Go runtime and process collectors and the build info. The
// components are added with Watch once they exist.
func New(info BuildInfo) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.processing = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Subsystem: "sessions",
		Name:      "processing_duration_seconds",
		Help:      "Time the sessions engine spends per exchange: op=observe at the end of a stream (extract, group, enrich, emit), op=peek when an inline answer carries the session (request and response headers).",
		Buckets:   processingBuckets,
	}, []string{"op"})
	r.observe = r.processing.WithLabelValues("observe")
	r.peek = r.processing.WithLabelValues("peek")
	r.phases = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Subsystem: "extproc",
		Name:      "phase_duration_seconds",
		Help:      "Time the ext_proc server spends per message, from its receipt to its answer being ready (observability mode: to its processing being done), by phase and mode. The engine's Observe at a stream's end is not included.",
		Buckets:   processingBuckets,
	}, []string{"phase", "mode"})
	for i, mode := range []string{modeInline, modeObservability} {
		for p := range extproc.NumPhases {
			r.phaseObs[i][p] = r.phases.WithLabelValues(p.String(), mode)
		}
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Always 1; labels name the running build.",
	}, []string{"version", "commit", "go_version"})
	build.WithLabelValues(info.Version, info.Commit, runtime.Version()).Set(1)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.processing,
		r.phases,
		build,
	)
	return r
}

// Watch registers the collector that reads src at every scrape. It may be called once; a
// second call returns the first call's result without registering anything.
func (r *Registry) Watch(src Sources) error {
	r.watchOnce.Do(func() {
		r.watchErr = r.reg.Register(newCollector(src))
	})
	return r.watchErr
}

// Handler serves the registry in the Prometheus text format. Errors while gathering are
// logged at warn level and the metrics that could be gathered are still served.
func (r *Registry) Handler(logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      r.reg,
		// Scrapes are cheap, but a flood of them must not pile up goroutines.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Timed returns p wrapped so that Observe and Peek are timed into
// apisessions_sessions_processing_duration_seconds. A nil p stays nil, which extproc reads
// as "no processor".
func (r *Registry) Timed(p extproc.Processor) extproc.Processor {
	if p == nil {
		return nil
	}
	return &timedProcessor{next: p, observe: r.observe, peek: r.peek}
}

// timedProcessor adds two clock reads and one histogram update per call: tens of
// nanoseconds against the microseconds the engine spends.
type timedProcessor struct {
	next          extproc.Processor
	observe, peek prometheus.Observer
}

var _ extproc.Processor = (*timedProcessor)(nil)

func (t *timedProcessor) InScope(host string) bool { return t.next.InScope(host) }
func (t *timedProcessor) Needs() traffic.Needs     { return t.next.Needs() }
func (t *timedProcessor) MaxBodyBytes() int        { return t.next.MaxBodyBytes() }
func (t *timedProcessor) WantBody(side traffic.Side, contentType string) bool {
	return t.next.WantBody(side, contentType)
}

func (t *timedProcessor) Observe(x *traffic.Exchange) {
	start := time.Now()
	t.next.Observe(x)
	t.observe.Observe(time.Since(start).Seconds())
}

func (t *timedProcessor) Peek(x *traffic.Exchange) (session, part string, key record.Key) {
	start := time.Now()
	session, part, key = t.next.Peek(x)
	t.peek.Observe(time.Since(start).Seconds())
	return session, part, key
}

func (t *timedProcessor) PeekSession(x *traffic.Exchange) (session string, key record.Key) {
	start := time.Now()
	session, key = t.next.PeekSession(x)
	t.peek.Observe(time.Since(start).Seconds())
	return session, key
}

// Regroups is not timed: it reads a few names and bytes.
func (t *timedProcessor) Regroups(x *traffic.Exchange, body bool) bool {
	return t.next.Regroups(x, body)
}

func (t *timedProcessor) BodyRegroups(key record.Key) bool { return t.next.BodyRegroups(key) }

// PhaseObserver returns the extproc.PhaseObserver that feeds
// apisessions_extproc_phase_duration_seconds. Each call is one histogram update.
func (r *Registry) PhaseObserver() extproc.PhaseObserver { return phaseObserver{r} }

type phaseObserver struct{ r *Registry }

func (o phaseObserver) ObservePhase(p extproc.Phase, observability bool, d time.Duration) {
	i := 0
	if observability {
		i = 1
	}
	o.r.phaseObs[i][p].Observe(d.Seconds())
}

// StateRoundTrip returns what state.Settings.RoundTrip takes: each call is one update of
// apisessions_state_round_trip_seconds, which is registered by the first StateRoundTrip call
// (a process without state.redis does not export it).
func (r *Registry) StateRoundTrip() func(state.Op, time.Duration) {
	r.stateOnce.Do(func() {
		r.stateRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "state",
			Name:      "round_trip_seconds",
			Help:      "Requests' round trips to the shared state (state.redis) that got an answer, from sending to the answer, a wait for the round in flight included, by op: peek on the request path of an inline answer, observe at a stream's end.",
			Buckets:   stateBuckets,
		}, []string{"op"})
		for op := range state.NumOps {
			r.stateObs[op] = r.stateRTT.WithLabelValues(op.String())
		}
		r.reg.MustRegister(r.stateRTT)
	})
	return func(op state.Op, d time.Duration) { r.stateObs[op].Observe(d.Seconds()) }
}
