package extproc

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Guard decides what happens to a request at its request headers (implemented by
// *protect.Engine). It groups the request as Processor.Peek does, returns the grouping and
// fills d; enforce is false in observability mode, where nothing can be done and every
// verdict is a dry run. It must not block.
type Guard interface {
	// Active reports whether anything may apply (rules or manual blocks); when not, the
	// stream goes on as if there were no guard.
	Active() bool
	// withPart is false when the caller does not use the part (no dynamic metadata): the
	// part may then come back empty, and no shared state is read for it.
	Decide(x *traffic.Exchange, enforce, withPart bool, d *traffic.Decision) (session, part string, key record.Key)
}

// Outcomes is implemented by a Guard that learns from how exchanges ended (login outcomes)
// for the requests that follow. Outcome is called once per stream the guard decided, with the
// finished exchange and the session it was decided under, before the exchange is recorded; it
// must not block.
type Outcomes interface {
	Outcome(x *traffic.Exchange, session string)
}

// guard asks the guard at the request headers and keeps its verdict for the record. It
// returns the immediate response that answers the request instead of the upstream, or nil to
// let the request on.
func (st *stream) guard(observability bool) *extprocv3.ProcessingResponse {
	d := &st.decision
	session, part, key := st.cfg.guard.Decide(&st.x, !observability, st.withMetadata, d)
	st.peeked, st.peekedBody, st.decided = true, st.req.n, true
	st.grouping = grouping{session: session, part: part, key: key}
	st.x.Verdict = d.Verdict
	if observability || d.Status == 0 {
		return nil
	}
	st.srv.stats.immediateResponses.Add(1)
	// Envoy answers the client itself and sends nothing more of this request: the record
	// shows the status it gave.
	x := &st.x
	x.Status, x.ResponseSeen, x.End = d.Status, true, st.cfg.now()
	st.resp.ended = true
	return st.immediateResponse(d)
}

// immediateResponse builds the answer of a block or a rate limit. Its header values come from
// a validated configuration; the body goes as is.
func (st *stream) immediateResponse(d *traffic.Decision) *extprocv3.ProcessingResponse {
	hs := make([]*corev3.HeaderValueOption, 0, len(d.Headers)+1)
	for _, h := range d.Headers {
		hs = append(hs, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)}, Append: falseValue})
	}
	if d.RetryAfter > 0 {
		hs = append(hs, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "retry-after", RawValue: strconv.AppendInt(nil, int64(d.RetryAfter), 10)}, Append: falseValue})
	}
	ir := &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Body:    []byte(d.Body),
		Details: "apisessions_" + d.Verdict.Action,
	}
	if len(hs) > 0 {
		ir.Headers = &extprocv3.HeaderMutation{SetHeaders: hs}
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: ir}}
	if st.withMetadata && st.grouping.session != "" {
		resp.DynamicMetadata = verdictMetadata(st.grouping, d)
	}
	return resp
}

// taggedRequestHeaders answers the request headers of a request a tag rule marked: the tag
// header set to the rule's name, the session header, and the verdict in the dynamic metadata.
// Tagged answers differ by rule and are not cached.
func (st *stream) taggedRequestHeaders() *extprocv3.ProcessingResponse {
	g, d := st.grouping, &st.decision
	set := make([]*corev3.HeaderValueOption, 0, 2)
	if st.cfg.sessionHeader != "" && validHeaderValue(g.session) {
		set = append(set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: st.cfg.sessionHeader, RawValue: []byte(g.session)}, Append: falseValue})
	}
	if validHeaderName(d.TagHeader) && validHeaderValue(d.Verdict.Rule) {
		set = append(set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: d.TagHeader, RawValue: []byte(d.Verdict.Rule)}, Append: falseValue})
	}
	common := &extprocv3.CommonResponse{}
	if len(set) > 0 {
		common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: set}
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: common}}}
	if st.withMetadata && g.session != "" {
		resp.DynamicMetadata = verdictMetadata(g, d)
	}
	return resp
}

// verdictMetadata is the session's metadata with the verdict's action and rule added.
func verdictMetadata(g grouping, d *traffic.Decision) *structpb.Struct {
	md := sessionMetadata(g)
	if ns := md.Fields[MetadataNamespace].GetStructValue(); ns != nil {
		ns.Fields["action"] = structpb.NewStringValue(d.Verdict.Action)
		ns.Fields["verdict"] = structpb.NewStringValue(d.Verdict.Rule)
	}
	return md
}
