package extproc

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// MetadataNamespace is the dynamic metadata namespace apisessions writes in inline mode; Envoy's
// metadata_options.receiving_namespaces must list it.
const MetadataNamespace = "apisessions"

// AnswerMetadataKey is the gRPC metadata key with which a stream asks for the dynamic metadata
// in its inline answers when inline.dynamic_metadata is off: a stream that carries
// "x-apisessions-answer-metadata: true" gets it (apisessions replay --target does so, to read
// the part each answer named). Envoy sends it only if its grpc_service.initial_metadata says
// so; with inline.dynamic_metadata on, every stream gets the metadata.
const AnswerMetadataKey = "x-apisessions-answer-metadata"

// askedMetadata reports whether the stream's gRPC metadata asks for the dynamic metadata.
func askedMetadata(ctx context.Context) bool {
	for _, v := range metadata.ValueFromIncomingContext(ctx, AnswerMetadataKey) {
		if v == "true" {
			return true
		}
	}
	return false
}

// attributesKey is the key of ProcessingRequest.attributes under which Envoy puts the values of
// request_attributes and response_attributes, whatever the filter is named.
const attributesKey = "envoy.filters.http.ext_proc"

// Processor is what the server hands finished exchanges to (implemented by *sessions.Engine).
type Processor interface {
	// InScope reports whether the host is tracked; false = the stream costs one header check
	// and produces nothing.
	InScope(host string) bool
	// Needs says which bodies to copy.
	Needs() traffic.Needs
	// MaxBodyBytes is how many body bytes to copy at most per direction; bytes past it are counted only.
	MaxBodyBytes() int
	// WantBody reports whether a body of this side and content type (the content-type
	// header's value, "" when there is none) is worth asking Envoy for when the configured
	// body mode does not send it (inline mode's mode_override).
	WantBody(side traffic.Side, contentType string) bool
	// Observe is called exactly once per in-scope stream at its end, with everything seen. It
	// must not block.
	Observe(x *traffic.Exchange)
	// Peek groups the request seen so far (inline mode only), for the session header and the
	// dynamic metadata. The server calls it at request headers (or at the request body, when
	// Envoy buffers it and BodyRegroups allows) and, with dynamic metadata,
	// again at the response headers (and at the end of a kept response body) only when
	// request body bytes that BodyRegroups says may change it arrived in between, or Regroups
	// says the response may change it; the
	// metadata is repeated only when the answer changed.
	Peek(x *traffic.Exchange) (session, part string, key record.Key)
	// PeekSession is Peek without the part: the session and key alone, all that an answer
	// without dynamic metadata carries. It reads no shared state (state.redis), so the answer
	// never waits for it.
	PeekSession(x *traffic.Exchange) (session string, key record.Key)
	// Regroups reports, cheaply, whether the response seen so far (its headers, or with body
	// its kept body) may change what Peek answered at the request: the server asks Peek again
	// at a response phase only then, or when request body bytes arrived in between.
	Regroups(x *traffic.Exchange, body bool) bool
	// BodyRegroups reports, from the configuration alone, whether request body bytes that
	// arrived after Peek answered key at the request may change that answer: the server asks
	// Peek again at the response headers for a request with a body only then (or when
	// Regroups says the response may change it). The zero key asks whether a request body
	// may decide the grouping at all: the server then answers a buffered request body, not
	// its headers, with the session.
	BodyRegroups(key record.Key) bool
}

// Settings is what the server needs from the configuration. The zero value is usable: no
// processor (streams are answered and nothing is recorded), no inline additions.
type Settings struct {
	// Logger receives debug lines per stream and error lines for panics; nil discards.
	Logger *slog.Logger
	// Processor receives the finished exchanges; nil drops them.
	Processor Processor
	// SessionHeader is the request header set to the session id in inline mode (config
	// inline.session_header); "" disables it.
	SessionHeader string
	// DynamicMetadata adds {"apisessions": {"session", "part", "key"}} to inline answers.
	DynamicMetadata bool
	// AttackNamespaces are the metadata_context namespaces copied into Exchange.Metadata.
	AttackNamespaces []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// PhaseObserver, when set, is told how long each message took from its receipt to its
	// answer being ready (or, in observability mode, to its processing being done); nil = off.
	PhaseObserver PhaseObserver
	// BodyBudgetBytes bounds the body bytes all streams keep at once (config
	// traffic.body_budget_bytes); a body that does not fit is not kept. 0 = no bound.
	BodyBudgetBytes int
	// Guard, when set, decides at each request's headers whether it goes on (protection
	// rules and manual blocks); in inline mode its blocks and rate limits answer the request.
	Guard Guard
}

// Server implements the ext_proc service. Its settings can be swapped at any time (config
// reload); a stream keeps the settings it started with.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	settings atomic.Pointer[settings]
	health   *health.Server
	stats    counters
	// budget is shared by every stream, whatever settings it started with.
	budget bodyBudget
}

// settings is the normalised, immutable form of Settings that streams read.
type settings struct {
	log             *slog.Logger
	proc            Processor
	sessionHeader   string
	dynamicMetadata bool
	namespaces      []string
	now             func() time.Time
	phases          PhaseObserver
	guard           Guard
	// answers caches the inline answers built for recent groupings; it belongs to one set of
	// settings because the answers carry the session header's name.
	answers *answerCache
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// New returns a server using s. Its health service reports NOT_SERVING until SetServing(true).
func New(s Settings) *Server {
	srv := &Server{health: health.NewServer()}
	srv.SetSettings(s)
	srv.SetServing(false)
	return srv
}

// SetSettings replaces all settings; streams already open keep the old ones, except the body
// budget, which bounds all streams together and applies to them at once.
func (s *Server) SetSettings(in Settings) {
	s.budget.limit.Store(int64(max(in.BodyBudgetBytes, 0)))
	s.settings.Store(normalise(in))
}

func normalise(in Settings) *settings {
	c := &settings{
		log:             in.Logger,
		proc:            in.Processor,
		sessionHeader:   strings.ToLower(strings.TrimSpace(in.SessionHeader)),
		dynamicMetadata: in.DynamicMetadata,
		now:             in.Now,
		phases:          in.PhaseObserver,
		guard:           in.Guard,
		answers:         newAnswerCache(),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "extproc")
	if c.sessionHeader != "" && !validHeaderName(c.sessionHeader) {
		// Envoy fails every request whose mutation names an invalid header, even when failing
		// open; without the header the rest of inline mode still works.
		c.log.LogAttrs(context.Background(), slog.LevelWarn, "session header disabled: not a settable header name",
			slog.String("session_header", c.sessionHeader))
		c.sessionHeader = ""
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, ns := range in.AttackNamespaces {
		if ns != "" && len(c.namespaces) < maxNamespaces {
			c.namespaces = append(c.namespaces, ns)
		}
	}
	return c
}

// SetServing sets the health of the whole server and of the ext_proc service: SERVING once
// configuration and sinks are ready, NOT_SERVING while starting or draining.
func (s *Server) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(processDesc.ServiceName, st)
}

// Process serves one ext_proc stream, that is one HTTP request and its response, from any
// ExternalProcessor_ProcessServer. The gRPC server NewGRPCServer builds does not go through
// it: its handler decodes the wire straight into the stream's own form (see message).
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) error {
	return s.serve(ps.Context(), protoTransport{ps})
}

// transport is where a stream's messages come from and its answers go.
type transport interface {
	recv(m *message) error
	send(r *extprocv3.ProcessingResponse) error
}

// protoTransport is any ExternalProcessor_ProcessServer: the generated messages it receives
// are read through fromProto.
type protoTransport struct {
	ps extprocv3.ExternalProcessor_ProcessServer
}

func (t protoTransport) recv(m *message) error {
	req, err := t.ps.Recv()
	if err != nil {
		return err
	}
	m.fromProto(req)
	return nil
}

func (t protoTransport) send(r *extprocv3.ProcessingResponse) error { return t.ps.Send(r) }

// serve runs one stream over t.
func (s *Server) serve(ctx context.Context, t transport) (err error) {
	st := newStream(s, s.settings.Load(), ctx)
	s.stats.streamsOpen.Add(1)
	s.stats.streams.Add(1)
	defer s.stats.streamsOpen.Add(-1)
	defer st.releaseHeaders() // after finishing
	// The recover is registered last so it runs first; finishing then still sees the state of
	// the stream as far as it got.
	defer st.finish()
	defer func() {
		if r := recover(); r != nil {
			st.panicked(r)
			// Fail open: status OK lets Envoy continue the request without us.
			err = nil
		}
	}()
	return st.run(t)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// StreamsOpen is the number of streams being served now.
	StreamsOpen int64
	// Streams is the number of streams accepted since start.
	Streams uint64
	// Inline and Observability count received messages by phase, split by the message's
	// observability_mode flag.
	Inline, Observability PhaseCounts
	// Observed counts exchanges handed to Processor.Observe.
	Observed uint64
	// OutOfScope counts streams whose host the processor does not track.
	OutOfScope uint64
	// Panics counts streams ended by a recovered panic.
	Panics uint64
	// ProtocolErrors counts messages that break the ext_proc protocol: no request case,
	// duplicate or out-of-order phases, headers with both value and raw_value.
	ProtocolErrors uint64
	// StreamErrors counts streams that ended with a transport error other than a normal end.
	StreamErrors uint64
	// HeadersDropped counts header fields not copied because a header list was over the cap.
	HeadersDropped uint64
	// InvalidSessionValues counts inline answers whose session id could not be a header value.
	InvalidSessionValues uint64
	// ModeOverrides counts inline headers answers that asked Envoy for a body (mode_override).
	ModeOverrides uint64
	// AuthRejected counts gRPC calls refused for a missing or wrong token (GRPCOptions.Token).
	AuthRejected uint64
	// StreamsRefused counts streams refused because GRPCOptions.MaxStreams were open.
	StreamsRefused uint64
	// StreamsRefusedMemory counts streams refused because the process's resident memory was
	// above the memory guard's high mark (GRPCOptions.MemoryLimitBytes).
	StreamsRefusedMemory uint64
	// StreamIdleTimeouts counts streams ended because no message came within
	// GRPCOptions.StreamIdleTimeout.
	StreamIdleTimeouts uint64
	// ImmediateResponses counts requests the guard answered itself (blocks, rate limits).
	ImmediateResponses uint64
	// BodyBytesHeld is the number of body bytes open streams keep now.
	BodyBytesHeld int64
	// BodiesOverBudget counts bodies not kept because Settings.BodyBudgetBytes were held.
	BodiesOverBudget uint64
	// BodiesOverMemory counts bodies not kept because the process's resident memory was above
	// the memory guard's low mark.
	BodiesOverMemory uint64
	// MemoryLevel is what the memory guard asks of streams now, as bits: 0 nothing (or no
	// guard), 1 bodies are not kept, 2 new streams are refused.
	MemoryLevel int
}

type counters struct {
	streamsOpen          atomic.Int64
	streams              atomic.Uint64
	messages             [2][NumPhases]atomic.Uint64 // [observability][phase]
	observed             atomic.Uint64
	outOfScope           atomic.Uint64
	panics               atomic.Uint64
	protocolErrors       atomic.Uint64
	streamErrors         atomic.Uint64
	headersDropped       atomic.Uint64
	invalidSessionValues atomic.Uint64
	modeOverrides        atomic.Uint64
	authRejected         atomic.Uint64
	streamsRefused       atomic.Uint64
	streamsRefusedMemory atomic.Uint64
	idleTimeouts         atomic.Uint64
	immediateResponses   atomic.Uint64
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	phases := func(m *[NumPhases]atomic.Uint64) PhaseCounts {
		var pc PhaseCounts
		for p := range m {
			pc[p] = m[p].Load()
		}
		return pc
	}
	return Stats{
		StreamsOpen:          c.streamsOpen.Load(),
		Streams:              c.streams.Load(),
		Inline:               phases(&c.messages[0]),
		Observability:        phases(&c.messages[1]),
		Observed:             c.observed.Load(),
		OutOfScope:           c.outOfScope.Load(),
		Panics:               c.panics.Load(),
		ProtocolErrors:       c.protocolErrors.Load(),
		StreamErrors:         c.streamErrors.Load(),
		HeadersDropped:       c.headersDropped.Load(),
		InvalidSessionValues: c.invalidSessionValues.Load(),
		ModeOverrides:        c.modeOverrides.Load(),
		AuthRejected:         c.authRejected.Load(),
		StreamsRefused:       c.streamsRefused.Load(),
		StreamsRefusedMemory: c.streamsRefusedMemory.Load(),
		StreamIdleTimeouts:   c.idleTimeouts.Load(),
		ImmediateResponses:   c.immediateResponses.Load(),
		BodyBytesHeld:        s.budget.held.Load(),
		BodiesOverBudget:     s.budget.refused.Load(),
		BodiesOverMemory:     s.budget.refusedMemory.Load(),
		MemoryLevel:          int(s.budget.pressure.Load()),
	}
}

// debugEnabled reports whether per-stream debug lines are wanted; checked before building attributes.
func debugEnabled(ctx context.Context, l *slog.Logger) bool {
	return l.Enabled(ctx, slog.LevelDebug)
}

// validHeaderName accepts an HTTP token that Envoy lets ext_proc set: no pseudo-header, not host.
func validHeaderName(name string) bool {
	if name == "" || len(name) > 256 || name == "host" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
