package extproc

import (
	"context"
	"hash/fnv"
	"io"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/extproc/noop"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// benchProcessor stands in for the sessions engine: with work set, Observe hashes what a
// grouping step reads (method, host, path, every header) and builds a record.
type benchProcessor struct{ work bool }

func (benchProcessor) InScope(string) bool  { return true }
func (benchProcessor) Needs() traffic.Needs { return traffic.Needs{} }
func (benchProcessor) MaxBodyBytes() int    { return 1 << 10 }
func (benchProcessor) Peek(*traffic.Exchange) (string, string, record.Key) {
	return "", "", record.Key{}
}
func (benchProcessor) PeekSession(*traffic.Exchange) (string, record.Key) { return "", record.Key{} }

func (benchProcessor) WantBody(traffic.Side, string) bool { return false }

// benchEmit receives the records benchProcessor builds, as the engine's emitter would; a call
// through a variable keeps the record on the heap, as emitting it does.
var benchEmit = func(record.Record) {}

func (p benchProcessor) Observe(x *traffic.Exchange) {
	if !p.work {
		return
	}
	h := fnv.New64a()
	for _, s := range []string{x.Method, x.Host, x.Path} {
		_, _ = io.WriteString(h, s)
	}
	for _, hd := range x.RequestHeaders {
		_, _ = io.WriteString(h, hd.Name)
		_, _ = io.WriteString(h, hd.Value)
	}
	benchEmit(&record.Request{Kind: record.KindRequest, RequestID: x.RequestID, Method: x.Method,
		Host: x.Host, Path: x.Path, Status: x.Status, Key: record.Key{Source: record.SourceFallback, Name: "ip+ua"},
		Session: string(h.Sum(nil))})
}

// benchExchange is a typical API call: a GET with browser-like headers and a JSON answer.
func benchExchange() []*extprocv3.ProcessingRequest {
	x := getExchange()
	x.RequestHeaders = append(x.RequestHeaders, protomsg.Pairs(
		"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36",
		"accept", "application/json", "accept-encoding", "gzip, br", "accept-language", "en-GB,en;q=0.9",
		"authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl",
		"x-forwarded-for", "203.0.113.7", "x-request-id", "5f8e0c4e-2b1c-4d5e-9a3b-1f2e3d4c5b6a",
		"x-client-ja4", "t13d1516h2_8daaf6152771_02713d6af862")...)
	x.ResponseHeaders = protomsg.Pairs(":status", "200", "content-type", "application/json", "content-length", "512",
		"cache-control", "no-store", "date", "Tue, 13 Oct 2026 09:30:00 GMT")
	return protomsg.Sequence(x, protomsg.Options{})
}

func benchClient(b *testing.B, server func() *grpc.Server) extprocv3.ExternalProcessorClient {
	b.Helper()
	gs := server()
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	return extprocv3.NewExternalProcessorClient(dialBuf(b, lis))
}

// benchGRPCServer is the gRPC server apisessions runs: NewGRPCServer's, with its decoder.
func benchGRPCServer(b *testing.B, srv *Server) *grpc.Server {
	return benchGRPCServerWith(b, srv, GRPCOptions{})
}

// benchBounds are the stream bounds apisessions runs with by default.
var benchBounds = GRPCOptions{MaxConcurrentStreams: 1000, MaxStreams: 10000, StreamIdleTimeout: time.Minute}

func benchGRPCServerWith(b *testing.B, srv *Server, o GRPCOptions) *grpc.Server {
	gs, err := NewGRPCServer(srv, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(gs.limits.wait) // after the caller stops the gRPC server
	return gs.gs
}

// BenchmarkStream measures one whole exchange (request headers + response headers, inline
// mode). Over bufconn the gRPC transport dominates; NoopServer is the baseline that answers
// CONTINUE and records nothing. Direct drives Process through an in-memory stream to show
// the server's own cost; it hands apisessions generated messages, which Process reads through
// fromProto (a copy of each header value), where the gRPC handler decodes the wire instead.
func BenchmarkStream(b *testing.B) {
	msgs := benchExchange()
	servers := []struct {
		name   string
		server func() *grpc.Server
	}{
		{"NoopServer", func() *grpc.Server {
			gs := grpc.NewServer()
			extprocv3.RegisterExternalProcessorServer(gs, noop.Server{})
			return gs
		}},
		{"Server/NoopProcessor", func() *grpc.Server { return benchGRPCServer(b, New(Settings{Processor: benchProcessor{}})) }},
		{"Server/WorkingProcessor", func() *grpc.Server {
			return benchGRPCServer(b, New(Settings{Processor: benchProcessor{work: true}}))
		}},
		// The default bounds: the stream interceptor, its idle timer and the body budget.
		{"Server/WorkingProcessor/bounded", func() *grpc.Server {
			return benchGRPCServerWith(b, New(Settings{Processor: benchProcessor{work: true}, BodyBudgetBytes: 256 << 20}), benchBounds)
		}},
		// The same with a memory limit far above what the benchmark takes: the guard samples
		// the process's resident memory and never refuses.
		{"Server/WorkingProcessor/bounded+memory", func() *grpc.Server {
			o := benchBounds
			o.MemoryLimitBytes = 1 << 40
			return benchGRPCServerWith(b, New(Settings{Processor: benchProcessor{work: true}, BodyBudgetBytes: 256 << 20}), o)
		}},
	}
	for _, s := range servers {
		b.Run(s.name+"/serial", func(b *testing.B) {
			client := benchClient(b, s.server)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protomsg.Exchange(ctx, client, msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			client := benchClient(b, s.server)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := protomsg.Exchange(ctx, client, msgs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	direct := []struct {
		name string
		srv  extprocv3.ExternalProcessorServer
	}{
		{"Direct/NoopServer", noop.Server{}},
		{"Direct/Server/NoopProcessor", New(Settings{Processor: benchProcessor{}})},
		{"Direct/Server/WorkingProcessor", New(Settings{Processor: benchProcessor{work: true}})},
	}
	for _, d := range direct {
		b.Run(d.name, func(b *testing.B) {
			st := &replayStream{ctx: context.Background(), msgs: msgs}
			b.ReportAllocs()
			for b.Loop() {
				st.next, st.sent = 0, 0
				if err := d.srv.Process(st); err != nil {
					b.Fatal(err)
				}
				if st.sent != len(msgs) {
					b.Fatalf("sent %d answers; want %d", st.sent, len(msgs))
				}
			}
		})
	}
}

// replayStream is an in-memory ext_proc stream: it replays msgs, then io.EOF, and counts
// answers (keeping them when keep is set).
type replayStream struct {
	grpc.ServerStream
	ctx     context.Context
	msgs    []*extprocv3.ProcessingRequest
	next    int
	sent    int
	keep    bool
	answers []*extprocv3.ProcessingResponse
}

func (s *replayStream) Context() context.Context { return s.ctx }

func (s *replayStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if s.next == len(s.msgs) {
		return nil, io.EOF
	}
	s.next++
	return s.msgs[s.next-1], nil
}

// Send keeps r as the peer reads it: shared answers are pre-encoded, so only their encoding
// shows their content.
func (s *replayStream) Send(r *extprocv3.ProcessingResponse) error {
	s.sent++
	if s.keep {
		b, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		var got extprocv3.ProcessingResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			return err
		}
		s.answers = append(s.answers, &got)
	}
	return nil
}

// Regroups: every response phase asks Peek again.
func (benchProcessor) Regroups(*traffic.Exchange, bool) bool { return true }
func (benchProcessor) BodyRegroups(record.Key) bool          { return true }
