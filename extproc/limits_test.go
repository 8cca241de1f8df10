package extproc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// openStream opens a stream and plays msgs on it, each answered, leaving it open.
func openStream(ctx context.Context, t *testing.T, client extprocv3.ExternalProcessorClient, msgs ...*extprocv3.ProcessingRequest) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	for i, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	return stream
}

// closeStream half-closes a stream as Envoy does at the end of an exchange and waits for the
// server to end it.
func closeStream(t *testing.T, stream extprocv3.ExternalProcessor_ProcessClient) {
	t.Helper()
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want io.EOF", err)
	}
}

// TestMaxStreams: past GRPCOptions.MaxStreams open streams, over any connections, a new
// stream is refused at once with ResourceExhausted (Envoy then applies failure_mode_allow),
// counted, and other services stay reachable; a slot that frees up is used again.
func TestMaxStreams(t *testing.T) {
	t.Parallel()
	srv := New(Settings{Processor: newFake(), Now: fixedNow})
	srv.SetServing(true)
	client, conn := startServer(t, srv, GRPCOptions{MaxStreams: 2})
	ctx := testContext(t)
	headers := protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "GET"), true)

	a := openStream(ctx, t, client, headers)
	b := openStream(ctx, t, client, headers)
	refused, err := client.Process(ctx)
	if err != nil {
		t.Fatalf("open a third stream: %v", err)
	}
	_ = refused.Send(headers)
	if _, err := refused.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third stream with two open: %v, want ResourceExhausted", err)
	}
	if got := srv.Stats().StreamsRefused; got != 1 {
		t.Errorf("streams refused = %d, want 1", got)
	}
	// Only ext_proc streams count: a health watch, a stream too, opens at the limit.
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health watch at the stream limit: %v, %v; want SERVING", resp.GetStatus(), err)
	}
	closeStream(t, a)
	c := openStream(ctx, t, client, headers)
	closeStream(t, b)
	closeStream(t, c)
	if s := srv.Stats(); s.StreamsRefused != 1 || s.Streams != 3 {
		t.Errorf("refused %d, accepted %d; want the one refused stream not counted as accepted (1, 3)", s.StreamsRefused, s.Streams)
	}
}

// TestStreamIdleTimeout: a stream that receives nothing for GRPCOptions.StreamIdleTimeout is
// ended with status OK (Envoy goes on without apisessions), and what it saw is recorded as a
// cut exchange; its body goes back to the budget.
func TestStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.needs.RequestBody = true
	srv := New(Settings{Processor: fake, Now: fixedNow, BodyBudgetBytes: 1 << 20})
	gs, err := NewGRPCServer(srv, GRPCOptions{StreamIdleTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	client := extprocv3.NewExternalProcessorClient(dialBuf(t, lis))
	ctx := testContext(t)

	stream := openStream(ctx, t, client,
		protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "POST"), false),
		protomsg.RequestBody([]byte("first chunk"), false))
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("a stalled stream ended with %v, want status OK (io.EOF)", err)
	}
	x := fake.next(t)
	if !x.Partial || x.ResponseSeen || string(x.RequestBody) != "first chunk" || !x.RequestBodyTruncated {
		t.Errorf("exchange: partial %v, response seen %v, body %q, truncated %v; want a cut exchange with the chunk seen",
			x.Partial, x.ResponseSeen, x.RequestBody, x.RequestBodyTruncated)
	}
	// A stream that completes before the timeout is not counted.
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
		t.Fatalf("a whole exchange: %v", err)
	}
	fake.next(t)
	// Stop returns once every stream has finished, the idle one included.
	gs.Stop()
	s := srv.Stats()
	if s.StreamIdleTimeouts != 1 || s.StreamErrors != 0 || s.BodyBytesHeld != 0 || s.StreamsOpen != 0 {
		t.Errorf("idle timeouts %d, stream errors %d, body bytes held %d, streams open %d; want 1, 0, 0, 0",
			s.StreamIdleTimeouts, s.StreamErrors, s.BodyBytesHeld, s.StreamsOpen)
	}
}

// TestReaper times the idle checks in a bubble: a stream that receives nothing for the
// timeout is ended (its context cancelled) after between 1 and 1+1/idleChecks timeouts of
// silence, one that receives messages more often is not, and a stream that ends first is
// forgotten without being counted idle.
func TestReaper(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	open := func(r *reaper) (*idleStream, *fakeEnd) {
		end := &fakeEnd{ended: make(chan struct{})}
		s := &idleStream{end: end}
		r.watch(s)
		return s, end
	}
	t.Run("silence from the start is idle after the timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReaper(idle)
			defer r.stop()
			start := time.Now()
			s, end := open(r)
			<-end.ended
			if d := time.Since(start); !r.forget(s) || d != idle {
				t.Errorf("idle %v after %v; want idle after %v", s.idle.Load(), d, idle)
			}
		})
	})
	t.Run("messages keep the stream open; silence after them ends it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReaper(idle)
			defer r.stop()
			s, end := open(r)
			quiet, _ := open(r) // another stream, idle from the start, moves in the list
			var last time.Time
			start := time.Now()
			for range 10 {
				time.Sleep(idle * 9 / 10)
				if s.idle.Load() {
					t.Fatalf("ended after %v, while a message came every %v", time.Since(start), idle*9/10)
				}
				s.active.Store(true)
				last = time.Now()
			}
			<-end.ended
			if d := time.Since(last); !r.forget(s) || d < idle || d > idle+idle/idleChecks {
				t.Errorf("idle %v %v after the last message, want between %v and %v", s.idle.Load(), d, idle, idle+idle/idleChecks)
			}
			if !r.forget(quiet) || len(r.streams) != 0 {
				t.Errorf("the silent stream: idle %v; %d streams still watched", quiet.idle.Load(), len(r.streams))
			}
		})
	})
	t.Run("a stream that ends first is forgotten, not idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReaper(idle)
			defer r.stop()
			var streams []*idleStream
			var ends []*fakeEnd
			for range 3 {
				s, end := open(r)
				streams, ends = append(streams, s), append(ends, end)
			}
			time.Sleep(idle / 2)
			for i, s := range streams {
				if r.forget(s) || ends[i].calls.Load() != 0 {
					t.Errorf("a stream that ended on its own: idle %v, status written %d times", s.idle.Load(), ends[i].calls.Load())
				}
			}
			time.Sleep(2 * idle)
			if len(r.streams) != 0 {
				t.Errorf("%d streams still watched", len(r.streams))
			}
		})
	})
}

// TestStreamLimitsOnlyWhenAsked: without bounds the server adds no interceptor, so streams
// cost nothing more than before.
func TestStreamLimitsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	l := newStreamLimits(nil, GRPCOptions{})
	if l != nil || len(l.options()) != 0 {
		t.Errorf("no bounds: limits %v with %d server options, want none", l, len(l.options()))
	}
	l.wait() // a nil limits has nothing to wait for
	if l := newStreamLimits(nil, GRPCOptions{MaxStreams: 1}); l == nil || len(l.options()) == 0 {
		t.Errorf("MaxStreams 1: limits %v, want an interceptor", l)
	}
}

// chanStream is an in-memory ext_proc stream fed by a channel: closing in ends it with
// io.EOF; every answer is signalled on answered, so a test knows a message was handled.
type chanStream struct {
	grpc.ServerStream
	ctx      context.Context
	in       chan *extprocv3.ProcessingRequest
	answered chan struct{}
}

func (s *chanStream) Context() context.Context { return s.ctx }

func (s *chanStream) Recv() (*extprocv3.ProcessingRequest, error) {
	m, ok := <-s.in
	if !ok {
		return nil, io.EOF
	}
	return m, nil
}

func (s *chanStream) Send(*extprocv3.ProcessingResponse) error {
	s.answered <- struct{}{}
	return nil
}

// liveStream serves a chanStream in the background; send plays a message and waits for its
// answer, end closes the stream and waits for Process to return.
type liveStream struct {
	t    *testing.T
	s    *chanStream
	done chan error
}

func startStream(t *testing.T, srv *Server) *liveStream {
	st := &chanStream{ctx: context.Background(), in: make(chan *extprocv3.ProcessingRequest), answered: make(chan struct{})}
	l := &liveStream{t: t, s: st, done: make(chan error, 1)}
	go func() { l.done <- srv.Process(st) }()
	return l
}

func (l *liveStream) send(m *extprocv3.ProcessingRequest) {
	l.t.Helper()
	l.s.in <- m
	<-l.s.answered
}

func (l *liveStream) end() {
	l.t.Helper()
	close(l.s.in)
	if err := <-l.done; err != nil {
		l.t.Fatalf("stream: %v", err)
	}
}

// TestBodyBudget: bodies are kept while the budget has room; a body that does not fit is
// not kept at all, yet its request is recorded with its size, and counted; the budget comes
// back when streams end, however they end, and a new budget applies at once.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	post := protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "POST"), false)
	chunk := func(n int, eos bool) *extprocv3.ProcessingRequest {
		return protomsg.RequestBody(bytes.Repeat([]byte("b"), n), eos)
	}
	newServer := func(budget int) (*Server, *fakeProcessor) {
		fake := newFake()
		fake.needs.RequestBody = true
		return New(Settings{Processor: fake, Now: fixedNow, BodyBudgetBytes: budget}), fake
	}

	t.Run("a body over the budget is not kept, its request is recorded", func(t *testing.T) {
		t.Parallel()
		srv, fake := newServer(100)
		a := startStream(t, srv)
		a.send(post)
		a.send(chunk(60, false))
		if got := srv.Stats().BodyBytesHeld; got != 60 {
			t.Fatalf("body bytes held with one 60-byte body open = %d, want 60", got)
		}
		b := startStream(t, srv)
		b.send(post)
		b.send(chunk(60, true))
		b.end()
		x := fake.next(t)
		if x.RequestBody != nil || !x.RequestBodyTruncated || x.RequestBytes != 60 {
			t.Errorf("the body over budget: body %q, truncated %v, bytes %d; want none kept, truncated, 60 bytes counted",
				x.RequestBody, x.RequestBodyTruncated, x.RequestBytes)
		}
		a.send(chunk(10, true))
		a.end()
		if x := fake.next(t); len(x.RequestBody) != 70 || x.RequestBodyTruncated {
			t.Errorf("the body within budget: %d bytes kept, truncated %v; want all 70", len(x.RequestBody), x.RequestBodyTruncated)
		}
		if s := srv.Stats(); s.BodiesOverBudget != 1 || s.BodyBytesHeld != 0 {
			t.Errorf("bodies over budget %d, bytes held %d after both streams ended; want 1, 0", s.BodiesOverBudget, s.BodyBytesHeld)
		}
	})

	t.Run("a body that grows past the budget gives back what it held", func(t *testing.T) {
		t.Parallel()
		srv, fake := newServer(70)
		a := startStream(t, srv)
		a.send(post)
		a.send(chunk(40, false))
		a.send(chunk(40, false))
		if s := srv.Stats(); s.BodyBytesHeld != 0 || s.BodiesOverBudget != 1 {
			t.Errorf("after the chunk that did not fit: held %d, over budget %d; want 0, 1", s.BodyBytesHeld, s.BodiesOverBudget)
		}
		a.send(chunk(1, true))
		a.end()
		if x := fake.next(t); x.RequestBody != nil || x.RequestBytes != 81 || !x.RequestBodyTruncated {
			t.Errorf("body %d bytes, counted %d, truncated %v; want none kept, 81 counted, truncated", len(x.RequestBody), x.RequestBytes, x.RequestBodyTruncated)
		}
	})

	t.Run("a panicking processor still gives the budget back", func(t *testing.T) {
		t.Parallel()
		srv, fake := newServer(100)
		fake.panicObserve = true
		a := startStream(t, srv)
		a.send(post)
		a.send(chunk(60, true))
		a.end()
		fake.next(t)
		if s := srv.Stats(); s.Panics != 1 || s.BodyBytesHeld != 0 {
			t.Errorf("panics %d, bytes held %d; want 1, 0", s.Panics, s.BodyBytesHeld)
		}
	})

	t.Run("a new budget applies to open streams at once", func(t *testing.T) {
		t.Parallel()
		srv, fake := newServer(100)
		a := startStream(t, srv)
		a.send(post)
		a.send(chunk(60, false))
		srv.SetSettings(Settings{Processor: fake, Now: fixedNow, BodyBudgetBytes: 1000})
		a.send(chunk(60, true))
		a.end()
		if x := fake.next(t); len(x.RequestBody) != 120 {
			t.Errorf("after raising the budget: %d bytes kept, want 120", len(x.RequestBody))
		}
	})
}

// TestBodyCutAtTheCapIsCopied: a body message larger than max_body_bytes is not held whole
// for the few bytes kept of it.
func TestBodyCutAtTheCapIsCopied(t *testing.T) {
	t.Parallel()
	msg := make([]byte, 1000)
	var b body
	b.copy, b.max, b.budget = true, 10, &bodyBudget{}
	b.add(msg, true)
	if len(b.buf) != 10 || &b.buf[0] == &msg[0] {
		t.Errorf("kept %d bytes, aliasing the message %v; want 10 bytes of a copy", len(b.buf), &b.buf[0] == &msg[0])
	}
	var whole body
	whole.copy, whole.max, whole.budget = true, 1000, &bodyBudget{}
	whole.add(msg, true)
	if &whole.buf[0] != &msg[0] {
		t.Error("a body that fits was copied; want the message's own bytes kept")
	}
}

// BenchmarkStreamLimits is what the bounds add to each stream: admission, and with an idle
// timeout the stream's cancellable context and its place in the reaper's list; the handler
// does nothing.
func BenchmarkStreamLimits(b *testing.B) {
	srv := New(Settings{})
	info := &grpc.StreamServerInfo{FullMethod: extprocv3.ExternalProcessor_Process_FullMethodName}
	handler := func(any, grpc.ServerStream) error { return nil }
	for _, bc := range []struct {
		name string
		o    GRPCOptions
	}{
		{"max_streams", GRPCOptions{MaxStreams: 10000}},
		{"max_streams+idle_timeout", GRPCOptions{MaxStreams: 10000, StreamIdleTimeout: time.Minute}},
		{"max_streams+idle_timeout+memory_guard", GRPCOptions{MaxStreams: 10000, StreamIdleTimeout: time.Minute,
			MemoryLimitBytes: 1 << 30, sampleMemory: func() (int64, error) { return 100 << 20, nil }}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newStreamLimits(srv, bc.o)
			defer l.wait()
			stream := ctxStream{ctx: grpc.NewContextWithServerTransportStream(context.Background(), &fakeEnd{})}
			b.ReportAllocs()
			for b.Loop() {
				if err := l.intercept(srv, stream, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBodyAdd is the budget's cost per body message: one atomic add, and one more to
// give the bytes back at the end of the stream.
func BenchmarkBodyAdd(b *testing.B) {
	chunk := make([]byte, 16<<10)
	for _, bc := range []struct {
		name   string
		budget *bodyBudget
	}{{"no budget", nil}, {"budget", &bodyBudget{}}} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.budget != nil {
				bc.budget.limit.Store(256 << 20)
			}
			b.ReportAllocs()
			for b.Loop() {
				bd := body{copy: true, max: 64 << 10, budget: bc.budget}
				bd.add(chunk, true)
				bd.giveBack()
			}
		})
	}
}

// fakeEnd stands for grpc-go's transport stream: it counts the statuses written and closes
// ended at the first.
type fakeEnd struct {
	grpc.ServerTransportStream
	calls atomic.Int32
	ended chan struct{}
}

func (f *fakeEnd) WriteStatus(*status.Status) error {
	if f.calls.Add(1) == 1 && f.ended != nil {
		close(f.ended)
	}
	return nil
}

// ctxStream is a ServerStream that only has a context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }
