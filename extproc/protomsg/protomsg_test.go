package protomsg

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apisessions/apisessions/sessions/traffic"
)

var start = time.Date(2026, 10, 13, 9, 30, 0, 229123000, time.UTC)

func getX() *traffic.Exchange {
	return &traffic.Exchange{
		RequestID: "req-1", Start: start, Method: "GET", Scheme: "https", Host: "api.example", Path: "/v1/items",
		SourceAddress:  "203.0.113.7:5123",
		RequestHeaders: Pairs("cookie", "sid=1"),
		ResponseSeen:   true, Status: 200, ResponseHeaders: Pairs("content-type", "text/plain"),
	}
}

func postX(body string) *traffic.Exchange {
	x := getX()
	x.Method = "POST"
	x.RequestHeaders = Pairs("content-length", "10", "content-type", "text/plain")
	x.RequestBody = []byte(body)
	return x
}

var reqPseudo = func(method string) []traffic.Header {
	return Pairs(":method", method, ":scheme", "https", ":authority", "api.example", ":path", "/v1/items")
}

func reqAttrs() map[string]any {
	return map[string]any{"source.address": "203.0.113.7:5123", "request.id": "req-1",
		"request.time": "2026-10-13T09:30:00.229123+00:00"}
}

func cfg(req *extprocv3.ProcessingRequest, reqMode, respMode filterv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingRequest {
	return WithProtocolConfig(req, reqMode, respMode)
}

func TestSequence(t *testing.T) {
	t.Parallel()
	const (
		none     = filterv3.ProcessingMode_NONE
		streamed = filterv3.ProcessingMode_STREAMED
		buffered = filterv3.ProcessingMode_BUFFERED
		partial  = filterv3.ProcessingMode_BUFFERED_PARTIAL
		send     = filterv3.ProcessingMode_SEND
		skip     = filterv3.ProcessingMode_SKIP
	)
	okStatus := Pairs(":status", "200", "content-type", "text/plain")
	respHeaders := func(eos bool) *extprocv3.ProcessingRequest {
		return WithAttributes(ResponseHeaders(okStatus, eos), map[string]any{"response.code": 200})
	}
	cases := []struct {
		name string
		x    *traffic.Exchange
		o    Options
		want []*extprocv3.ProcessingRequest
	}{
		{
			name: "default mode: headers both ways, pseudo-headers from the fields, attributes on each first message",
			x:    getX(),
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("GET"), Pairs("cookie", "sid=1")...), true), reqAttrs()), none, none),
				respHeaders(true),
			},
		},
		{
			name: "no response: only the request path",
			x: func() *traffic.Exchange {
				x := getX()
				x.ResponseSeen = false
				return x
			}(),
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("GET"), Pairs("cookie", "sid=1")...), true), reqAttrs()), none, none),
			},
		},
		{
			name: "STREAMED in chunks with trailers sent: content-length removed, the trailers end the body",
			x: func() *traffic.Exchange {
				x := postX("0123456789")
				x.RequestTrailers = Pairs("x-sum", "45")
				return x
			}(),
			o: Options{ChunkSize: 4, Mode: &filterv3.ProcessingMode{RequestBodyMode: streamed, RequestTrailerMode: send}},
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("POST"), Pairs("content-type", "text/plain")...), false), reqAttrs()), streamed, none),
				RequestBody([]byte("0123"), false),
				RequestBody([]byte("4567"), false),
				RequestBody([]byte("89"), false),
				RequestTrailers(Pairs("x-sum", "45")),
				respHeaders(true),
			},
		},
		{
			name: "trailers in SKIP mode are not sent and the last chunk does not end the stream",
			x: func() *traffic.Exchange {
				x := postX("0123456789")
				x.RequestTrailers = Pairs("x-sum", "45")
				return x
			}(),
			o: Options{Mode: &filterv3.ProcessingMode{RequestBodyMode: streamed}},
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("POST"), Pairs("content-type", "text/plain")...), false), reqAttrs()), streamed, none),
				RequestBody([]byte("0123456789"), false),
				respHeaders(true),
			},
		},
		{
			name: "BUFFERED keeps content-length and sends one body message",
			x:    postX("0123456789"),
			o:    Options{Mode: &filterv3.ProcessingMode{RequestBodyMode: buffered}},
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("POST"), Pairs("content-length", "10", "content-type", "text/plain")...), false), reqAttrs()), buffered, none),
				RequestBody([]byte("0123456789"), true),
				respHeaders(true),
			},
		},
		{
			name: "BUFFERED_PARTIAL over the limit sends the limit without end_of_stream",
			x: func() *traffic.Exchange {
				x := getX()
				x.ResponseBody = []byte("0123456789")
				return x
			}(),
			o: Options{BufferLimit: 6, Mode: &filterv3.ProcessingMode{ResponseBodyMode: partial}},
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestHeaders(append(reqPseudo("GET"), Pairs("cookie", "sid=1")...), true), reqAttrs()), none, partial),
				respHeaders(false),
				ResponseBody([]byte("012345"), false),
			},
		},
		{
			name: "observability mode: every message flagged, no protocol_config, no BUFFERED body",
			x:    postX("0123456789"),
			o:    Options{Observability: true, Mode: &filterv3.ProcessingMode{RequestBodyMode: buffered}},
			want: []*extprocv3.ProcessingRequest{
				WithObservability(WithAttributes(RequestHeaders(append(reqPseudo("POST"), Pairs("content-length", "10", "content-type", "text/plain")...), false), reqAttrs())),
				WithObservability(respHeaders(true)),
			},
		},
		{
			name: "request headers skipped: the attributes ride on the first body message",
			x:    postX("0123456789"),
			o:    Options{Mode: &filterv3.ProcessingMode{RequestHeaderMode: skip, RequestBodyMode: streamed, ResponseHeaderMode: skip}},
			want: []*extprocv3.ProcessingRequest{
				cfg(WithAttributes(RequestBody([]byte("0123456789"), true), reqAttrs()), streamed, none),
			},
		},
		{
			name: "metadata and extra attributes",
			x:    getX(),
			o: Options{
				Metadata:           map[string]map[string]any{"waf": {"verdict": "block"}},
				RequestAttributes:  map[string]any{"connection.id": 7},
				ResponseAttributes: map[string]any{"upstream.address": "10.0.0.1:80"},
			},
			want: []*extprocv3.ProcessingRequest{
				WithMetadata(cfg(WithAttributes(WithAttributes(RequestHeaders(append(reqPseudo("GET"), Pairs("cookie", "sid=1")...), true),
					reqAttrs()), map[string]any{"connection.id": 7}), none, none), "waf", map[string]any{"verdict": "block"}),
				WithMetadata(WithAttributes(respHeaders(true), map[string]any{"upstream.address": "10.0.0.1:80"}),
					"waf", map[string]any{"verdict": "block"}),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Sequence(tc.x, tc.o)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Sequence differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderMapUsesRawValue(t *testing.T) {
	t.Parallel()
	got := headerMap(Pairs("a", "1", "b"))
	want := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "a", RawValue: []byte("1")}, {Key: "b", RawValue: []byte{}}}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("headerMap differs (-want +got):\n%s", diff)
	}
}

type stringer struct{}

func (stringer) String() string { return "str" }

func TestValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   any
		want *structpb.Value
	}{
		{"nil", nil, structpb.NewNullValue()},
		{"bool", true, structpb.NewBoolValue(true)},
		{"int", 7, structpb.NewNumberValue(7)},
		{"uint64", uint64(9), structpb.NewNumberValue(9)},
		{"float", 1.5, structpb.NewNumberValue(1.5)},
		{"string", "s", structpb.NewStringValue("s")},
		{"bytes", []byte("b"), structpb.NewStringValue("b")},
		{"time as Envoy renders it", start, structpb.NewStringValue("2026-10-13T09:30:00.229123+00:00")},
		{"stringer", stringer{}, structpb.NewStringValue("str")},
		{"other types become strings", struct{ A int }{1}, structpb.NewStringValue("{1}")},
		{"nested", map[string]any{"l": []any{1, "x"}, "s": []string{"a"}}, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"l": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("x")}}),
			"s": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a")}}),
		}})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, value(tc.in), protocmp.Transform()); diff != "" {
				t.Errorf("value(%v) differs (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestRequestTimeParses(t *testing.T) {
	t.Parallel()
	s := value(start).GetStringValue()
	got, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !got.Equal(start) {
		t.Errorf("time.Parse(RFC3339Nano, %q) = %v, %v; want %v", s, got, err, start)
	}
}
