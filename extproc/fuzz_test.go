package extproc

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// fuzzMessages decodes bytes into a message sequence: per message one control byte (low three
// bits the phase, 6 = no request case; then end_of_stream, observability, attributes, metadata,
// value and raw_value both set) and a length byte for the payload that follows.
func fuzzMessages(data []byte) []*extprocv3.ProcessingRequest {
	var out []*extprocv3.ProcessingRequest
	for len(data) >= 2 && len(out) < 64 {
		ctl, n := data[0], int(data[1])
		data = data[2:]
		n = min(n, len(data))
		payload := string(data[:n])
		data = data[n:]
		eos := ctl&8 != 0
		hs := []*corev3.HeaderValue{{Key: ":authority", RawValue: []byte(payload)}, {Key: ":status", Value: payload},
			{Key: "content-length", RawValue: []byte(payload)}, {Key: payload, RawValue: []byte(payload)}}
		if ctl&128 != 0 {
			hs = append(hs, &corev3.HeaderValue{Key: "x-both", Value: payload, RawValue: []byte(payload)})
		}
		var m *extprocv3.ProcessingRequest
		switch ctl & 7 {
		case 0:
			m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
				RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: eos}}}
		case 1:
			m = protomsg.RequestBody([]byte(payload), eos)
		case 2:
			m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
				RequestTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{Headers: hs}}}}
		case 3:
			m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
				ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: eos}}}
		case 4:
			m = protomsg.ResponseBody([]byte(payload), eos)
		case 5:
			m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
				ResponseTrailers: &extprocv3.HttpTrailers{Trailers: &corev3.HeaderMap{Headers: hs}}}}
		default:
			m = &extprocv3.ProcessingRequest{}
		}
		m.ObservabilityMode = ctl&16 != 0
		if ctl&32 != 0 {
			protomsg.WithAttributes(m, map[string]any{"source.address": payload, "request.id": payload,
				"request.time": payload, "response.code": float64(len(payload)) * 7.3})
		}
		if ctl&64 != 0 {
			protomsg.WithMetadata(m, "waf", map[string]any{"verdict": payload, "nested": map[string]any{"k": []any{payload, nil, 1}}})
			m.MetadataContext.FilterMetadata["empty"] = &structpb.Struct{}
		}
		out = append(out, m)
	}
	return out
}

// fuzzProcessSeeds are FuzzProcess's seeds; FuzzDecode starts from their messages too.
var fuzzProcessSeeds = [][]byte{
	{0, 11, 'a', 'p', 'i', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', 1, 3, 'a', 'b', 'c', 3 | 8, 3, '2', '0', '0'},
	{16 | 32, 4, 'h', 'o', 's', 't', 16 | 1, 2, 'x', 'y', 16 | 4 | 8, 0},
	{4, 1, 'z', 0 | 128 | 64, 3, 'a', 'b', 'c', 6, 0, 0, 0},
	{3, 3, '2', '0', '4', 0 | 8, 0, 0 | 8, 1, ':', 2, 2, 'k', 'v', 5, 0},
}

// FuzzProcess: whatever Envoy (or an impostor) sends, the server never panics, answers each
// inline message exactly once with the matching case, and observes at most once.
func FuzzProcess(f *testing.F) {
	for _, seed := range fuzzProcessSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := fuzzMessages(data)
		fake := newFake()
		fake.needs = traffic.Needs{RequestBody: true, ResponseBody: true}
		fake.maxBody = 16
		fake.peek = func(x *traffic.Exchange) (string, string, record.Key) {
			return x.Host, x.Path, record.Key{Source: record.SourceBuiltin, Name: x.Method}
		}
		srv := New(Settings{Processor: fake, Now: fixedNow, SessionHeader: "x-apisessions-session",
			DynamicMetadata: true, AttackNamespaces: []string{"waf", "empty"}})
		st := &replayStream{ctx: context.Background(), msgs: msgs, keep: true}
		err := srv.Process(st)

		// The stream stops at the first message without a request case.
		sent := msgs
		for i, m := range msgs {
			if m.GetRequest() == nil {
				sent = msgs[:i]
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("Process = %v after a message without request case; want InvalidArgument", err)
				}
				break
			}
		}
		if len(sent) == len(msgs) && err != nil {
			t.Fatalf("Process = %v; want nil", err)
		}
		var inline []*extprocv3.ProcessingRequest
		for _, m := range sent {
			if !m.GetObservabilityMode() {
				inline = append(inline, m)
			}
		}
		if len(st.answers) != len(inline) {
			t.Fatalf("%d answers for %d inline messages", len(st.answers), len(inline))
		}
		for i := range inline {
			if !protomsg.Answers(inline[i], st.answers[i]) {
				t.Fatalf("answer %d does not match its message", i)
			}
			for _, h := range st.answers[i].GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
				if !validHeaderValue(string(h.GetHeader().GetRawValue())) || h.GetHeader().GetValue() != "" {
					t.Fatalf("answer %d sets an invalid header value", i)
				}
			}
		}
		s := srv.Stats()
		if s.Panics != 0 || s.Observed > 1 || len(fake.all()) > 1 {
			t.Fatalf("panics %d, observed %d; want no panic and at most one observation", s.Panics, s.Observed)
		}
		for _, x := range fake.all() {
			if len(x.RequestBody) > 16 || len(x.ResponseBody) > 16 || len(x.RequestHeaders) > maxHeaders {
				t.Fatalf("copied past the caps: bodies %d/%d, headers %d", len(x.RequestBody), len(x.ResponseBody), len(x.RequestHeaders))
			}
		}
	})
}
