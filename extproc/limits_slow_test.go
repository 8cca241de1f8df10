package extproc

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// countingProcessor wants request bodies and counts what it observes, without keeping it.
type countingProcessor struct{ observed atomic.Int64 }

func (*countingProcessor) InScope(string) bool  { return true }
func (*countingProcessor) Needs() traffic.Needs { return traffic.Needs{RequestBody: true} }
func (*countingProcessor) MaxBodyBytes() int    { return 64 << 10 }
func (*countingProcessor) Peek(*traffic.Exchange) (string, string, record.Key) {
	return "", "", record.Key{}
}
func (*countingProcessor) PeekSession(*traffic.Exchange) (string, record.Key) {
	return "", record.Key{}
}

func (*countingProcessor) WantBody(traffic.Side, string) bool { return true }

func (p *countingProcessor) Observe(*traffic.Exchange) {
	p.observed.Add(1)
}

// TestStalledStreamsStayWithinTheBodyBudget is the flood the bounds exist for: 20,000 streams
// over 20 connections to NewGRPCServer's server each send request headers and a 60 KiB body
// chunk, then stall. The
// bodies kept stay within the budget — exactly as many as fit, the rest counted — every
// stream is still recorded once it ends, and the budget is all given back.
func TestStalledStreamsStayWithinTheBodyBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 streams and moves 1.2 GB through gRPC; make test-slow runs it")
	}
	const (
		conns      = 20
		perConn    = 1000
		streams    = conns * perConn
		chunkBytes = 60 << 10
		budget     = 256 << 20
	)
	proc := &countingProcessor{}
	srv := New(Settings{Processor: proc, BodyBudgetBytes: budget})
	gs, err := NewGRPCServer(srv, GRPCOptions{MaxConcurrentStreams: perConn, MaxStreams: streams, StreamIdleTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Encoded once and sent as they are: the cost is the server's, not the client's encoder.
	var msgs [][]byte
	for _, m := range []*extprocv3.ProcessingRequest{
		protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "POST", ":path", "/upload"), false),
		protomsg.RequestBody(make([]byte, chunkBytes), false),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	var stalled, ended sync.WaitGroup
	var failed atomic.Int64
	for range conns {
		conn := dialBuf(t, lis)
		for range perConn {
			stalled.Add(1)
			ended.Add(1)
			go func() {
				defer ended.Done()
				if err := stallRaw(ctx, conn, msgs); err != nil {
					failed.Add(1)
					t.Errorf("open a stalled stream: %v", err)
				}
				stalled.Done()
				<-ctx.Done()
			}()
		}
	}
	stalled.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}

	s := srv.Stats()
	kept := int64(budget / chunkBytes)
	t.Logf("%d stalled streams: body bytes held %d of a budget of %d, bodies over budget %d",
		s.StreamsOpen, s.BodyBytesHeld, budget, s.BodiesOverBudget)
	if s.StreamsOpen != streams || s.BodyBytesHeld != kept*chunkBytes || s.BodiesOverBudget != uint64(streams-kept) {
		t.Errorf("streams open %d, body bytes held %d, bodies over budget %d; want %d, %d (the %d bodies that fit), %d",
			s.StreamsOpen, s.BodyBytesHeld, s.BodiesOverBudget, streams, kept*chunkBytes, kept, streams-kept)
	}

	cancel()
	ended.Wait()
	gs.Stop() // returns once every stream has handed on its exchange
	s = srv.Stats()
	if s.StreamsOpen != 0 || s.BodyBytesHeld != 0 || proc.observed.Load() != streams {
		t.Errorf("after the flood: streams open %d, body bytes held %d, exchanges observed %d; want 0, 0, %d",
			s.StreamsOpen, s.BodyBytesHeld, proc.observed.Load(), streams)
	}
}

// stallRaw opens a stream, sends the encoded msgs, each answered, and leaves it open.
func stallRaw(ctx context.Context, conn *grpc.ClientConn, msgs [][]byte) error {
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		extprocv3.ExternalProcessor_Process_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := cs.SendMsg(&m); err != nil {
			return err
		}
		var answer []byte
		if err := cs.RecvMsg(&answer); err != nil {
			return err
		}
	}
	return nil
}

// Regroups: every response phase asks Peek again.
func (*countingProcessor) Regroups(*traffic.Exchange, bool) bool { return true }
func (*countingProcessor) BodyRegroups(record.Key) bool          { return true }
