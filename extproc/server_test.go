package extproc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

var pairs = protomsg.Pairs

// getExchange is a GET with its response, as the test client sends it.
func getExchange() *traffic.Exchange {
	return &traffic.Exchange{
		RequestID:     "req-1",
		Start:         t0.Add(-time.Second),
		Method:        "GET",
		Scheme:        "https",
		Host:          "api.example",
		Path:          "/v1/items?page=2",
		SourceAddress: "203.0.113.7:5123",
		RequestHeaders: pairs(":method", "GET", ":scheme", "https", ":authority", "api.example",
			":path", "/v1/items?page=2", "cookie", "sid=abc"),
		ResponseSeen:    true,
		Status:          200,
		ResponseHeaders: pairs(":status", "200", "content-length", "42"),
	}
}

// postExchange is a POST with a body and a 201 answer.
func postExchange(body string) *traffic.Exchange {
	x := getExchange()
	x.Method = "POST"
	x.Path = "/v1/orders"
	x.RequestHeaders = pairs(":method", "POST", ":scheme", "https", ":authority", "api.example",
		":path", "/v1/orders", "content-type", "application/json")
	x.RequestBody = []byte(body)
	x.Status = 201
	x.ResponseHeaders = pairs(":status", "201")
	return x
}

func modeOf(reqBody, respBody filterv3.ProcessingMode_BodySendMode) *filterv3.ProcessingMode {
	return &filterv3.ProcessingMode{RequestBodyMode: reqBody, ResponseBodyMode: respBody}
}

func msgs(m ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingRequest { return m }

func TestPhases(t *testing.T) {
	t.Parallel()
	hugeHeaders := pairs(":authority", "api.example", ":method", "GET")
	for i := range 2000 {
		hugeHeaders = append(hugeHeaders, traffic.Header{Name: fmt.Sprintf("x-h%d", i), Value: "v"})
	}

	cases := []struct {
		name     string
		fake     func(*fakeProcessor)
		settings func(*Settings)
		msgs     []*extprocv3.ProcessingRequest
		// want is the one observed exchange; nil means nothing is observed.
		want *traffic.Exchange
		// check, when set, replaces the comparison with want.
		check func(t *testing.T, x *traffic.Exchange)
		stats func(t *testing.T, s Stats)
	}{
		{
			name: "request and response headers in the default mode",
			msgs: protomsg.Sequence(getExchange(), protomsg.Options{}),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.End = t0
				x.ResponseBytes = 42
				return x
			}(),
			stats: func(t *testing.T, s Stats) {
				want := PhaseCounts{PhaseRequestHeaders: 1, PhaseResponseHeaders: 1}
				if s.Inline != want || s.Observability != (PhaseCounts{}) {
					t.Errorf("messages: inline %+v, observability %+v; want inline %+v only", s.Inline, s.Observability, want)
				}
				if s.Observed != 1 || s.Streams != 1 || s.ProtocolErrors != 0 {
					t.Errorf("stats %+v; want one stream observed, no protocol errors", s)
				}
			},
		},
		{
			name: "only request headers, as for a local reply",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.ResponseSeen = false
				return protomsg.Sequence(x, protomsg.Options{})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.ResponseSeen, x.Status, x.ResponseHeaders = false, 0, nil
				x.End, x.Partial = t0, true
				return x
			}(),
		},
		{
			name: "without attributes the id comes from x-request-id and the start from the clock",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.RequestID, x.Start, x.SourceAddress = "", time.Time{}, ""
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "x-request-id", Value: "hdr-id"})
				return protomsg.Sequence(x, protomsg.Options{})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.RequestID, x.Start, x.SourceAddress = "hdr-id", t0, ""
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "x-request-id", Value: "hdr-id"})
				x.End, x.ResponseBytes = t0, 42
				return x
			}(),
		},
		{
			// A replay sends the recorded time; the server's clock says the response came at
			// once. The duration is this server's, not the distance between the two clocks.
			name: "a request.time far from the clock: the duration counts from receipt",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.Start = t0.Add(-30 * 24 * time.Hour)
				return protomsg.Sequence(x, protomsg.Options{})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.Start = t0.Add(-30 * 24 * time.Hour)
				x.End, x.ResponseBytes = x.Start, 42
				return x
			}(),
		},
		{
			// A replay of a recording sends the duration the recording holds.
			name: "a request.duration attribute gives the duration",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.Start = t0.Add(-30 * 24 * time.Hour)
				return protomsg.Sequence(x, protomsg.Options{ResponseAttributes: map[string]any{"request.duration": "0.250s"}})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.Start = t0.Add(-30 * 24 * time.Hour)
				x.End, x.ResponseBytes = x.Start.Add(250*time.Millisecond), 42
				return x
			}(),
		},
		{
			name: "a request.duration that is not a sane duration is ignored",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				return protomsg.Sequence(x, protomsg.Options{ResponseAttributes: map[string]any{"request.duration": "-1s"}})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.End, x.ResponseBytes = t0, 42
				return x
			}(),
		},
		{
			name: "response.code gives the status when :status is missing",
			msgs: msgs(
				protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "GET"), true),
				protomsg.WithAttributes(protomsg.ResponseHeaders(pairs("server", "up"), true),
					map[string]any{"response.code": 503}),
			),
			want: &traffic.Exchange{
				Start: t0, End: t0, Method: "GET", Host: "api.example",
				RequestHeaders: pairs(":authority", "api.example", ":method", "GET"),
				ResponseSeen:   true, Status: 503, ResponseHeaders: pairs("server", "up"),
			},
		},
		{
			name: "BUFFERED request body is copied whole",
			fake: func(f *fakeProcessor) { f.needs.RequestBody = true },
			msgs: protomsg.Sequence(postExchange(`{"user":"ann"}`),
				protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_NONE)}),
			want: func() *traffic.Exchange {
				x := postExchange(`{"user":"ann"}`)
				x.RequestBytes, x.End = 14, t0
				return x
			}(),
		},
		{
			name: "STREAMED chunks past the cap are counted, not copied",
			fake: func(f *fakeProcessor) { f.needs.RequestBody, f.maxBody = true, 8 },
			msgs: protomsg.Sequence(postExchange("abcdefghijklmnopqrst"),
				protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_NONE), ChunkSize: 6}),
			want: func() *traffic.Exchange {
				x := postExchange("abcdefgh")
				x.RequestBodyTruncated, x.RequestBytes, x.End = true, 20, t0
				return x
			}(),
			stats: func(t *testing.T, s Stats) {
				if s.Inline[PhaseRequestBody] != 4 {
					t.Errorf("request body messages = %d; want 4 chunks of at most 6 bytes", s.Inline[PhaseRequestBody])
				}
			},
		},
		{
			name: "BUFFERED_PARTIAL over the buffer limit is a truncated body of a complete exchange",
			fake: func(f *fakeProcessor) { f.needs.RequestBody = true },
			msgs: protomsg.Sequence(postExchange("0123456789abcdefghijklmno"),
				protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_BUFFERED_PARTIAL, filterv3.ProcessingMode_NONE), BufferLimit: 10}),
			want: func() *traffic.Exchange {
				x := postExchange("0123456789")
				x.RequestBodyTruncated, x.RequestBytes, x.End = true, 10, t0
				return x
			}(),
		},
		{
			name: "BUFFERED_PARTIAL response body cut by the limit does not make the exchange partial",
			fake: func(f *fakeProcessor) { f.needs.ResponseBody = true },
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.ResponseHeaders = pairs(":status", "200")
				x.ResponseBody = []byte("0123456789")
				return protomsg.Sequence(x, protomsg.Options{
					Mode: modeOf(filterv3.ProcessingMode_NONE, filterv3.ProcessingMode_BUFFERED_PARTIAL), BufferLimit: 4})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.ResponseHeaders = pairs(":status", "200")
				x.ResponseBody, x.ResponseBodyTruncated, x.ResponseBytes, x.End = []byte("0123"), true, 4, t0
				return x
			}(),
		},
		{
			name: "a body the processor does not read is counted only",
			msgs: protomsg.Sequence(postExchange("abcdefghijklmnopqrst"),
				protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_NONE), ChunkSize: 7}),
			want: func() *traffic.Exchange {
				x := postExchange("")
				x.RequestBody, x.RequestBytes, x.End = nil, 20, t0
				return x
			}(),
		},
		{
			name: "trailers in both directions end the bodies",
			fake: func(f *fakeProcessor) { f.needs = traffic.Needs{RequestBody: true, ResponseBody: true} },
			msgs: func() []*extprocv3.ProcessingRequest {
				x := postExchange("ab")
				x.RequestTrailers = pairs("x-checksum", "1")
				x.ResponseBody = []byte("cd")
				x.ResponseTrailers = pairs("grpc-status", "0")
				return protomsg.Sequence(x, protomsg.Options{Mode: &filterv3.ProcessingMode{
					RequestBodyMode: filterv3.ProcessingMode_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
					RequestTrailerMode: filterv3.ProcessingMode_SEND, ResponseTrailerMode: filterv3.ProcessingMode_SEND,
				}})
			}(),
			want: func() *traffic.Exchange {
				x := postExchange("ab")
				x.RequestTrailers = pairs("x-checksum", "1")
				x.ResponseBody = []byte("cd")
				x.ResponseTrailers = pairs("grpc-status", "0")
				x.RequestBytes, x.ResponseBytes, x.End = 2, 2, t0
				return x
			}(),
			stats: func(t *testing.T, s Stats) {
				want := PhaseCounts{1, 1, 1, 1, 1, 1}
				if s.Inline != want {
					t.Errorf("inline messages %+v; want one of each phase", s.Inline)
				}
			},
		},
		{
			name: "observability mode STREAMED is recorded without answers",
			fake: func(f *fakeProcessor) { f.needs.RequestBody = true },
			msgs: protomsg.Sequence(postExchange("abcdefghij"), protomsg.Options{
				Mode: modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_NONE), ChunkSize: 4, Observability: true}),
			want: func() *traffic.Exchange {
				x := postExchange("abcdefghij")
				x.RequestBytes, x.End = 10, t0
				return x
			}(),
			stats: func(t *testing.T, s Stats) {
				want := PhaseCounts{PhaseRequestHeaders: 1, PhaseRequestBody: 3, PhaseResponseHeaders: 1}
				if s.Observability != want || s.Inline != (PhaseCounts{}) {
					t.Errorf("messages: observability %+v, inline %+v; want observability %+v only", s.Observability, s.Inline, want)
				}
			},
		},
		{
			name: "observability mode sends no BUFFERED body; content-length gives the size",
			fake: func(f *fakeProcessor) { f.needs.RequestBody = true },
			msgs: func() []*extprocv3.ProcessingRequest {
				x := postExchange("abcdefghij")
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-length", Value: "10"})
				return protomsg.Sequence(x, protomsg.Options{
					Mode: modeOf(filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_NONE), Observability: true})
			}(),
			want: func() *traffic.Exchange {
				x := postExchange("")
				x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-length", Value: "10"})
				x.RequestBody, x.RequestBytes, x.End = nil, 10, t0
				return x
			}(),
		},
		{
			name:     "only the configured metadata namespaces are copied",
			settings: func(s *Settings) { s.AttackNamespaces = []string{"waf", "absent"} },
			msgs: protomsg.Sequence(getExchange(), protomsg.Options{Metadata: map[string]map[string]any{
				"waf":   {"verdict": "block", "score": 5, "rules": []any{"941100"}},
				"other": {"secret": "x"},
			}}),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.End, x.ResponseBytes = t0, 42
				x.Metadata = map[string]map[string]any{"waf": {"verdict": "block", "score": 5.0, "rules": []any{"941100"}}}
				return x
			}(),
		},
		{
			name: "raw_value wins over value, and a header with both is a protocol error",
			msgs: msgs(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
				RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true, Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: ":authority", RawValue: []byte("api.example")},
					{Key: "x-both", Value: "from-value", RawValue: []byte("from-raw")},
					{Key: "X-Old-Envoy", Value: "value-only"},
					nil,
				}}}}}),
			want: &traffic.Exchange{
				Start: t0, End: t0, Host: "api.example", Partial: true,
				RequestHeaders: pairs(":authority", "api.example", "x-both", "from-raw", "x-old-envoy", "value-only"),
			},
			stats: func(t *testing.T, s Stats) {
				if s.ProtocolErrors != 1 {
					t.Errorf("protocol errors = %d; want 1 for the header with both value and raw_value", s.ProtocolErrors)
				}
			},
		},
		{
			name: "a huge header list is capped",
			msgs: msgs(protomsg.RequestHeaders(hugeHeaders, true)),
			check: func(t *testing.T, x *traffic.Exchange) {
				if len(x.RequestHeaders) != maxHeaders || x.Host != "api.example" || x.Method != "GET" {
					t.Errorf("kept %d headers, host %q, method %q; want %d headers and the pseudo-headers read",
						len(x.RequestHeaders), x.Host, x.Method, maxHeaders)
				}
			},
			stats: func(t *testing.T, s Stats) {
				if want := uint64(len(hugeHeaders) - maxHeaders); s.HeadersDropped != want {
					t.Errorf("headers dropped = %d; want %d", s.HeadersDropped, want)
				}
			},
		},
		{
			name: "an out-of-scope host is answered and not recorded",
			fake: func(f *fakeProcessor) { f.outOfScope = map[string]bool{"api.example": true} },
			msgs: protomsg.Sequence(postExchange("abc"), protomsg.Options{
				Mode: modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_NONE)}),
			stats: func(t *testing.T, s Stats) {
				if s.OutOfScope != 1 || s.Observed != 0 {
					t.Errorf("out of scope %d, observed %d; want 1 and 0", s.OutOfScope, s.Observed)
				}
			},
		},
		{
			name: "no processor: answered and not recorded",
			settings: func(s *Settings) {
				s.Processor = nil
			},
			msgs: protomsg.Sequence(getExchange(), protomsg.Options{}),
		},
		{
			name: "a body before the request headers is answered and the stream produces nothing",
			msgs: msgs(protomsg.RequestBody([]byte("x"), true), protomsg.ResponseHeaders(pairs(":status", "200"), true)),
			stats: func(t *testing.T, s Stats) {
				if s.ProtocolErrors != 2 {
					t.Errorf("protocol errors = %d; want 2", s.ProtocolErrors)
				}
			},
		},
		{
			name: "response headers before the request are answered and ignored",
			msgs: msgs(protomsg.ResponseHeaders(pairs(":status", "200"), true),
				protomsg.RequestHeaders(pairs(":authority", "api.example"), true)),
			want: &traffic.Exchange{Start: t0, End: t0, Host: "api.example", Partial: true,
				RequestHeaders: pairs(":authority", "api.example")},
		},
		{
			name: "duplicate request headers keep the first",
			msgs: msgs(protomsg.RequestHeaders(pairs(":authority", "first.example"), true),
				protomsg.RequestHeaders(pairs(":authority", "second.example"), true)),
			want: &traffic.Exchange{Start: t0, End: t0, Host: "first.example", Partial: true,
				RequestHeaders: pairs(":authority", "first.example")},
			stats: func(t *testing.T, s Stats) {
				if s.ProtocolErrors != 1 {
					t.Errorf("protocol errors = %d; want 1", s.ProtocolErrors)
				}
			},
		},
		{
			name: "a response body that never ended makes the exchange partial",
			fake: func(f *fakeProcessor) { f.needs.ResponseBody = true },
			msgs: msgs(
				protomsg.RequestHeaders(pairs(":authority", "api.example"), true),
				protomsg.ResponseHeaders(pairs(":status", "200"), false),
				protomsg.ResponseBody([]byte("abc"), false),
			),
			want: &traffic.Exchange{Start: t0, End: t0, Host: "api.example", Partial: true,
				RequestHeaders: pairs(":authority", "api.example"),
				ResponseSeen:   true, Status: 200, ResponseHeaders: pairs(":status", "200"),
				ResponseBody: []byte("abc"), ResponseBodyTruncated: true, ResponseBytes: 3},
		},
		{
			name: "with response headers skipped the body's end completes the response",
			msgs: func() []*extprocv3.ProcessingRequest {
				x := getExchange()
				x.ResponseBody = []byte("hello")
				return protomsg.Sequence(x, protomsg.Options{Mode: &filterv3.ProcessingMode{
					ResponseHeaderMode: filterv3.ProcessingMode_SKIP, ResponseBodyMode: filterv3.ProcessingMode_STREAMED}})
			}(),
			want: func() *traffic.Exchange {
				x := getExchange()
				x.ResponseSeen, x.ResponseHeaders = false, nil
				x.ResponseBytes, x.End = 5, t0
				return x
			}(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			if tc.fake != nil {
				tc.fake(fake)
			}
			s := Settings{Processor: fake, Now: fixedNow}
			if tc.settings != nil {
				tc.settings(&s)
			}
			srv := New(s)
			client, _ := startServer(t, srv, GRPCOptions{})
			got, err := protomsg.Exchange(testContext(t), client, tc.msgs)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			var want []*extprocv3.ProcessingResponse
			for _, m := range tc.msgs {
				if r := protomsg.Continue(m); r != nil {
					want = append(want, r)
				}
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answers differ (-want +got):\n%s", diff)
			}
			observed := fake.all()
			switch {
			case tc.want == nil && tc.check == nil:
				if len(observed) != 0 {
					t.Errorf("observed %d exchanges; want none", len(observed))
				}
			case len(observed) != 1:
				t.Fatalf("observed %d exchanges; want exactly one", len(observed))
			case tc.check != nil:
				tc.check(t, observed[0])
			default:
				if diff := cmp.Diff(tc.want, observed[0], cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("exchange differs (-want +got):\n%s", diff)
				}
			}
			if tc.stats != nil {
				tc.stats(t, srv.Stats())
			}
			if n := srv.Stats().StreamsOpen; n != 0 {
				t.Errorf("streams open after the exchange = %d; want 0", n)
			}
		})
	}
}

// TestInterleaving pipelines STREAMED request chunks with the response, as Envoy does when the
// upstream answers before the request body ends: every message is answered, in order.
func TestInterleaving(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.needs = traffic.Needs{RequestBody: true, ResponseBody: true}
	srv := New(Settings{Processor: fake, Now: fixedNow})
	client, _ := startServer(t, srv, GRPCOptions{})
	stream, err := client.Process(testContext(t))
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	sent := msgs(
		protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "POST"), false),
		protomsg.RequestBody([]byte("one,"), false),
		protomsg.RequestBody([]byte("two,"), false),
		protomsg.ResponseHeaders(pairs(":status", "413"), false),
		protomsg.RequestBody([]byte("three"), true),
		protomsg.ResponseBody([]byte("too large"), true),
	)
	for i, m := range sent {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	var got []*extprocv3.ProcessingResponse
	for range sent {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("receive answer %d: %v", len(got), err)
		}
		got = append(got, r)
	}
	var want []*extprocv3.ProcessingResponse
	for _, m := range sent {
		want = append(want, protomsg.Continue(m))
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("answers differ from one per message in order (-want +got):\n%s", diff)
	}
	x := fake.next(t)
	if string(x.RequestBody) != "one,two,three" || string(x.ResponseBody) != "too large" || x.Partial || x.Status != 413 {
		t.Errorf("exchange: request body %q, response body %q, status %d, partial %v; want both bodies whole, 413, complete",
			x.RequestBody, x.ResponseBody, x.Status, x.Partial)
	}
}

// TestClientReset cancels the client mid-body, as Envoy resets a side stream: the server sees
// codes.Canceled, which is a normal end, and still records the exchange once, as partial.
func TestClientReset(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.needs.RequestBody = true
	srv := New(Settings{Processor: fake, Now: fixedNow})
	client, _ := startServer(t, srv, GRPCOptions{})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	for i, m := range msgs(
		protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "PUT"), false),
		protomsg.RequestBody([]byte("partial upload"), false),
	) {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
	}
	cancel()
	x := fake.next(t)
	if !x.Partial || x.Status != 0 || string(x.RequestBody) != "partial upload" || !x.RequestBodyTruncated {
		t.Errorf("exchange: partial %v, status %d, body %q, truncated %v; want partial, 0, the bytes seen, truncated",
			x.Partial, x.Status, x.RequestBody, x.RequestBodyTruncated)
	}
	select {
	case extra := <-fake.ch:
		t.Errorf("Observe called twice; second exchange %+v", extra)
	default:
	}
	if s := srv.Stats(); s.StreamErrors != 0 || s.Observed != 1 {
		t.Errorf("stream errors %d, observed %d; want a reset to be a normal end, observed once", s.StreamErrors, s.Observed)
	}
}

func TestNoRequestCaseIsInvalidArgument(t *testing.T) {
	t.Parallel()
	fake := newFake()
	srv := New(Settings{Processor: fake, Now: fixedNow})
	client, _ := startServer(t, srv, GRPCOptions{})
	_, err := protomsg.Exchange(testContext(t), client, msgs(
		protomsg.RequestHeaders(pairs(":authority", "api.example"), true),
		&extprocv3.ProcessingRequest{},
	))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("exchange error = %v; want code InvalidArgument", err)
	}
	if x := fake.next(t); !x.Partial || x.Host != "api.example" {
		t.Errorf("exchange: partial %v, host %q; want the request recorded as partial", x.Partial, x.Host)
	}
	if s := srv.Stats(); s.ProtocolErrors != 1 {
		t.Errorf("protocol errors = %d; want 1", s.ProtocolErrors)
	}
}

// TestPanic: a panic ends only its own stream, still records it, and the server keeps serving.
func TestPanic(t *testing.T) {
	t.Parallel()
	t.Run("in Peek", func(t *testing.T) {
		t.Parallel()
		fake := newFake()
		fake.peek = func(x *traffic.Exchange) (string, string, record.Key) {
			if x.Host == "panic.example" {
				panic("peek exploded")
			}
			return "s1", "2026-10-13", record.Key{Source: "builtin", Name: "cookie:sid"}
		}
		srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-apisessions-session"})
		client, _ := startServer(t, srv, GRPCOptions{})
		ctx := testContext(t)
		_, err := protomsg.Exchange(ctx, client, msgs(protomsg.RequestHeaders(pairs(":authority", "panic.example"), true)))
		if err == nil || !strings.Contains(err.Error(), "without an answer") {
			t.Fatalf("panicking stream: error %v; want the stream to end without an answer", err)
		}
		if x := fake.next(t); x.Host != "panic.example" || !x.Partial {
			t.Errorf("panicking stream recorded host %q partial %v; want it recorded as partial", x.Host, x.Partial)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{}))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("stream after the panic: %v", err)
			}
		}
		if s := srv.Stats(); s.Panics != 1 || s.Observed != 9 {
			t.Errorf("panics %d, observed %d; want 1 and 9", s.Panics, s.Observed)
		}
	})
	t.Run("in Observe", func(t *testing.T) {
		t.Parallel()
		fake := newFake()
		fake.panicObserve = true
		srv := New(Settings{Processor: fake, Now: fixedNow})
		client, _ := startServer(t, srv, GRPCOptions{})
		for i := range 2 {
			if _, err := protomsg.Exchange(testContext(t), client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
				t.Fatalf("exchange %d: %v", i, err)
			}
		}
		if s := srv.Stats(); s.Panics != 2 || s.Observed != 2 {
			t.Errorf("panics %d, observed %d; want 2 and 2", s.Panics, s.Observed)
		}
	})
}

func TestValidHeaderName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want bool
	}{
		{"plain", "x-apisessions-session", true},
		{"token punctuation", "x_a.b~c", true},
		{"empty", "", false},
		{"pseudo-header", ":path", false},
		{"host", "host", false},
		{"space", "x session", false},
		{"upper case is lowered before the check", "X-A", false},
		{"control character", "x-a\n", false},
		{"too long", strings.Repeat("a", 257), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := validHeaderName(tc.in); got != tc.want {
				t.Errorf("validHeaderName(%q) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}
