package extproc

import (
	"strings"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// BodySelector is an optional interface of a Processor. When the processor implements it,
// the server asks it, in inline mode, whether one side's body is worth requesting from Envoy
// for this exchange; x holds the headers of that side (and the whole request for the
// response side). Without it the server asks for a body when Needs says a parameter reads
// that side and the content type is one a parameter can read (see ReadableContentType).
type BodySelector interface {
	WantBody(x *traffic.Exchange, response bool) bool
}

// ReadableContentType reports whether a body of this content type can hold a parameter
// value: JSON (application/json, any +json type), urlencoded and multipart forms, and a body
// without a content type (which may be sniffed as JSON). Parameters such as charset are
// ignored; comparison is case-insensitive.
func ReadableContentType(ct string, present bool) bool {
	if !present {
		return true
	}
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case mt == "":
		return true
	case strings.EqualFold(mt, "application/json"),
		len(mt) > len("+json") && strings.EqualFold(mt[len(mt)-len("+json"):], "+json"),
		strings.EqualFold(mt, "application/x-www-form-urlencoded"),
		strings.EqualFold(mt, "multipart/form-data"):
		return true
	}
	return false
}

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

// wantBody decides whether one side's body is worth a mode override.
func (st *stream) wantBody(response bool) bool {
	if bs, ok := st.proc.(BodySelector); ok {
		return bs.WantBody(&st.x, response)
	}
	needs := st.proc.Needs()
	var ct string
	var ok bool
	if response {
		if !needs.ResponseBody {
			return false
		}
		ct, ok = st.x.ResponseHeader("content-type")
	} else {
		if !needs.RequestBody {
			return false
		}
		ct, ok = st.x.RequestHeader("content-type")
	}
	return ReadableContentType(ct, ok)
}

// overrideBodies adds a mode_override to an inline headers answer when this side has a body
// that a parameter can read and the configured mode does not send it. Envoy honours it only
// in answers to headers messages, with allow_mode_override, when it equals one of
// allowed_override_modes; elsewhere it ignores it, so asking is always safe. The configured
// modes come from protocol_config (first inline message; Envoys too old to send it get no
// overrides). The body mode of the other side is restated: a body mode left out of an
// override means NONE.
func (st *stream) overrideBodies(resp *extprocv3.ProcessingResponse, response, endOfStream bool) *extprocv3.ProcessingResponse {
	cur := &st.reqMode
	if response {
		cur = &st.respMode
	}
	if !st.knowModes || endOfStream || sends(*cur) || st.proc.MaxBodyBytes() <= 0 || !st.wantBody(response) {
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
