package extproc

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// t0 is the injected clock of every test server.
var t0 = time.Date(2026, 10, 13, 9, 30, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// fakeProcessor records what the server hands it.
type fakeProcessor struct {
	needs   traffic.Needs
	maxBody int
	// outOfScope hosts are not tracked.
	outOfScope map[string]bool
	// peek answers Peek; nil returns "".
	peek func(x *traffic.Exchange) (string, string, record.Key)
	// wantBody answers WantBody; nil answers as the engine does, by needs and the content type.
	wantBody func(side traffic.Side, contentType string) bool
	// panicObserve makes Observe panic after recording.
	panicObserve bool
	// keeps makes BodyRegroups and Regroups answer false: neither the request body nor the
	// response changes the grouping.
	keeps bool

	peeks atomic.Int64
	// sessionPeeks counts PeekSession calls (answers without the metadata).
	sessionPeeks atomic.Int64
	mu           sync.Mutex
	observed     []*traffic.Exchange
	ch           chan *traffic.Exchange
}

var _ Processor = (*fakeProcessor)(nil)

func newFake() *fakeProcessor {
	return &fakeProcessor{maxBody: 1 << 10, ch: make(chan *traffic.Exchange, 1024)}
}

func (f *fakeProcessor) InScope(host string) bool { return !f.outOfScope[host] }
func (f *fakeProcessor) Needs() traffic.Needs     { return f.needs }
func (f *fakeProcessor) MaxBodyBytes() int        { return f.maxBody }

func (f *fakeProcessor) WantBody(side traffic.Side, contentType string) bool {
	if f.wantBody != nil {
		return f.wantBody(side, contentType)
	}
	return f.needs.Body(side) && extract.ReadableContentType(contentType)
}

func (f *fakeProcessor) Observe(x *traffic.Exchange) {
	f.mu.Lock()
	f.observed = append(f.observed, x)
	f.mu.Unlock()
	f.ch <- x
	if f.panicObserve {
		panic("observe exploded")
	}
}

func (f *fakeProcessor) Peek(x *traffic.Exchange) (string, string, record.Key) {
	f.peeks.Add(1)
	if f.peek == nil {
		return "", "", record.Key{}
	}
	return f.peek(x)
}

func (f *fakeProcessor) PeekSession(x *traffic.Exchange) (string, record.Key) {
	f.sessionPeeks.Add(1)
	if f.peek == nil {
		return "", record.Key{}
	}
	session, _, key := f.peek(x)
	return session, key
}

// all returns the exchanges observed so far.
func (f *fakeProcessor) all() []*traffic.Exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*traffic.Exchange(nil), f.observed...)
}

// next waits for the next observed exchange; streams end asynchronously when the client resets.
func (f *fakeProcessor) next(t *testing.T) *traffic.Exchange {
	t.Helper()
	select {
	case x := <-f.ch:
		return x
	case <-time.After(10 * time.Second):
		t.Fatal("Observe was not called within 10s")
		return nil
	}
}

// startServer serves srv over bufconn and returns a connected client.
func startServer(t testing.TB, srv *Server, o GRPCOptions) (extprocv3.ExternalProcessorClient, *grpc.ClientConn) {
	t.Helper()
	gs, err := NewGRPCServer(srv, o)
	if err != nil {
		t.Fatalf("NewGRPCServer: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn := dialBuf(t, lis)
	return extprocv3.NewExternalProcessorClient(conn), conn
}

func dialBuf(t testing.TB, lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Regroups and BodyRegroups: every response phase asks Peek again, unless keeps.
func (f *fakeProcessor) Regroups(*traffic.Exchange, bool) bool { return !f.keeps }
func (f *fakeProcessor) BodyRegroups(record.Key) bool          { return !f.keeps }
