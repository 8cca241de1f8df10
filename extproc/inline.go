package extproc

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apisessions/apisessions/sessions/record"
)

// The plain CONTINUE answers are immutable and shared by all streams, and most answers are
// these; like every shared answer they are sent pre-encoded (wire).
var (
	continueRequestHeaders = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}})
	continueRequestBody = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}})
	continueRequestTrailers = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}})
	continueResponseHeaders = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}})
	continueResponseBody = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}})
	continueResponseTrailers = wire(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
		ResponseTrailers: &extprocv3.TrailersResponse{}}})
)

// wire returns m encoded once, held as the unknown fields of an otherwise empty message.
// Sending a message makes gRPC's codec walk it twice (to size it, then to write it), and the
// dynamic metadata's Struct is two maps, so a shared answer walked on every send cost more than
// the server's own work per message; the encoded bytes are copied instead, and the peer decodes
// exactly the message m is. The result is immutable and shared by all streams; to read it in
// process, unmarshal its encoding. A message that cannot be encoded is returned as it is.
func wire(m *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return m
	}
	w := &extprocv3.ProcessingResponse{}
	w.ProtoReflect().SetUnknown(b)
	return w
}

// falseValue is the shared append=false of the session header mutation; answers only read it.
var falseValue = wrapperspb.Bool(false)

// grouping is what a Peek answered, kept so that the response headers answer repeats the
// dynamic metadata only when it changed.
type grouping struct {
	session, part string
	key           record.Key
}

// peekGrouping asks the processor for the request-side grouping and remembers it with the
// request body bytes it saw. The part is asked for only when the answers carry the metadata.
func (st *stream) peekGrouping() grouping {
	var g grouping
	if st.withMetadata {
		g.session, g.part, g.key = st.proc.Peek(&st.x)
	} else {
		g.session, g.key = st.proc.PeekSession(&st.x)
	}
	st.peeked, st.peekedBody = true, st.req.n
	st.grouping = g
	return g
}

// inlineRequestHeaders answers request headers in inline mode: the session header (raw_value
// only: Envoy reads raw_value and turns a value-only header into an empty one, envoy#31555) and
// the dynamic metadata, both from the processor's request-side grouping.
func (st *stream) inlineRequestHeaders() *extprocv3.ProcessingResponse {
	g := st.grouping
	if !st.decided {
		g = st.peekGrouping()
	}
	return st.sessionAnswer(g, atRequestHeaders)
}

// deferToBody reports whether the request headers' inline additions wait for the request
// body's answer: the body comes in one message of a buffered mode (BUFFERED, or
// BUFFERED_PARTIAL up to its limit), during which Envoy holds the request headers, so that
// answer's header mutation still reaches the upstream; the server keeps the body; and a
// grouping key may read it. The header and the metadata then name the session the body
// decided, once, rather than the headers' guess followed by a correction at the response.
func (st *stream) deferToBody(endOfStream bool) bool {
	return !endOfStream && st.knowModes && buffered(st.reqMode) && st.req.copy &&
		st.proc.BodyRegroups(record.Key{})
}

// buffered reports whether a body mode sends the body in one message while Envoy holds the
// headers.
func buffered(m filterv3.ProcessingMode_BodySendMode) bool {
	return m == filterv3.ProcessingMode_BUFFERED || m == filterv3.ProcessingMode_BUFFERED_PARTIAL
}

// inlineRequestBody answers the request body message the request headers deferred to
// (deferToBody) with the session header and the metadata of the grouping the body decided.
func (st *stream) inlineRequestBody() *extprocv3.ProcessingResponse {
	x := &st.x
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = st.req.result()
	return st.sessionAnswer(st.peekGrouping(), atRequestBody)
}

// sessionAnswer is the cached answer to a message of this kind that carries g, built once for
// a grouping; a plain CONTINUE when the processor gave no session.
func (st *stream) sessionAnswer(g grouping, kind answerKind) *extprocv3.ProcessingResponse {
	if g.session == "" {
		return continueAnswers[kind]
	}
	var a *answer
	if st.withMetadata != st.cfg.dynamicMetadata {
		// A stream that asked for the metadata: its answers differ from the cached ones.
		b := st.buildAnswer(g, kind)
		a = &b
	} else if a = st.cfg.answers.lookup(g, kind); a == nil {
		a = st.cfg.answers.store(g, kind, st.buildAnswer(g, kind))
	}
	if a.invalidSession {
		// Envoy fails the request on an invalid header value, even when failing open.
		st.srv.stats.invalidSessionValues.Add(1)
	}
	return a.resp
}

// buildAnswer builds the answer of this kind for g: on the request path the session header
// and the metadata, at the response headers the metadata alone.
func (st *stream) buildAnswer(g grouping, kind answerKind) answer {
	a := answer{g: g}
	common := &extprocv3.CommonResponse{}
	if kind != atResponseHeaders && st.cfg.sessionHeader != "" {
		if validHeaderValue(g.session) {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: st.cfg.sessionHeader, RawValue: []byte(g.session)},
				// ext_proc applies append with false meaning overwrite; a client-sent copy of
				// the header must not survive next to ours.
				Append: falseValue,
			}}}
		} else {
			a.invalidSession = true
		}
	}
	resp := &extprocv3.ProcessingResponse{}
	switch kind {
	case atRequestHeaders:
		resp.Response = &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: common}}
	case atRequestBody:
		resp.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: common}}
	default:
		resp.Response = &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}
	}
	if st.withMetadata {
		resp.DynamicMetadata = sessionMetadata(g)
	}
	a.resp = wire(resp)
	return a
}

// inlineResponseHeaders repeats the dynamic metadata when the grouping changed since the
// request headers: a grouping key in the request body decides only once the body is seen, and
// a value the response issues (a session cookie, a token in a header) may decide the final
// session, so the processor is asked again with the response headers (Peek then groups as
// Observe will). Envoy keeps what the request headers answer wrote (a later write of the
// namespace replaces the keys it names), so an unchanged grouping needs no second copy.
func (st *stream) inlineResponseHeaders() *extprocv3.ProcessingResponse {
	x := &st.x
	if st.peeked && (st.req.n == st.peekedBody || !st.proc.BodyRegroups(st.grouping.key)) && !st.proc.Regroups(x, false) {
		return continueResponseHeaders
	}
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = st.req.result()
	return st.regroup(true)
}

// inlineResponseBody repeats the dynamic metadata at the end of a response body the stream
// kept (a JSON body that may issue a token) when the grouping changed since the last answer.
func (st *stream) inlineResponseBody() *extprocv3.ProcessingResponse {
	if !st.resp.copy || len(st.resp.buf) == 0 {
		return continueResponseBody
	}
	x := &st.x
	x.ResponseBody, x.ResponseBodyTruncated, x.ResponseBytes = st.resp.result()
	if !st.proc.Regroups(x, true) {
		return continueResponseBody
	}
	return st.regroup(false)
}

// regroup peeks again and answers the response headers (headers) or the response body with
// the dynamic metadata when the grouping changed, else with a plain CONTINUE.
func (st *stream) regroup(headers bool) *extprocv3.ProcessingResponse {
	plain := continueResponseHeaders
	if !headers {
		plain = continueResponseBody
	}
	prev := st.grouping
	g := st.peekGrouping()
	if g.session == "" || g == prev {
		return plain
	}
	if !headers {
		// Body answers are rare (only when the grouping changed at a body): built each time.
		return &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_ResponseBody{
				ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}},
			DynamicMetadata: sessionMetadata(g),
		}
	}
	return st.sessionAnswer(g, atResponseHeaders)
}

// answerSlots is the size of each answer cache: a direct-mapped table of recent groupings.
// Sessions send bursts of requests, so the answers of active sessions are built once rather
// than per request; a slot holds one grouping and its answer (well under a KiB).
const answerSlots = 4096

// answer is an inline answer built for one grouping. It is immutable once stored: streams
// share it, pre-encoded (wire), and gRPC only reads it while marshalling.
type answer struct {
	g    grouping
	resp *extprocv3.ProcessingResponse
	// invalidSession is true when the session id could not be the header's value.
	invalidSession bool
}

// answerKind is the message an inline answer that carries the session goes to.
type answerKind uint8

const (
	atRequestHeaders answerKind = iota
	atRequestBody
	atResponseHeaders
	answerKinds
)

// continueAnswers are the plain CONTINUE answers of each kind.
var continueAnswers = [answerKinds]*extprocv3.ProcessingResponse{
	atRequestHeaders: continueRequestHeaders, atRequestBody: continueRequestBody, atResponseHeaders: continueResponseHeaders,
}

// answerCache holds the answers of recent groupings, a table for each kind.
type answerCache struct {
	seed  maphash.Seed
	slots [answerKinds][answerSlots]atomic.Pointer[answer]
}

func newAnswerCache() *answerCache { return &answerCache{seed: maphash.MakeSeed()} }

func (c *answerCache) slot(g grouping, kind answerKind) *atomic.Pointer[answer] {
	return &c.slots[kind][maphash.String(c.seed, g.session)%answerSlots]
}

// lookup returns the cached answer of g, or nil.
func (c *answerCache) lookup(g grouping, kind answerKind) *answer {
	if a := c.slot(g, kind).Load(); a != nil && a.g == g {
		return a
	}
	return nil
}

// maxCachedGrouping bounds the bytes of a grouping the cache keeps, so that the cache stays
// small whatever a processor returns; the engine's groupings are far shorter.
const maxCachedGrouping = 512

// store keeps a, replacing whatever grouping had its slot, and returns it.
func (c *answerCache) store(g grouping, kind answerKind, a answer) *answer {
	p := &a
	if len(g.session)+len(g.part)+len(g.key.Source)+len(g.key.Name) <= maxCachedGrouping {
		c.slot(g, kind).Store(p)
	}
	return p
}

// sessionMetadata builds {"apisessions": {...}}: top-level keys of dynamic_metadata are
// namespaces, and a flat struct would be ignored by Envoy.
//
// Protobuf strings must be UTF-8, and a message with an invalid one cannot be sent at all (the
// stream would fail), so whatever the processor returned is made valid first.
func sessionMetadata(g grouping) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 3)
	fields["session"] = structpb.NewStringValue(strings.ToValidUTF8(g.session, "\uFFFD"))
	fields["part"] = structpb.NewStringValue(strings.ToValidUTF8(g.part, "\uFFFD"))
	if g.key.Source != "" || g.key.Name != "" {
		fields["key"] = structpb.NewStringValue(strings.ToValidUTF8(g.key.String(), "\uFFFD"))
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
