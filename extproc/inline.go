package extproc

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apisessions/apisessions/sessions/record"
)

// The plain CONTINUE answers are immutable and shared by all streams: marshalling only reads
// them, and most answers are these.
var (
	continueRequestHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}
	continueRequestBody = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}
	continueRequestTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}}
	continueResponseHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}
	continueResponseBody = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}
	continueResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
		ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// falseValue is the shared append=false of the session header mutation; answers only read it.
var falseValue = wrapperspb.Bool(false)

// grouping is what a Peek answered, kept so that the response headers answer repeats the
// dynamic metadata only when it changed.
type grouping struct {
	session, part string
	key           record.Key
}

// peekGrouping asks the processor for the request-side grouping and remembers it with the
// request body bytes it saw.
func (st *stream) peekGrouping() grouping {
	session, part, key := st.proc.Peek(&st.x)
	st.peeked, st.peekedBody = true, st.req.n
	st.grouping = grouping{session: session, part: part, key: key}
	return st.grouping
}

// inlineRequestHeaders answers request headers in inline mode: the session header (raw_value
// only: Envoy reads raw_value and turns a value-only header into an empty one, envoy#31555) and
// the dynamic metadata, both from the processor's request-side grouping.
func (st *stream) inlineRequestHeaders() *extprocv3.ProcessingResponse {
	g := st.peekGrouping()
	if g.session == "" {
		return continueRequestHeaders
	}
	common := &extprocv3.CommonResponse{}
	if st.cfg.sessionHeader != "" {
		if validHeaderValue(g.session) {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: st.cfg.sessionHeader, RawValue: []byte(g.session)},
				// ext_proc applies append with false meaning overwrite; a client-sent copy of
				// the header must not survive next to ours.
				Append: falseValue,
			}}}
		} else {
			// Envoy fails the request on an invalid header value, even when failing open.
			st.srv.stats.invalidSessionValues.Add(1)
		}
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: common}}}
	if st.cfg.dynamicMetadata {
		resp.DynamicMetadata = sessionMetadata(g)
	}
	return resp
}

// inlineResponseHeaders repeats the dynamic metadata when the grouping changed since the
// request headers: a grouping key in the request body decides only once the body is seen.
// Envoy keeps what the request headers answer wrote (a later write of the namespace replaces
// the keys it names), so an unchanged grouping needs no second copy, and without request body
// bytes since that answer the processor is not asked again: Peek groups the request seen so far.
func (st *stream) inlineResponseHeaders() *extprocv3.ProcessingResponse {
	x := &st.x
	if st.peeked && st.req.n == st.peekedBody {
		return continueResponseHeaders
	}
	prev := st.grouping
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = st.req.result()
	g := st.peekGrouping()
	if g.session == "" || g == prev {
		return continueResponseHeaders
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}},
		DynamicMetadata: sessionMetadata(g),
	}
}

// sessionMetadata builds {"apisessions": {...}}: top-level keys of dynamic_metadata are
// namespaces, and a flat struct would be ignored by Envoy.
func sessionMetadata(g grouping) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 3)
	fields["session"] = structpb.NewStringValue(g.session)
	fields["part"] = structpb.NewStringValue(g.part)
	if g.key.Source != "" || g.key.Name != "" {
		fields["key"] = structpb.NewStringValue(g.key.String())
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: fields}),
	}}
}

// validHeaderValue accepts visible ASCII and inner spaces, the set every Envoy codec keeps.
func validHeaderValue(v string) bool {
	if v == "" || len(v) > maxSessionValue || v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
