package extproc

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// groupByBody peeks an anonymous session from the request headers and a user session once the
// request body is seen, as a grouping key in a JSON body would.
func groupByBody(x *traffic.Exchange) (string, string, record.Key) {
	if len(x.RequestBody) > 0 {
		return "s-user", "2026-10-13", record.Key{Source: record.SourceParam, Name: "user"}
	}
	return "s-anon", "2026-10-13", record.Key{Source: record.SourceFallback, Name: "ip+ua"}
}

func metadataFor(t *testing.T, session, key string) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{MetadataNamespace: map[string]any{
		"session": session, "part": "2026-10-13", "key": key}})
	if err != nil {
		t.Fatalf("build metadata: %v", err)
	}
	return s
}

func sessionHeaderMutation(name, value string) *extprocv3.HeaderMutation {
	return &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
		Header: &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		Append: wrapperspb.Bool(false),
	}}}
}

func requestHeadersAnswer(mut *extprocv3.HeaderMutation, md *structpb.Struct) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: mut}}},
		DynamicMetadata: md,
	}
}

func requestBodyAnswer(mut *extprocv3.HeaderMutation, md *structpb.Struct) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: mut}}},
		DynamicMetadata: md,
	}
}

func responseHeadersAnswer(md *structpb.Struct) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{}}},
		DynamicMetadata: md,
	}
}

func TestInline(t *testing.T) {
	t.Parallel()
	const header = "x-apisessions-session"
	cont := func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return protomsg.Continue(m) }
	get := protomsg.Sequence(getExchange(), protomsg.Options{})
	// post sends its request body inline (BUFFERED_PARTIAL): request headers, request body,
	// response headers.
	post := protomsg.Sequence(postExchange(`{"user":"ann"}`),
		protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_BUFFERED_PARTIAL, filterv3.ProcessingMode_NONE)})
	// streamed sends the same request body in STREAMED mode: Envoy may forward the request
	// headers before the body, so they are answered at once.
	streamed := protomsg.Sequence(postExchange(`{"user":"ann"}`),
		protomsg.Options{Mode: modeOf(filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_NONE)})
	// atBody is what post gets when the body's answer carries the session: a CONTINUE before
	// and after it.
	atBody := func(body *extprocv3.ProcessingResponse) []*extprocv3.ProcessingResponse {
		return []*extprocv3.ProcessingResponse{cont(post[0]), body, cont(post[2])}
	}
	cases := []struct {
		name      string
		settings  Settings
		peek      func(*traffic.Exchange) (string, string, record.Key)
		outScope  bool
		keeps     bool // BodyRegroups and Regroups answer false
		msgs      []*extprocv3.ProcessingRequest
		want      func(t *testing.T) []*extprocv3.ProcessingResponse
		wantPeeks int64
		stats     func(t *testing.T, s Stats)
	}{
		{
			name:     "a buffered request body: its answer carries the session the body decided",
			settings: Settings{SessionHeader: "X-APISessions-Session", DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return atBody(requestBodyAnswer(sessionHeaderMutation(header, "s-user"), metadataFor(t, "s-user", "param:user")))
			},
			wantPeeks: 2,
		},
		{
			name:     "a streamed request body: the headers' session, refreshed at the response when the body decides",
			settings: Settings{SessionHeader: "X-APISessions-Session", DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     streamed,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{
					requestHeadersAnswer(sessionHeaderMutation(header, "s-anon"), metadataFor(t, "s-anon", "fallback:ip+ua")),
					cont(streamed[1]),
					responseHeadersAnswer(metadataFor(t, "s-user", "param:user")),
				}
			},
			wantPeeks: 2,
		},
		{
			name:     "dynamic metadata only",
			settings: Settings{DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return atBody(requestBodyAnswer(nil, metadataFor(t, "s-user", "param:user")))
			},
			wantPeeks: 2,
		},
		{
			name:     "without a request body the response is peeked again (it may issue the final id); an unchanged grouping is not repeated",
			settings: Settings{SessionHeader: header, DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     get,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{
					requestHeadersAnswer(sessionHeaderMutation(header, "s-anon"), metadataFor(t, "s-anon", "fallback:ip+ua")),
					cont(get[1]),
				}
			},
			wantPeeks: 2,
		},
		{
			name:     "a grouping the body does not change is not repeated",
			settings: Settings{DynamicMetadata: true},
			peek: func(*traffic.Exchange) (string, string, record.Key) {
				return "s-anon", "2026-10-13", record.Key{Source: record.SourceFallback, Name: "ip+ua"}
			},
			msgs: post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return atBody(requestBodyAnswer(nil, metadataFor(t, "s-anon", "fallback:ip+ua")))
			},
			wantPeeks: 2,
		},
		{
			name:     "a request body that cannot change the grouping is not peeked again",
			settings: Settings{DynamicMetadata: true},
			peek:     groupByBody,
			keeps:    true,
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{
					requestHeadersAnswer(nil, metadataFor(t, "s-anon", "fallback:ip+ua")),
					cont(post[1]),
					cont(post[2]),
				}
			},
			wantPeeks: 1,
		},
		{
			name:     "session header only: the response is not peeked",
			settings: Settings{SessionHeader: header},
			peek:     groupByBody,
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return atBody(requestBodyAnswer(sessionHeaderMutation(header, "s-user"), nil))
			},
			wantPeeks: 1,
		},
		{
			name:     "an invalid session header name is dropped, the metadata stays",
			settings: Settings{SessionHeader: "x bad:header", DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return atBody(requestBodyAnswer(nil, metadataFor(t, "s-user", "param:user")))
			},
			wantPeeks: 2,
		},
		{
			name: "inline additions disabled: plain answers, no peek",
			peek: groupByBody,
			msgs: get,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{cont(get[0]), cont(get[1])}
			},
		},
		{
			name:     "observability mode never peeks and never answers",
			settings: Settings{SessionHeader: header, DynamicMetadata: true},
			peek:     groupByBody,
			msgs:     protomsg.Sequence(getExchange(), protomsg.Options{Observability: true}),
			want:     func(t *testing.T) []*extprocv3.ProcessingResponse { return nil },
		},
		{
			name:     "an out-of-scope host is not peeked",
			settings: Settings{SessionHeader: header, DynamicMetadata: true},
			peek:     groupByBody,
			outScope: true,
			msgs:     get,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{cont(get[0]), cont(get[1])}
			},
		},
		{
			name:     "no session yet: plain answers",
			settings: Settings{SessionHeader: header, DynamicMetadata: true},
			peek:     func(*traffic.Exchange) (string, string, record.Key) { return "", "", record.Key{} },
			msgs:     post,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{cont(post[0]), cont(post[1]), cont(post[2])}
			},
			wantPeeks: 2,
		},
		{
			name:     "a session id that is no valid header value is not sent as a header",
			settings: Settings{SessionHeader: header, DynamicMetadata: true},
			peek: func(*traffic.Exchange) (string, string, record.Key) {
				return "bad\r\nvalue", "2026-10-13", record.Key{Source: "builtin", Name: "bearer"}
			},
			msgs: get,
			want: func(t *testing.T) []*extprocv3.ProcessingResponse {
				return []*extprocv3.ProcessingResponse{
					requestHeadersAnswer(nil, metadataFor(t, "bad\r\nvalue", "builtin:bearer")),
					cont(get[1]),
				}
			},
			wantPeeks: 2,
			stats: func(t *testing.T, s Stats) {
				if s.InvalidSessionValues != 1 {
					t.Errorf("invalid session values = %d; want 1", s.InvalidSessionValues)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake()
			fake.peek = tc.peek
			fake.keeps = tc.keeps
			fake.needs = traffic.Needs{RequestBody: true}
			if tc.outScope {
				fake.outOfScope = map[string]bool{"api.example": true}
			}
			s := tc.settings
			s.Processor, s.Now = fake, fixedNow
			srv := New(s)
			client, _ := startServer(t, srv, GRPCOptions{})
			got, err := protomsg.Exchange(testContext(t), client, tc.msgs)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if diff := cmp.Diff(tc.want(t), got, protocmp.Transform()); diff != "" {
				t.Errorf("answers differ (-want +got):\n%s", diff)
			}
			for _, r := range got {
				common := r.GetRequestHeaders().GetResponse()
				if r.GetRequestBody() != nil {
					common = r.GetRequestBody().GetResponse()
				}
				for _, h := range common.GetHeaderMutation().GetSetHeaders() {
					if h.GetHeader().GetValue() != "" {
						t.Errorf("header %q set through value; Envoy reads only raw_value", h.GetHeader().GetKey())
					}
				}
			}
			// Without the metadata the part is never asked for (PeekSession).
			if n := fake.peeks.Load() + fake.sessionPeeks.Load(); n != tc.wantPeeks {
				t.Errorf("Peek and PeekSession called %d times; want %d", n, tc.wantPeeks)
			}
			if n := fake.sessionPeeks.Load(); n > 0 && tc.settings.DynamicMetadata {
				t.Errorf("PeekSession called %d times with the dynamic metadata on", n)
			}
			if n := len(fake.all()); (n == 1) == tc.outScope {
				t.Errorf("observed %d exchanges; want %d", n, map[bool]int{false: 1, true: 0}[tc.outScope])
			}
			if tc.stats != nil {
				tc.stats(t, srv.Stats())
			}
		})
	}
}

// TestSettingsSwap reloads settings while streams run; the race detector checks the swap and
// new streams use the new settings.
func TestSettingsSwap(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.peek = groupByBody
	srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-old"})
	client, _ := startServer(t, srv, GRPCOptions{})
	ctx := testContext(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 20 {
				if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{})); err != nil {
					t.Errorf("exchange during reloads: %v", err)
					return
				}
			}
		})
		wg.Go(func() {
			for j := range 20 {
				srv.SetSettings(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-old", DynamicMetadata: (i+j)%3 == 0})
			}
		})
	}
	wg.Wait()
	srv.SetSettings(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-new"})
	got, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{}))
	if err != nil {
		t.Fatalf("exchange after reload: %v", err)
	}
	want := requestHeadersAnswer(sessionHeaderMutation("x-new", "s-anon"), nil)
	if diff := cmp.Diff(want, got[0], protocmp.Transform()); diff != "" {
		t.Errorf("answer after reload differs (-want +got):\n%s", diff)
	}
}

// TestInlineAnswerCache plays exchanges whose groupings alternate, repeat and differ only by
// part or key, so that every answer served from the cache must still carry its own grouping.
func TestInlineAnswerCache(t *testing.T) {
	t.Parallel()
	const header = "x-apisessions-session"
	long := strings.Repeat("s", maxCachedGrouping+1)
	groupings := []struct{ session, part, key string }{
		{"s-a", "2026-10-13", "ip+ua"},
		{"s-b", "2026-10-13", "ip+ua"},
		{"s-a", "2026-10-13", "ip+ua"},
		{"s-a", "2026-10-13.2", "ip+ua"},
		{"s-a", "2026-10-13.2", "user"},
		{"bad\nvalue", "2026-10-13", "user"},
		{"bad\nvalue", "2026-10-13", "user"},
		{long, "2026-10-13", "user"},
		{long, "2026-10-13", "user"},
		{"s-b", "2026-10-13", "ip+ua"},
	}
	var next atomic.Int64
	fake := newFake()
	fake.peek = func(*traffic.Exchange) (string, string, record.Key) {
		g := groupings[next.Load()]
		return g.session, g.part, record.Key{Source: record.SourceFallback, Name: g.key}
	}
	srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: header, DynamicMetadata: true})
	client, _ := startServer(t, srv, GRPCOptions{})
	invalid := uint64(0)
	for i, g := range groupings {
		next.Store(int64(i))
		got, err := protomsg.Exchange(testContext(t), client, protomsg.Sequence(getExchange(), protomsg.Options{}))
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		md, err := structpb.NewStruct(map[string]any{MetadataNamespace: map[string]any{
			"session": g.session, "part": g.part, "key": "fallback:" + g.key}})
		if err != nil {
			t.Fatal(err)
		}
		var mut *extprocv3.HeaderMutation
		if validHeaderValue(g.session) {
			mut = sessionHeaderMutation(header, g.session)
		} else {
			invalid++
		}
		if diff := cmp.Diff(requestHeadersAnswer(mut, md), got[0], protocmp.Transform()); diff != "" {
			t.Errorf("exchange %d (%.20s %s %s): request headers answer differs (-want +got):\n%s", i, g.session, g.part, g.key, diff)
		}
	}
	if n := srv.Stats().InvalidSessionValues; n != invalid {
		t.Errorf("invalid session values = %d; want %d, one per answer", n, invalid)
	}
}

// With inline.dynamic_metadata off, a stream that asks for the metadata (AnswerMetadataKey)
// gets it, and the streams that do not ask never get an answer built for one that did.
func TestAskedMetadata(t *testing.T) {
	t.Parallel()
	const header = "x-apisessions-session"
	fake := newFake()
	fake.peek = func(*traffic.Exchange) (string, string, record.Key) {
		return "s-a", "2026-10-13", record.Key{Source: record.SourceFallback, Name: "ip+ua"}
	}
	srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: header})
	client, _ := startServer(t, srv, GRPCOptions{})
	md := metadataFor(t, "s-a", "fallback:ip+ua")
	for i, ask := range []string{"", "true", "", "false", "true", ""} {
		ctx := testContext(t)
		if ask != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, AnswerMetadataKey, ask)
		}
		got, err := protomsg.Exchange(ctx, client, protomsg.Sequence(getExchange(), protomsg.Options{}))
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		want := requestHeadersAnswer(sessionHeaderMutation(header, "s-a"), nil)
		if ask == "true" {
			want = requestHeadersAnswer(sessionHeaderMutation(header, "s-a"), md)
		}
		if diff := cmp.Diff(want, got[0], protocmp.Transform()); diff != "" {
			t.Errorf("exchange %d (asked %q): request headers answer differs (-want +got):\n%s", i, ask, diff)
		}
	}
	// The part (which may need shared state) is asked for only by the streams that send it
	// (two, at their request and response headers).
	if p, s := fake.peeks.Load(), fake.sessionPeeks.Load(); p != 4 || s != 4 {
		t.Errorf("%d Peek and %d PeekSession calls; want 4 and 4", p, s)
	}
}

// A pre-encoded answer is the same message on the wire, and an answer built around one (a
// mode override) carries both.
func TestWireAnswers(t *testing.T) {
	typed := &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: "x-apisessions-session", RawValue: []byte("s_0123")},
				Append: falseValue,
			}}}},
		}},
		DynamicMetadata: sessionMetadata(grouping{session: "s_0123", part: "2026-11-22", key: record.Key{Source: "param", Name: "token"}}),
	}
	w := wire(typed)
	if w.GetResponse() != nil || w.GetDynamicMetadata() != nil {
		t.Fatal("wire form holds typed fields; it must hold only the encoding")
	}
	decode := func(m *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
		t.Helper()
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var got extprocv3.ProcessingResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	if got := decode(w); !proto.Equal(got, typed) {
		t.Fatalf("wire form decodes to %v; want %v", got, typed)
	}

	st := &stream{srv: New(Settings{}), knowModes: true, proc: &fakeProcessor{needs: traffic.Needs{RequestBody: true}, maxBody: 1 << 10}}
	st.x.RequestHeaders = []traffic.Header{{Name: "content-type", Value: "application/json"}}
	out := st.overrideBodies(w, false, false)
	got := decode(out)
	if got.GetModeOverride().GetRequestBodyMode() != filterv3.ProcessingMode_BUFFERED_PARTIAL {
		t.Errorf("override lost: %v", got.GetModeOverride())
	}
	got.ModeOverride = nil
	if !proto.Equal(got, typed) {
		t.Errorf("answer with override decodes to %v; want the shared answer %v beside it", got, typed)
	}
	if w.GetModeOverride() != nil || len(w.ProtoReflect().GetUnknown()) == 0 {
		t.Error("the shared answer was changed")
	}
}
