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

// errTooManyStreams refuses a stream past GRPCOptions.MaxStreams.
var errTooManyStreams = status.Error(codes.ResourceExhausted, "ext_proc stream refused: server.max_streams streams are open")

// idleChecks is how often per idle timeout a stream's timer looks for activity: an idle
// stream ends after between 1 and 1+1/idleChecks timeouts without a message. Checking
// rather than resetting a timer per message keeps the message path at one atomic store.
const idleChecks = 4

// streamLimits are the bounds one gRPC server puts on its ext_proc streams, enforced by a
// stream interceptor.
type streamLimits struct {
	max  int64         // streams open at once; 0 = no bound
	idle time.Duration // 0 = no idle timeout
	open atomic.Int64
	// loops counts the stream loops running (see intercept): one ended by its idle timeout
	// outlives its handler, and a shutdown waits for its exchange to be handed on.
	loops sync.WaitGroup
}

// newStreamLimits returns the limits o sets; nil when it sets none, which costs streams nothing.
func newStreamLimits(o GRPCOptions) *streamLimits {
	if o.MaxStreams <= 0 && o.StreamIdleTimeout <= 0 {
		return nil
	}
	return &streamLimits{max: int64(max(o.MaxStreams, 0)), idle: max(o.StreamIdleTimeout, 0)}
}

// options returns the server options that enforce l. Stop waits for handlers, as
// GracefulStop does, so that no stream loop starts once wait began.
func (l *streamLimits) options() []grpc.ServerOption {
	if l == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(l.intercept), grpc.WaitForHandlers(true)}
}

// wait returns once every stream loop has finished, those ended by their idle timeout
// included; it is called after the gRPC server stopped, when no handler runs any more.
func (l *streamLimits) wait() {
	if l != nil {
		l.loops.Wait()
	}
}

// intercept admits an ext_proc stream within MaxStreams and watches it for idleness. Other
// methods (health, reflection) pass untouched.
//
// An idle stream must end with status OK, which tells Envoy to go on without apisessions
// whatever failure_mode_allow says; any other status fails the request when it is false.
// gRPC writes OK only when the handler returns, and the handler is blocked in Recv, which only
// the stream's end unblocks (cancelling its context instead makes Recv write CANCELLED). So the
// stream loop runs in a goroutine of its own while this one waits for it or for the idle
// timer; on an idle end it returns, gRPC writes OK and ends the stream, and the loop's Recv
// returns: the exchange is recorded as one that ended early. The message path stays as it was.
func (l *streamLimits) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s, ok := srv.(*Server)
	if !ok || info.FullMethod != extprocv3.ExternalProcessor_Process_FullMethodName {
		return handler(srv, ss)
	}
	if n := l.open.Add(1); l.max > 0 && n > l.max {
		l.open.Add(-1)
		s.stats.streamsRefused.Add(1)
		return errTooManyStreams
	}
	if l.idle <= 0 {
		defer l.open.Add(-1)
		return handler(srv, ss)
	}
	as := &activeStream{ServerStream: ss}
	done := make(chan error, 1)
	l.loops.Add(1)
	go func() {
		defer l.loops.Done()
		// The stream holds its slot until its exchange is handed on, even after an idle end.
		defer l.open.Add(-1)
		done <- handler(srv, as)
	}()
	idle, err := watchIdle(done, &as.active, l.idle)
	if idle {
		s.stats.idleTimeouts.Add(1)
	}
	return err
}

// watchIdle waits for the stream loop to end, and returns its error, or for the stream to go
// idle: idleChecks checks in a row, one every timeout/idleChecks, that find active unset (each
// check clears it).
func watchIdle(done <-chan error, active *atomic.Bool, timeout time.Duration) (idle bool, err error) {
	every := timeout / idleChecks
	t := time.NewTimer(every)
	defer t.Stop()
	for quiet := 0; ; {
		select {
		case err := <-done:
			return false, err
		case <-t.C:
			if active.Swap(false) {
				quiet = 0
			} else if quiet++; quiet >= idleChecks {
				select {
				case err := <-done: // ended on its own at the same moment
					return false, err
				default:
					return true, nil
				}
			}
			t.Reset(every)
		}
	}
}

// activeStream marks active on every message received.
type activeStream struct {
	grpc.ServerStream
	active atomic.Bool
}

func (s *activeStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	s.active.Store(true)
	return err
}

// bodyBudget bounds the body bytes all streams of a server keep at once. A stream reserves
// bytes with one atomic add before keeping them and gives them back when it ends, whatever
// ends it; a body whose next bytes do not fit is not kept at all (its stream still records
// the request, with the body counted but absent). No lock: the stream path stays as fast as
// one atomic add per body message.
type bodyBudget struct {
	held    atomic.Int64
	limit   atomic.Int64 // 0: no bound
	refused atomic.Uint64
}

// take reserves n bytes and reports whether they fit; when they do not, nothing is reserved.
func (b *bodyBudget) take(n int64) bool {
	h := b.held.Add(n)
	if lim := b.limit.Load(); lim > 0 && h > lim {
		b.held.Add(-n)
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
