package protomsg

import (
	"fmt"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// attributesKey is the key of ProcessingRequest.attributes under which Envoy puts evaluated
// attributes, whatever the filter is named.
const attributesKey = "envoy.filters.http.ext_proc"

// timeLayout is how Envoy renders a timestamp attribute such as request.time
// (e.g. 2025-06-01T10:46:59.229123+00:00); time.RFC3339Nano parses it.
const timeLayout = "2006-01-02T15:04:05.999999-07:00"

// Pairs turns "name", "value", … into headers; a trailing name without a value gets "".
func Pairs(kv ...string) []traffic.Header {
	hs := make([]traffic.Header, 0, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		h := traffic.Header{Name: kv[i]}
		if i+1 < len(kv) {
			h.Value = kv[i+1]
		}
		hs = append(hs, h)
	}
	return hs
}

// headerMap converts headers the way Envoy sends them: the value in raw_value, value empty.
func headerMap(hs []traffic.Header) *corev3.HeaderMap {
	m := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(hs))}
	for _, h := range hs {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)})
	}
	return m
}

// RequestHeaders is a request_headers message; eos means the request has no body and no trailers.
func RequestHeaders(hs []traffic.Header, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(hs), EndOfStream: eos}}}
}

// ResponseHeaders is a response_headers message; eos means the response has no body and no trailers.
func ResponseHeaders(hs []traffic.Header, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(hs), EndOfStream: eos}}}
}

// RequestBody is a request_body message; eos marks the last body message when no trailers follow.
func RequestBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

// ResponseBody is a response_body message; eos marks the last body message when no trailers follow.
func ResponseBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

// RequestTrailers is a request_trailers message.
func RequestTrailers(hs []traffic.Header) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
		RequestTrailers: &extprocv3.HttpTrailers{Trailers: headerMap(hs)}}}
}

// ResponseTrailers is a response_trailers message.
func ResponseTrailers(hs []traffic.Header) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headerMap(hs)}}}
}

// WithAttributes adds attributes (expression → value) under attributesKey and returns req.
// Values convert as Envoy converts CEL results: bools and numbers stay, time.Time becomes
// timeLayout, everything else becomes its string form.
func WithAttributes(req *extprocv3.ProcessingRequest, attrs map[string]any) *extprocv3.ProcessingRequest {
	if len(attrs) == 0 {
		return req
	}
	if req.Attributes == nil {
		req.Attributes = make(map[string]*structpb.Struct, 1)
	}
	s := req.Attributes[attributesKey]
	if s == nil {
		s = &structpb.Struct{Fields: make(map[string]*structpb.Value, len(attrs))}
		req.Attributes[attributesKey] = s
	}
	for k, v := range attrs {
		s.Fields[k] = value(v)
	}
	return req
}

// WithObservability sets observability_mode and returns req.
func WithObservability(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
	req.ObservabilityMode = true
	return req
}

// WithMetadata adds one forwarded dynamic metadata namespace to metadata_context and returns req.
func WithMetadata(req *extprocv3.ProcessingRequest, namespace string, fields map[string]any) *extprocv3.ProcessingRequest {
	if req.MetadataContext == nil {
		req.MetadataContext = &corev3.Metadata{}
	}
	if req.MetadataContext.FilterMetadata == nil {
		req.MetadataContext.FilterMetadata = make(map[string]*structpb.Struct, 1)
	}
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(fields))}
	for k, v := range fields {
		s.Fields[k] = value(v)
	}
	req.MetadataContext.FilterMetadata[namespace] = s
	return req
}

// WithProtocolConfig sets protocol_config, which Envoy sends on the first message of an inline stream.
func WithProtocolConfig(req *extprocv3.ProcessingRequest, request, response filterv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingRequest {
	req.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: request, ResponseBodyMode: response}
	return req
}

// value converts a Go value to a structpb.Value without failing: nested maps and slices are
// converted element by element, unknown types become their string form.
func value(v any) *structpb.Value {
	switch t := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case *structpb.Value:
		return t
	case bool:
		return structpb.NewBoolValue(t)
	case string:
		return structpb.NewStringValue(t)
	case int:
		return structpb.NewNumberValue(float64(t))
	case int32:
		return structpb.NewNumberValue(float64(t))
	case int64:
		return structpb.NewNumberValue(float64(t))
	case uint32:
		return structpb.NewNumberValue(float64(t))
	case uint64:
		return structpb.NewNumberValue(float64(t))
	case float64:
		return structpb.NewNumberValue(t)
	case time.Time:
		return structpb.NewStringValue(t.Format(timeLayout))
	case []byte:
		return structpb.NewStringValue(string(t))
	case map[string]any:
		s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(t))}
		for k, e := range t {
			s.Fields[k] = value(e)
		}
		return structpb.NewStructValue(s)
	case []any:
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, len(t))}
		for _, e := range t {
			l.Values = append(l.Values, value(e))
		}
		return structpb.NewListValue(l)
	case []string:
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, len(t))}
		for _, e := range t {
			l.Values = append(l.Values, structpb.NewStringValue(e))
		}
		return structpb.NewListValue(l)
	case fmt.Stringer:
		return structpb.NewStringValue(t.String())
	default:
		return structpb.NewStringValue(fmt.Sprint(t))
	}
}

// Options says how Envoy is configured for Sequence.
type Options struct {
	// Mode is the effective processing mode; nil means Envoy's defaults (headers SEND, bodies
	// NONE, trailers SKIP).
	Mode *filterv3.ProcessingMode
	// Observability marks every message observability_mode; BUFFERED and BUFFERED_PARTIAL
	// bodies are then not sent, and no protocol_config is sent.
	Observability bool
	// ChunkSize splits STREAMED bodies into chunks of this many bytes; 0 sends one chunk.
	ChunkSize int
	// BufferLimit is the buffer limit for BUFFERED_PARTIAL; 0 means Envoy's default 1 MiB.
	BufferLimit int
	// RequestAttributes and ResponseAttributes are added to the attributes derived from the
	// exchange (source.address, request.id, request.time; response.code), overriding them.
	RequestAttributes, ResponseAttributes map[string]any
	// Metadata is forwarded dynamic metadata (namespace → fields), sent on every message.
	Metadata map[string]map[string]any
}

// DefaultBufferLimit is Envoy's default per-connection buffer limit.
const DefaultBufferLimit = 1 << 20

// Sequence returns the messages Envoy sends for x, in order: the request path, then the
// response path when x.ResponseSeen. Pseudo-headers missing from x's header lists are added
// from Method, Scheme, Host, Path and Status. Attributes ride on the first message of each
// direction; protocol_config on the first message of an inline stream.
func Sequence(x *traffic.Exchange, o Options) []*extprocv3.ProcessingRequest {
	mode := o.Mode
	if mode == nil {
		mode = &filterv3.ProcessingMode{}
	}
	var msgs []*extprocv3.ProcessingRequest

	reqAttrs := map[string]any{}
	if x.SourceAddress != "" {
		reqAttrs["source.address"] = x.SourceAddress
	}
	if x.RequestID != "" {
		reqAttrs["request.id"] = x.RequestID
	}
	if !x.Start.IsZero() {
		reqAttrs["request.time"] = x.Start.UTC()
	}
	for k, v := range o.RequestAttributes {
		reqAttrs[k] = v
	}
	reqHeaders := withPseudo(x.RequestHeaders,
		":method", x.Method, ":scheme", x.Scheme, ":authority", x.Host, ":path", x.Path)
	reqMsgs := direction(reqHeaders, x.RequestBody, x.RequestTrailers, mode.GetRequestHeaderMode(),
		mode.GetRequestBodyMode(), mode.GetRequestTrailerMode(), true, o)
	msgs = append(msgs, firstWith(reqMsgs, reqAttrs)...)

	if x.ResponseSeen {
		respAttrs := map[string]any{}
		if x.Status != 0 {
			respAttrs["response.code"] = x.Status
		}
		for k, v := range o.ResponseAttributes {
			respAttrs[k] = v
		}
		var status string
		if x.Status != 0 {
			status = strconv.Itoa(x.Status)
		}
		respHeaders := withPseudo(x.ResponseHeaders, ":status", status)
		respMsgs := direction(respHeaders, x.ResponseBody, x.ResponseTrailers, mode.GetResponseHeaderMode(),
			mode.GetResponseBodyMode(), mode.GetResponseTrailerMode(), false, o)
		msgs = append(msgs, firstWith(respMsgs, respAttrs)...)
	}

	for _, m := range msgs {
		for ns, f := range o.Metadata {
			WithMetadata(m, ns, f)
		}
		if o.Observability {
			WithObservability(m)
		}
	}
	if len(msgs) > 0 && !o.Observability {
		WithProtocolConfig(msgs[0], mode.GetRequestBodyMode(), mode.GetResponseBodyMode())
	}
	return msgs
}

func firstWith(msgs []*extprocv3.ProcessingRequest, attrs map[string]any) []*extprocv3.ProcessingRequest {
	if len(msgs) > 0 {
		WithAttributes(msgs[0], attrs)
	}
	return msgs
}

// direction builds one direction's messages.
func direction(hs []traffic.Header, body []byte, trailers []traffic.Header,
	headerMode filterv3.ProcessingMode_HeaderSendMode, bodyMode filterv3.ProcessingMode_BodySendMode,
	trailerMode filterv3.ProcessingMode_HeaderSendMode, request bool, o Options,
) []*extprocv3.ProcessingRequest {
	headersMsg, bodyMsg, trailersMsg := ResponseHeaders, ResponseBody, ResponseTrailers
	if request {
		headersMsg, bodyMsg, trailersMsg = RequestHeaders, RequestBody, RequestTrailers
	}
	hasTrailers := len(trailers) > 0
	var msgs []*extprocv3.ProcessingRequest

	if o.Observability && (bodyMode == filterv3.ProcessingMode_BUFFERED || bodyMode == filterv3.ProcessingMode_BUFFERED_PARTIAL) {
		bodyMode = filterv3.ProcessingMode_NONE
	}
	switch bodyMode {
	case filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_BUFFERED_PARTIAL, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		// Envoy removes content-length when it may change the body piecewise.
		hs = without(hs, "content-length")
	}

	if headerMode != filterv3.ProcessingMode_SKIP {
		msgs = append(msgs, headersMsg(hs, len(body) == 0 && !hasTrailers))
	}
	if len(body) > 0 {
		switch bodyMode {
		case filterv3.ProcessingMode_BUFFERED:
			msgs = append(msgs, bodyMsg(body, !hasTrailers))
		case filterv3.ProcessingMode_BUFFERED_PARTIAL:
			limit := o.BufferLimit
			if limit <= 0 {
				limit = DefaultBufferLimit
			}
			if len(body) > limit {
				// The rest passes unseen; end_of_stream false says the body was cut.
				msgs = append(msgs, bodyMsg(body[:limit], false))
			} else {
				msgs = append(msgs, bodyMsg(body, !hasTrailers))
			}
		case filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, filterv3.ProcessingMode_GRPC:
			size := o.ChunkSize
			if size <= 0 {
				size = len(body)
			}
			for off := 0; off < len(body); off += size {
				end := min(off+size, len(body))
				msgs = append(msgs, bodyMsg(body[off:end], end == len(body) && !hasTrailers))
			}
		}
	}
	if hasTrailers && trailerMode == filterv3.ProcessingMode_SEND {
		msgs = append(msgs, trailersMsg(trailers))
	}
	return msgs
}

// withPseudo returns hs with the given pseudo-headers in front, for those it lacks and that have a value.
func withPseudo(hs []traffic.Header, kv ...string) []traffic.Header {
	var front []traffic.Header
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" || has(hs, kv[i]) {
			continue
		}
		front = append(front, traffic.Header{Name: kv[i], Value: kv[i+1]})
	}
	if len(front) == 0 {
		return hs
	}
	return append(front, hs...)
}

func has(hs []traffic.Header, name string) bool {
	for _, h := range hs {
		if h.Name == name {
			return true
		}
	}
	return false
}

func without(hs []traffic.Header, name string) []traffic.Header {
	if !has(hs, name) {
		return hs
	}
	out := make([]traffic.Header, 0, len(hs))
	for _, h := range hs {
		if h.Name != name {
			out = append(out, h)
		}
	}
	return out
}
