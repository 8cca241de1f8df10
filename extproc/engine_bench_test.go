package extproc_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/extproc/noop"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sinks"
)

// engineBenchConfig is the configuration the throughput target is stated for: four grouping
// keys in file order (a JSON request body, the query, a cookie, a header), six context
// parameters over a header, a cookie, the query, the JSON request body, a JWT claim and the
// JSON response body (two of them hashed), the JA3 header, and the ip + user agent + ja3
// fallback. Inline mode adds the session header and the dynamic metadata (the defaults).
const engineBenchConfig = `
sessions:
  fallback: [ip, user_agent, ja3]
tls:
  ja3_header: x-client-ja3
parameters:
  - {name: body_token, in: request.body, path: $.token, group: true, hashed: true}
  - {name: query_token, in: request.query, key: token, group: true, hashed: true}
  - {name: sid_cookie, in: request.cookie, key: sid, group: true, hashed: true}
  - {name: api_session, in: request.header, key: x-api-session, group: true}
  - {name: username, in: request.header, key: authorization, decode: jwt, path: $.details.username, type: user}
  - {name: role, in: request.header, key: x-role, type: role}
  - {name: tenant, in: request.cookie, key: tenant}
  - {name: page, in: request.query, key: page}
  - {name: email, in: request.body, path: $.customer.email, hashed: true}
  - {name: order_status, in: response.body, path: $.order.status}
`

// benchSessions is how many distinct sessions the benchmark traffic cycles through, so that
// parallel streams do not all contend for one part.
const benchSessions = 64

// benchTraffic returns benchSessions Envoy-shaped exchanges. With bodies, each is a POST with a
// JSON request body and a JSON answer, both sent BUFFERED_PARTIAL; without, a GET and its
// response headers. Every message sequence is built once, outside the timed loop.
func benchTraffic(b *testing.B, bodies bool) [][]*extprocv3.ProcessingRequest {
	b.Helper()
	mode := &filterv3.ProcessingMode{}
	if bodies {
		mode.RequestBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
		mode.ResponseBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	start := time.Date(2026, 10, 13, 9, 30, 0, 0, time.UTC)
	out := make([][]*extprocv3.ProcessingRequest, benchSessions)
	for i := range out {
		claims := fmt.Sprintf(`{"sub":"user-%d","iat":1760347800,"exp":1760351400,"details":{"username":"user%d@example.com","rnd":"some_data"}}`, i, i)
		jwt := testutil.JWT(claims)
		x := &traffic.Exchange{
			RequestID:     fmt.Sprintf("5f8e0c4e-2b1c-4d5e-9a3b-%012d", i),
			Start:         start,
			SourceAddress: fmt.Sprintf("203.0.113.%d:51234", i+1),
			Method:        "GET",
			Scheme:        "https",
			Host:          "api.example.com",
			Path:          fmt.Sprintf("/api/v1/orders/%d?page=3&token=qt-%d", 1000+i, i),
			RequestHeaders: protomsg.Pairs(
				"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36",
				"accept", "application/json",
				"accept-encoding", "gzip, br",
				"accept-language", "en-GB,en;q=0.9",
				"authorization", "Bearer "+jwt,
				"cookie", fmt.Sprintf("theme=dark; tenant=acme; sid=sid-%d; consent=1", i),
				"x-api-session", fmt.Sprintf("as-%d", i),
				"x-role", "buyer",
				"x-client-ja3", "e7d705a3286e19ea42f587b344ee6865",
				"x-forwarded-proto", "https",
			),
			ResponseSeen: true,
			Status:       200,
			ResponseHeaders: protomsg.Pairs(
				"content-type", "application/json",
				"cache-control", "no-store",
				"date", "Tue, 13 Oct 2026 09:30:00 GMT",
			),
		}
		if bodies {
			x.Method = "POST"
			x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-type", Value: "application/json"})
			x.RequestBody = fmt.Appendf(nil, `{"token":"bt-%d","customer":{"email":"user%d@example.com","name":"Jane Doe","phone":"+44 20 7946 0000"},`+
				`"items":[{"sku":"A-1","qty":2,"price":19.99},{"sku":"B-7","qty":1,"price":5.5},{"sku":"C-3","qty":4,"price":0.25}],`+
				`"shipping":{"method":"express","address":{"line1":"1 Main Street","city":"London","postcode":"N1 9GU","country":"GB"}},`+
				`"note":"please deliver after 5pm","coupon":null,"gift":false}`, i, i)
			x.ResponseBody = fmt.Appendf(nil, `{"order":{"id":%d,"status":"accepted","total":46.48,"currency":"GBP","eta":"2026-10-15"},`+
				`"links":{"self":"/api/v1/orders/%d","payment":"/api/v1/payments/%d"}}`, 1000+i, 1000+i, 1000+i)
		}
		out[i] = protomsg.Sequence(x, protomsg.Options{Mode: mode})
	}
	return out
}

// newBenchEngine compiles engineBenchConfig into an engine that emits into em.
func newBenchEngine(b *testing.B, em sessions.Emitter) *sessions.Engine {
	b.Helper()
	cfg, err := config.ParseAndValidate("bench.yaml", []byte(engineBenchConfig))
	if err != nil {
		b.Fatal(err)
	}
	e, err := sessions.New(cfg, sessions.Settings{Emitter: em, HashKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	return e
}

func newEngineServer(e *sessions.Engine) *extproc.Server {
	return extproc.New(extproc.Settings{
		Processor:       e,
		SessionHeader:   "x-apisessions-session",
		DynamicMetadata: true,
	})
}

// discardEmitter drops every record: the engine's own cost without any sink.
type discardEmitter struct{}

func (discardEmitter) Emit(record.Record) {}

// recordingEmitter hands request records to a channel, for the check that the traffic
// exercises what the configuration names.
type recordingEmitter struct{ reqs chan *record.Request }

func (r recordingEmitter) Emit(rec record.Record) {
	if q, ok := rec.(*record.Request); ok {
		select {
		case r.reqs <- q:
		default:
		}
	}
}

// checkBenchTraffic plays one exchange through an engine and fails unless it was grouped by
// the expected key with every context parameter that its traffic carries.
func checkBenchTraffic(b *testing.B, msgs []*extprocv3.ProcessingRequest, bodies bool) {
	b.Helper()
	em := recordingEmitter{reqs: make(chan *record.Request, 1)}
	client := bufClient(b, newEngineServer(newBenchEngine(b, em)))
	if _, err := protomsg.Exchange(context.Background(), client, msgs); err != nil {
		b.Fatal(err)
	}
	// The stream's end reaches the engine after the client has its last answer.
	var rec *record.Request
	select {
	case rec = <-em.reqs:
	case <-time.After(5 * time.Second):
		b.Fatal("no request record within 5s")
	}
	wantKey, wantParams := "query_token", 7
	if bodies {
		wantKey, wantParams = "body_token", 10
	}
	if rec.Key.Name != wantKey || len(rec.Params) != wantParams || rec.User == "" || rec.Role == "" || rec.JA3 == "" {
		b.Fatalf("record grouped by %q with %d params (user %t, role %t, ja3 %t); want %q with %d and all three",
			rec.Key.Name, len(rec.Params), rec.User != "", rec.Role != "", rec.JA3 != "", wantKey, wantParams)
	}
}

// bufClient serves srv over an in-memory connection and returns a client of it: an
// apisessions server as NewGRPCServer serves it, with its decoder; any other server (the
// no-op one) on a plain gRPC server.
func bufClient(b *testing.B, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	b.Helper()
	var gs interface {
		Serve(net.Listener) error
		Stop()
	}
	if s, ok := srv.(*extproc.Server); ok {
		ours, err := extproc.NewGRPCServer(s, extproc.GRPCOptions{})
		if err != nil {
			b.Fatal(err)
		}
		gs = ours
	} else {
		plain := grpc.NewServer()
		extprocv3.RegisterExternalProcessorServer(plain, srv)
		gs = plain
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// BenchmarkServerWithEngine measures one whole exchange (request headers, JSON request body,
// response headers, JSON response body; inline mode) through the real server backed by a real
// engine, beside the same exchange against the no-op server, over the same in-memory gRPC
// transport. The client plays each exchange as Envoy does by default (protomsg.Play): it
// resets the stream after the last answer instead of waiting for the server's status, so the
// work a server does at the end of a stream (apisessions' Observe) costs CPU but no latency,
// as in Envoy. The ratio of apisessions' throughput to the no-op server's is NoopServer's ns/op
// divided by Engine's, from one run. Engine/Discard drops records at the emitter;
// Engine/DiscardPlain is the same without the session header and the dynamic metadata;
// Engine/Pipeline queues records to a sink worker that discards them. Direct plays the
// messages in without gRPC: the server's own work per exchange.
func BenchmarkServerWithEngine(b *testing.B) {
	for _, tr := range []struct {
		name   string
		bodies bool
	}{{"json-bodies", true}, {"headers-only", false}} {
		seqs := benchTraffic(b, tr.bodies)
		checkBenchTraffic(b, seqs[0], tr.bodies)
		servers := []struct {
			name string
			make func(b *testing.B) extprocv3.ExternalProcessorServer
		}{
			{"NoopServer", func(*testing.B) extprocv3.ExternalProcessorServer { return noop.Server{} }},
			{"Engine/Discard", func(b *testing.B) extprocv3.ExternalProcessorServer {
				return newEngineServer(newBenchEngine(b, discardEmitter{}))
			}},
			{"Engine/DiscardPlain", func(b *testing.B) extprocv3.ExternalProcessorServer {
				// Inline additions off: the cost of the session header and the metadata is
				// the difference to Engine/Discard.
				return extproc.New(extproc.Settings{Processor: newBenchEngine(b, discardEmitter{})})
			}},
			{"Engine/Pipeline", func(b *testing.B) extprocv3.ExternalProcessorServer {
				p := sinks.NewPipeline(nil, []sinks.Output{{Name: "discard", Sink: testutil.DiscardSink{}}})
				b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
				return newEngineServer(newBenchEngine(b, p))
			}},
		}
		// direct: the no-op server's Process with the messages as they are; apisessions read
		// from their encoding as its gRPC handler reads them (ServeEncoded), decoding included.
		encoded := make([][][]byte, len(seqs))
		for i, seq := range seqs {
			for _, m := range seq {
				e, err := proto.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				encoded[i] = append(encoded[i], e)
			}
		}
		b.Run(tr.name+"/NoopServer/direct", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := (noop.Server{}).Process(&directStream{msgs: seqs[i%len(seqs)]}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(tr.name+"/Engine/Discard/direct", func(b *testing.B) {
			srv := newEngineServer(newBenchEngine(b, discardEmitter{}))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := extproc.ServeEncoded(srv, encoded[i%len(encoded)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		for _, s := range servers {
			b.Run(tr.name+"/"+s.name+"/serial", func(b *testing.B) {
				client := bufClient(b, s.make(b))
				ctx := context.Background()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := protomsg.Play(ctx, client, seqs[i%len(seqs)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(tr.name+"/"+s.name+"/parallel", func(b *testing.B) {
				client := bufClient(b, s.make(b))
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, err := protomsg.Play(ctx, client, seqs[i%len(seqs)]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}

// directStream plays msgs into Process without a transport and drops the answers.
type directStream struct {
	grpc.ServerStream
	msgs []*extprocv3.ProcessingRequest
	next int
}

func (s *directStream) Context() context.Context { return context.Background() }

func (s *directStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if s.next == len(s.msgs) {
		return nil, io.EOF
	}
	s.next++
	return s.msgs[s.next-1], nil
}

func (s *directStream) Send(*extprocv3.ProcessingResponse) error { return nil }
