package e2e

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/e2e/internal/harness"
	"github.com/apisessions/apisessions/envoy"
	"github.com/apisessions/apisessions/extproc/noop"
)

// stalledProcessor holds every stream until released, then behaves like the no-op server: the
// slowest possible processor, with no timing involved.
type stalledProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
	release  chan struct{}
	messages atomic.Int64
}

func (s *stalledProcessor) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	select {
	case <-s.release:
	case <-stream.Context().Done():
		return nil
	}
	return noop.Server{}.Process(countingStream{stream, &s.messages})
}

type countingStream struct {
	extprocv3.ExternalProcessor_ProcessServer
	n *atomic.Int64
}

func (c countingStream) Recv() (*extprocv3.ProcessingRequest, error) {
	m, err := c.ExternalProcessor_ProcessServer.Recv()
	if err == nil {
		c.n.Add(1)
	}
	return m, err
}

// TestObservabilityAddsNoWait: in observability mode a processor that answers nothing at all
// never delays a request, while inline mode waits for it up to message_timeout and then fails
// open. The comparison is against the processor's stall, not a timing threshold.
func TestObservabilityAddsNoWait(t *testing.T) {
	t.Parallel()
	stalled := &stalledProcessor{release: make(chan struct{})}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, stalled)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A configuration whose bootstraps read bodies in both directions.
	srvCfg := startServer(t, seedConfig)
	up := startUpstream(t)
	fronts := map[string]*front{}
	for _, mode := range []string{envoy.ModeObservability, envoy.ModeInline} {
		fronts[mode] = startFront(t, srvCfg, up, mode, func(o *harness.Options) {
			o.Processor = extprocv3.NewExternalProcessorClient(conn)
		})
	}

	const n = 20
	c := client{addr: "198.51.100.5:700", ua: "probe"}
	for i := range n {
		r := fronts[envoy.ModeObservability].do(t, c, "POST", "/login", `{"username":"u`+strings.Repeat("x", i)+`","password":"demo"}`)
		if r.status != 200 {
			t.Fatalf("request %d answered %d while the processor stalls", i, r.status)
		}
	}
	if got := stalled.messages.Load(); got != 0 {
		t.Fatalf("the stalled processor read %d messages; the test needs it to read none yet", got)
	}
	obs := fronts[envoy.ModeObservability].proxy
	if st := obs.Stats(); st.Timeouts != 0 || st.FailedOpen != 0 {
		t.Errorf("observability mode: %d timeouts, %d fail-open events; want none", st.Timeouts, st.FailedOpen)
	}

	// Inline, the same processor holds the request until message_timeout, then Envoy fails open.
	began := time.Now()
	r := fronts[envoy.ModeInline].do(t, c, "GET", "/", "")
	waited := time.Since(began)
	en, _ := fronts[envoy.ModeInline].proxy.Entry(r.id)
	if r.status != 200 || en.Outcome != "failed_open:message_timeout" || waited < 200*time.Millisecond {
		t.Errorf("inline: status %d outcome %q after %v; want 200 after failing open at message_timeout (200ms)", r.status, en.Outcome, waited)
	}

	// Released, the processor gets every copy: headers both ways, STREAMED bodies both ways.
	close(stalled.release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := obs.Wait(ctx); err != nil {
		t.Fatalf("side streams: %v", err)
	}
	if got, want := stalled.messages.Load(), int64(4*n); got < want {
		t.Errorf("the processor received %d messages after release; want at least %d", got, want)
	}
	if d := obs.Stats().QueueDrops; d != 0 {
		t.Errorf("%d copies dropped from the side stream queues", d)
	}
}
