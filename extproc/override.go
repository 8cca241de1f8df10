package extproc

import (
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// OverrideMode is the processing mode apisessions puts in mode_override when it asks for a
// body that the filter's configuration does not send. Every field is spelled out, so the
// mode equals an entry of allowed_override_modes whether Envoy compares the override as sent
// or merged with the configured header modes; bodies are BUFFERED_PARTIAL, which never fails
// a request on size. The bootstrap that `apisessions envoy-config` renders lists exactly the
// modes this function can return.
func OverrideMode(requestBody, responseBody bool) *filterv3.ProcessingMode {
	m := &filterv3.ProcessingMode{
		RequestHeaderMode:   filterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  filterv3.ProcessingMode_SEND,
		RequestBodyMode:     filterv3.ProcessingMode_NONE,
		ResponseBodyMode:    filterv3.ProcessingMode_NONE,
		RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
	if requestBody {
		m.RequestBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	if responseBody {
		m.ResponseBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	return m
}

// sends reports whether a configured body mode makes Envoy send the body inline.
func sends(m filterv3.ProcessingMode_BodySendMode) bool {
	return m != filterv3.ProcessingMode_NONE // NONE is also the enum's zero, Envoy's default
}

// wantBody asks the processor whether one side's body is worth a mode override, by that
// side's content type.
func (st *stream) wantBody(side traffic.Side) bool {
	var ct string
	if side == traffic.Response {
		ct, _ = st.x.ResponseHeader("content-type")
	} else {
		ct, _ = st.x.RequestHeader("content-type")
	}
	return st.proc.WantBody(side, ct)
}

// overrideBodies adds a mode_override to an inline headers answer when this side has a body
// that a parameter can read and the configured mode does not send it. Envoy honours it only
// in answers to headers messages, with allow_mode_override, when it equals one of
// allowed_override_modes; elsewhere it ignores it, so asking is always safe. The configured
// modes come from protocol_config (first inline message; Envoys too old to send it get no
// overrides). The body mode of the other side is restated: a body mode left out of an
// override means NONE.
func (st *stream) overrideBodies(resp *extprocv3.ProcessingResponse, response, endOfStream bool) *extprocv3.ProcessingResponse {
	cur, side := &st.reqMode, traffic.Request
	if response {
		cur, side = &st.respMode, traffic.Response
	}
	if !st.knowModes || endOfStream || sends(*cur) || st.proc.MaxBodyBytes() <= 0 || !st.wantBody(side) {
		return resp
	}
	*cur = filterv3.ProcessingMode_BUFFERED_PARTIAL
	mode := OverrideMode(sends(st.reqMode), sends(st.respMode))
	// Keep a body mode configured as something other than BUFFERED_PARTIAL as it is.
	if !response && sends(st.respMode) {
		mode.ResponseBodyMode = st.respMode
	}
	if response && sends(st.reqMode) {
		mode.RequestBodyMode = st.reqMode
	}
	// A fresh answer around the same content: resp may be shared by other streams (the
	// CONTINUE answers, cached inline answers), which only ever read it. A pre-encoded answer
	// (wire) keeps its bytes; the peer reads the override beside them as one message.
	out := &extprocv3.ProcessingResponse{Response: resp.Response, DynamicMetadata: resp.DynamicMetadata, ModeOverride: mode}
	if raw := resp.ProtoReflect().GetUnknown(); len(raw) > 0 {
		out.ProtoReflect().SetUnknown(raw)
	}
	st.srv.stats.modeOverrides.Add(1)
	return out
}
