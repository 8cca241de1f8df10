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

// inlineRequestHeaders answers request headers in inline mode: the session header (raw_value
// only: Envoy reads raw_value and turns a value-only header into an empty one, envoy#31555) and
// the dynamic metadata, both from the processor's request-side grouping.
func (st *stream) inlineRequestHeaders() *extprocv3.ProcessingResponse {
	session, part, key := st.proc.Peek(&st.x)
	if session == "" {
		return continueRequestHeaders
	}
	common := &extprocv3.CommonResponse{}
	if st.cfg.sessionHeader != "" {
		if validHeaderValue(session) {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: st.cfg.sessionHeader, RawValue: []byte(session)},
				// ext_proc applies append with false meaning overwrite; a client-sent copy of
				// the header must not survive next to ours.
				Append: wrapperspb.Bool(false),
			}}}
		} else {
			// Envoy fails the request on an invalid header value, even when failing open.
			st.srv.stats.invalidSessionValues.Add(1)
		}
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: common}}}
	if st.cfg.dynamicMetadata {
		resp.DynamicMetadata = sessionMetadata(session, part, key)
	}
	return resp
}

// inlineResponseHeaders repeats the dynamic metadata with the grouping that also saw the
// response: a response-side key (a login that sets a cookie) may decide the session.
func (st *stream) inlineResponseHeaders() *extprocv3.ProcessingResponse {
	x := &st.x
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = st.req.result()
	session, part, key := st.proc.Peek(x)
	if session == "" {
		return continueResponseHeaders
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}},
		DynamicMetadata: sessionMetadata(session, part, key),
	}
}

// sessionMetadata builds {"apisessions": {...}}: top-level keys of dynamic_metadata are
// namespaces, and a flat struct would be ignored by Envoy.
func sessionMetadata(session, part string, key record.Key) *structpb.Struct {
	fields := map[string]*structpb.Value{
		"session": structpb.NewStringValue(session),
		"part":    structpb.NewStringValue(part),
	}
	if key.Source != "" || key.Name != "" {
		fields["key"] = structpb.NewStringValue(key.String())
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
