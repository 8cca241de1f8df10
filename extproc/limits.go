package extproc

import (
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds on what ext_proc streams hold, so that a flood of streams — from a peer that reaches
// the gRPC port, or from Envoy in front of a stalled upstream — costs bounded memory:
//
//   - GRPCOptions.MaxConcurrentStreams (server.max_concurrent_streams) is gRPC's own limit per
//     connection; Envoy opens another connection when one is full.
//   - GRPCOptions.MaxStreams (server.max_streams) bounds the streams of all connections; one
//     more is refused with RESOURCE_EXHAUSTED, and Envoy fails open or closed as its
//     failure_mode_allow says.
//   - GRPCOptions.StreamIdleTimeout (server.stream_idle_timeout) ends a stream that receives
//     nothing for that long, with status OK: Envoy then goes on without apisessions, and
//     what the stream saw is recorded like any stream that ends early (see intercept).
//   - Settings.BodyBudgetBytes (traffic.body_budget_bytes) bounds the body bytes all streams
//     keep at once; see bodyBudget.
//   - GRPCOptions.MemoryLimitBytes (server.memory_limit_bytes, GOMEMLIMIT or the container's
//     limit) stops keeping bodies, then admitting streams, as the process's resident memory
//     nears it; see memoryGuard.

// errTooManyStreams refuses a stream past GRPCOptions.MaxStreams.
var errTooManyStreams = status.Error(codes.ResourceExhausted, "ext_proc stream refused: server.max_streams streams are open")

// idleChecks is how often per idle timeout the reaper looks for activity: an idle stream ends
// after between 1 and 1+1/idleChecks timeouts without a message. Checking rather than
// resetting a timer per message keeps the message path at one atomic store.
const idleChecks = 4

// streamLimits are the bounds one gRPC server puts on its ext_proc streams: admission by a
// stream interceptor, idleness by one reaper for all streams (see idleStream).
type streamLimits struct {
	max    int64 // streams open at once; 0 = no bound
	open   atomic.Int64
	reaper *reaper      // nil = no idle timeout
	memory *memoryGuard // nil = no memory limit
}

// newStreamLimits returns the limits o sets on srv's streams; nil when it sets none, which
// costs streams nothing.
func newStreamLimits(srv *Server, o GRPCOptions) *streamLimits {
	if o.MaxStreams <= 0 && o.StreamIdleTimeout <= 0 && o.MemoryLimitBytes <= 0 {
		return nil
	}
	l := &streamLimits{max: int64(max(o.MaxStreams, 0))}
	if o.StreamIdleTimeout > 0 {
		l.reaper = newReaper(o.StreamIdleTimeout)
	}
	l.memory = newMemoryGuard(srv, o.MemoryLimitBytes, o.sampleMemory)
	l.memory.start()
	return l
}

// options returns the server options that enforce l. Stop waits for handlers, as
// GracefulStop does, so that a stream's exchange is handed on before Stop returns.
func (l *streamLimits) options() []grpc.ServerOption {
	if l == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(l.intercept), grpc.WaitForHandlers(true)}
}

// wait stops the reaper and the memory guard; it is called after the gRPC server stopped,
// when no handler runs.
func (l *streamLimits) wait() {
	if l == nil {
		return
	}
	if l.reaper != nil {
		l.reaper.stop()
	}
	l.memory.end()
}

// intercept admits an ext_proc stream within MaxStreams while the memory guard allows and,
// with an idle timeout, puts it under the reaper's watch. Other methods (health, reflection)
// pass untouched.
//
// An idle stream must end with status OK, which tells Envoy to go on without apisessions
// whatever failure_mode_allow says; any other status fails the request when it is false. The
// handler is blocked in Recv, and gRPC writes CANCELLED for a Recv that its context ends. So
// the reaper writes status OK on the stream's transport itself, which ends the stream; Recv
// then returns, the stream loop records what it saw like a stream Envoy resets, and the
// statuses gRPC tries to write after that are no-ops. No goroutine or timer per stream.
func (l *streamLimits) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s, ok := srv.(*Server)
	if !ok || info.FullMethod != extprocv3.ExternalProcessor_Process_FullMethodName {
		return handler(srv, ss)
	}
	if s.budget.pressure.Load()&memoryRefuse != 0 {
		s.stats.streamsRefusedMemory.Add(1)
		return errMemoryFull
	}
	if n := l.open.Add(1); l.max > 0 && n > l.max {
		l.open.Add(-1)
		s.stats.streamsRefused.Add(1)
		return errTooManyStreams
	}
	defer l.open.Add(-1)
	if l.reaper == nil {
		return handler(srv, ss)
	}
	end, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(statusWriter)
	if !ok {
		// Not a stream of grpc-go's HTTP/2 server (a test double): nothing to end it with.
		return handler(srv, ss)
	}
	is := &idleStream{ServerStream: ss, end: end, ended: &s.stats.idleTimeouts}
	l.reaper.watch(is)
	err := handler(srv, is)
	if l.reaper.forget(is) {
		return nil
	}
	return err
}

// statusWriter is what grpc-go's server transport stream offers to end a stream with a status.
type statusWriter interface {
	WriteStatus(*status.Status) error
}

// statusOK ends an idle stream.
var statusOK = status.New(codes.OK, "")

// idleStream is an ext_proc stream under the reaper's watch; it marks activity on every
// message received.
type idleStream struct {
	grpc.ServerStream
	end    statusWriter
	ended  *atomic.Uint64 // counts the streams the reaper ends, before their status goes out
	active atomic.Bool    // a message arrived since the last check
	idle   atomic.Bool    // the reaper ended the stream
	quiet  uint8          // checks in a row without a message; the reaper's, under its lock
	slot   int            // index in the reaper's list; under its lock
}

func (s *idleStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	s.active.Store(true)
	return err
}

// reaper ends ext_proc streams that receive nothing for its timeout. Every watched stream is
// in one list; a goroutine started with the first stream checks the list every
// timeout/idleChecks and ends a stream found quiet idleChecks times in a row.
type reaper struct {
	timeout time.Duration
	mu      sync.Mutex
	streams []*idleStream
	start   sync.Once
	done    chan struct{}
	stopped sync.WaitGroup
}

func newReaper(timeout time.Duration) *reaper {
	return &reaper{timeout: timeout, done: make(chan struct{})}
}

// watch adds s to the list and starts the checks with the first stream.
func (r *reaper) watch(s *idleStream) {
	r.start.Do(func() {
		r.stopped.Add(1)
		go r.run()
	})
	r.mu.Lock()
	s.slot = len(r.streams)
	r.streams = append(r.streams, s)
	r.mu.Unlock()
}

// forget takes s out of the list, if the reaper has not already, and says whether the reaper
// ended it.
func (r *reaper) forget(s *idleStream) (idle bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.idle.Load() {
		r.remove(s)
	}
	return s.idle.Load()
}

// remove swaps the last stream into s's slot; under r.mu.
func (r *reaper) remove(s *idleStream) {
	last := len(r.streams) - 1
	moved := r.streams[last]
	r.streams[s.slot] = moved
	moved.slot = s.slot
	r.streams[last] = nil
	r.streams = r.streams[:last]
}

func (r *reaper) run() {
	defer r.stopped.Done()
	t := time.NewTicker(r.timeout / idleChecks)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			r.check()
		}
	}
}

// check clears every stream's activity mark and ends the streams that had none for
// idleChecks checks in a row. Their statuses are written once the list is unlocked, so that
// streams opening and ending never wait for them.
func (r *reaper) check() {
	var ended []*idleStream
	r.mu.Lock()
	for i := 0; i < len(r.streams); {
		s := r.streams[i]
		if s.active.Swap(false) {
			s.quiet = 0
		} else if s.quiet++; s.quiet >= idleChecks {
			s.idle.Store(true)
			ended = append(ended, s)
			r.remove(s) // brings another stream into slot i
			continue
		}
		i++
	}
	r.mu.Unlock()
	for _, s := range ended {
		if s.ended != nil {
			s.ended.Add(1)
		}
		// Writes the trailers and ends the stream; an error means it had already ended.
		_ = s.end.WriteStatus(statusOK)
	}
}

// stop ends the checks; streams still open are no longer watched.
func (r *reaper) stop() {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	r.stopped.Wait()
}

// bodyBudget bounds the body bytes all streams of a server keep at once. A stream reserves
// bytes with one atomic add before keeping them and gives them back when it ends, whatever
// ends it; a body whose next bytes do not fit is not kept at all (its stream still records
// the request, with the body counted but absent). No lock: the stream path stays as fast as
// one atomic load and one atomic add per body message.
type bodyBudget struct {
	held    atomic.Int64
	limit   atomic.Int64 // 0: no bound
	refused atomic.Uint64
	// pressure is what the memory guard asks of streams (0 without a guard): with memoryShed,
	// no byte is reserved. refusedMemory counts the bodies it refused.
	pressure      atomic.Int32
	refusedMemory atomic.Uint64
}

// take reserves n bytes and reports whether they fit; when they do not, nothing is reserved
// and the refusal is counted by its cause (the memory guard, or the budget).
func (b *bodyBudget) take(n int64) bool {
	if b.pressure.Load()&memoryShed != 0 {
		b.refusedMemory.Add(1)
		return false
	}
	h := b.held.Add(n)
	if lim := b.limit.Load(); lim > 0 && h > lim {
		b.held.Add(-n)
		b.refused.Add(1)
		return false
	}
	return true
}

// give returns n reserved bytes.
func (b *bodyBudget) give(n int64) {
	if n != 0 {
		b.held.Add(-n)
	}
}

// release drops what a handled body message points to in its buffer, so that a stream waiting
// for its next message holds only what it kept: a chunk it did not keep (not needed, past
// max_body_bytes, over the budget) is garbage at once, not when the next message comes, which
// for a stalled stream is never. Header messages are kept by the exchange anyway.
func (m *message) release() {
	m.body = nil
	m.attrs = attributes{}
	clear(m.metadata)
	m.metadata = m.metadata[:0]
	m.metadataMsg = nil
}
