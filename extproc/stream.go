package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// Bounds on what one stream copies out of attacker-written messages. The gRPC message size
// limit bounds each message; these bound what is kept.
const (
	// maxHeaders is the number of header fields kept per header list; Envoy's own default
	// limit is 100.
	maxHeaders = 1024
	// maxNamespaces bounds the metadata namespaces copied per message.
	maxNamespaces = 16
	// maxMetadataFields bounds the fields copied from one metadata namespace.
	maxMetadataFields = 256
	// maxAttributeLen bounds attribute strings kept (addresses, ids, timestamps).
	maxAttributeLen = 256
	// maxSessionValue bounds a session id sent as a header value.
	maxSessionValue = 1024
)

// errNoRequest is the status for a ProcessingRequest without a request case: Envoy never sends
// one, so the peer does not speak ext_proc.
var errNoRequest = status.Error(codes.InvalidArgument, "processing request has no request message")

// stream is the state of one ext_proc stream: one HTTP request and what was seen of its response.
type stream struct {
	srv  *Server
	cfg  *settings
	proc Processor // nil: answer only
	ctx  context.Context
	log  *slog.Logger
	// debug is computed once: per-stream lines are built only when they will be written.
	debug bool
	// withMetadata is true when the inline answers carry the dynamic metadata: the settings
	// say so (inline.dynamic_metadata), or the stream asked for it (AnswerMetadataKey).
	withMetadata bool

	// started is true once request headers arrived; a stream without them produces nothing.
	started bool
	// scoped is true once the processor accepted the host; only scoped streams are recorded.
	scoped bool
	// finished guards finish: exactly one Observe per stream, on any exit path.
	finished bool
	messages int

	x    traffic.Exchange
	req  body
	resp body
	// reqMode is the request body mode from protocol_config, or BUFFERED_PARTIAL once a
	// mode_override asked for the body.
	reqMode filterv3.ProcessingMode_BodySendMode
	// respMode is the response body mode, likewise; BUFFERED_PARTIAL makes an unended body a
	// truncated one rather than an interrupted response.
	respMode filterv3.ProcessingMode_BodySendMode
	// knowModes is true once protocol_config told the configured body modes; only then can a
	// mode_override ask for a body that is not already sent.
	knowModes bool

	// peeked is true once the processor's Peek answered; grouping is its answer and
	// peekedBody the request body bytes it saw.
	peeked     bool
	grouping   grouping
	peekedBody int64
	// decided is true once the guard answered at the request headers (with the grouping);
	// decision is its answer.
	decided  bool
	decision traffic.Decision
	// deferred is true while the request headers' inline additions wait for the request
	// body's answer (deferToBody).
	deferred bool

	// msg is the message being handled, reused for every message of the stream; hdrs backs
	// its header list so that a typical header list needs no allocation of its own. It comes
	// from headerBufs for the stream's life (run to the end of serve).
	msg  message
	hdrs *[32]wireHeader

	haveTime     bool      // Start came from request.time
	recv         time.Time // when the request headers arrived here, by this server's clock
	haveID       bool      // RequestID came from request.id
	responseCode int       // response.code attribute, used when :status is missing
	// duration is the request.duration attribute when a response-path message carried a
	// valid one (haveDuration): the exchange's duration as its sender measured it.
	duration     time.Duration
	haveDuration bool
}

// body is what one direction's body messages left behind.
type body struct {
	copy bool // copy bytes (the processor reads this body)
	max  int  // copy at most this many bytes
	// buf is what was kept. Its len(buf) bytes are reserved against budget (the server's)
	// until the stream ends, or until the budget refuses more: then the whole body is
	// dropped and overBudget stops further copies.
	buf        []byte
	budget     *bodyBudget
	overBudget bool
	n          int64 // bytes seen, copied or not
	// contentLength is the content-length header, -1 when absent or invalid.
	contentLength int64
	started       bool // a body message arrived
	ended         bool // end_of_stream seen, trailers seen, or headers had end_of_stream
}

func newStream(s *Server, cfg *settings, ctx context.Context) *stream {
	st := &stream{
		srv:  s,
		cfg:  cfg,
		proc: cfg.proc,
		ctx:  ctx,
		log:  cfg.log,
		req:  body{contentLength: -1},
		resp: body{contentLength: -1},
	}
	st.debug = debugEnabled(ctx, cfg.log)
	st.withMetadata = cfg.dynamicMetadata || askedMetadata(ctx)
	return st
}

// run is the stream loop: receive, dispatch by phase, answer unless in observability mode.
// Only this function calls Send.
func (st *stream) run(t transport) error {
	// One message is reused: its header slice keeps its capacity, and what the stream keeps
	// of it (strings, bodies) lives in each message's own buffer.
	m := &st.msg
	if st.hdrs == nil {
		st.hdrs = headerBufs.Get().(*[32]wireHeader)
	}
	m.headers = st.hdrs[:0]
	for {
		if err := t.recv(m); err != nil {
			return st.endOf("receive", err)
		}
		st.messages++
		var began time.Time
		if st.cfg.phases != nil {
			began = time.Now()
		}
		resp, err := st.handle(m)
		if err != nil {
			return err
		}
		if m.body != nil {
			m.release()
		}
		if st.cfg.phases != nil {
			st.cfg.phases.ObservePhase(m.kind, m.observability, time.Since(began))
		}
		if m.observability || resp == nil {
			continue
		}
		if err := t.send(resp); err != nil {
			return st.endOf("send", err)
		}
	}
}

// headerBufs keeps the header arrays of ended streams: 1.5 KiB a stream that would otherwise
// be allocated and cleared with it.
var headerBufs = sync.Pool{New: func() any { return new([32]wireHeader) }}

// releaseHeaders gives the stream's header array back, cleared so that it keeps no message
// alive. Nothing reads the stream's message after serve.
func (st *stream) releaseHeaders() {
	if st.hdrs == nil {
		return
	}
	clear(st.hdrs[:])
	headerBufs.Put(st.hdrs)
	st.hdrs, st.msg.headers = nil, nil
}

// endOf classifies a transport error: Envoy ends streams by resetting them (codes.Canceled) or
// by a half-close (io.EOF); both are a normal end.
func (st *stream) endOf(op string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return nil
	}
	st.srv.stats.streamErrors.Add(1)
	if st.debug {
		st.log.LogAttrs(st.ctx, slog.LevelDebug, "stream error",
			slog.String("op", op), slog.String("request_id", st.x.RequestID), slog.String("error", err.Error()))
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, op+": "+err.Error())
}

// handle dispatches one message and returns its answer (nil = none is due).
func (st *stream) handle(m *message) (*extprocv3.ProcessingResponse, error) {
	if !m.hasKind {
		// A nil case (or one added to the API after this build) cannot be answered correctly.
		st.protocolError("no request case")
		return nil, errNoRequest
	}
	obs := 0
	if m.observability {
		obs = 1
	}
	var resp *extprocv3.ProcessingResponse
	switch m.kind {
	case PhaseRequestHeaders:
		resp = st.onRequestHeaders(m)
	case PhaseRequestBody:
		resp = st.onRequestBody(m)
	case PhaseRequestTrailers:
		resp = st.onRequestTrailers(m)
	case PhaseResponseHeaders:
		resp = st.onResponseHeaders(m)
	case PhaseResponseBody:
		resp = st.onResponseBody(m)
	default:
		resp = st.onResponseTrailers(m)
	}
	st.srv.stats.messages[obs][m.kind].Add(1)
	return resp, nil
}

// recording reports whether message contents are kept: request headers arrived and the host
// is tracked. Messages of other streams are only answered.
func (st *stream) recording() bool { return st.started && st.scoped }

func (st *stream) onRequestHeaders(m *message) *extprocv3.ProcessingResponse {
	if st.started {
		st.protocolError("duplicate request headers")
		return continueRequestHeaders
	}
	st.started = true
	now := st.cfg.now()
	st.recv = now
	x := &st.x
	x.RequestHeaders = st.headers(m, x.RequestHeaders)
	for i := range x.RequestHeaders {
		hd := &x.RequestHeaders[i]
		switch hd.Name {
		case ":method":
			setOnce(&x.Method, hd.Value)
		case ":scheme":
			setOnce(&x.Scheme, hd.Value)
		case ":authority":
			setOnce(&x.Host, hd.Value)
		case ":path":
			setOnce(&x.Path, hd.Value)
		case "host":
			// HTTP/1 upstream codecs may carry only host; :authority wins when both are sent.
			if x.Host == "" {
				x.Host = hd.Value
			}
		case "content-length":
			setLength(&st.req.contentLength, hd.Value)
		case "x-request-id":
			if x.RequestID == "" {
				x.RequestID = clip(hd.Value)
			}
		}
	}
	if pc := m.protocol; pc.present {
		st.reqMode = pc.requestBodyMode
		st.respMode = pc.responseBodyMode
		st.knowModes = true
	}
	if st.proc == nil || !st.proc.InScope(x.Host) {
		st.srv.stats.outOfScope.Add(1)
		return continueRequestHeaders
	}
	st.scoped = true
	needs := st.proc.Needs()
	maxBody := max(st.proc.MaxBodyBytes(), 0)
	st.req.copy, st.req.max = needs.RequestBody && maxBody > 0, maxBody
	st.resp.copy, st.resp.max = needs.ResponseBody && maxBody > 0, maxBody
	st.req.budget, st.resp.budget = &st.srv.budget, &st.srv.budget
	st.attributes(m)
	if !st.haveTime {
		x.Start = now
	}
	if m.eos {
		st.req.ended = true
	}
	st.metadata(m)
	if g := st.cfg.guard; g != nil && g.Active() {
		if resp := st.guard(m.observability); resp != nil {
			return resp
		}
	}
	if m.observability {
		return continueRequestHeaders
	}
	resp := continueRequestHeaders
	switch {
	case st.decision.TagHeader != "":
		resp = st.taggedRequestHeaders()
	case st.cfg.sessionHeader != "" || st.withMetadata:
		if st.deferToBody(m.eos) {
			st.deferred = true
		} else {
			resp = st.inlineRequestHeaders()
		}
	}
	return st.overrideBodies(resp, false, m.eos)
}

func (st *stream) onRequestBody(m *message) *extprocv3.ProcessingResponse {
	if !st.started {
		st.protocolError("request body before request headers")
	}
	if st.recording() {
		st.attributes(m)
		st.metadata(m)
		st.req.add(m.body, m.eos)
		if st.deferred && !m.observability {
			// A buffered mode sends the body in this one message.
			st.deferred = false
			return st.inlineRequestBody()
		}
	}
	return continueRequestBody
}

func (st *stream) onRequestTrailers(m *message) *extprocv3.ProcessingResponse {
	if !st.started {
		st.protocolError("request trailers before request headers")
	}
	if st.recording() {
		st.attributes(m)
		st.metadata(m)
		if st.x.RequestTrailers == nil {
			st.x.RequestTrailers = st.headers(m, nil)
		}
		st.req.ended = true
	}
	return continueRequestTrailers
}

func (st *stream) onResponseHeaders(m *message) *extprocv3.ProcessingResponse {
	if !st.started {
		st.protocolError("response headers before request headers")
		return continueResponseHeaders
	}
	if st.x.ResponseSeen {
		st.protocolError("duplicate response headers")
		return continueResponseHeaders
	}
	if !st.recording() {
		return continueResponseHeaders
	}
	x := &st.x
	x.ResponseSeen = true
	st.attributes(m)
	x.End = st.endNow()
	x.ResponseHeaders = st.headers(m, nil)
	for i := range x.ResponseHeaders {
		hd := &x.ResponseHeaders[i]
		switch hd.Name {
		case ":status":
			if x.Status == 0 {
				x.Status = parseStatus(hd.Value)
			}
		case "content-length":
			setLength(&st.resp.contentLength, hd.Value)
		}
	}
	if x.Status == 0 {
		x.Status = st.responseCode
	}
	if m.eos {
		st.resp.ended = true
	}
	st.metadata(m)
	if m.observability {
		return continueResponseHeaders
	}
	resp := continueResponseHeaders
	if st.withMetadata {
		resp = st.inlineResponseHeaders()
	}
	return st.overrideBodies(resp, true, m.eos)
}

func (st *stream) onResponseBody(m *message) *extprocv3.ProcessingResponse {
	if !st.started {
		st.protocolError("response body before request headers")
	}
	if st.recording() {
		st.attributes(m)
		st.metadata(m)
		st.x.End = st.endNow()
		st.resp.add(m.body, m.eos)
		if m.eos && !m.observability && st.withMetadata {
			return st.inlineResponseBody()
		}
	}
	return continueResponseBody
}

func (st *stream) onResponseTrailers(m *message) *extprocv3.ProcessingResponse {
	if !st.started {
		st.protocolError("response trailers before request headers")
	}
	if st.recording() {
		st.attributes(m)
		st.metadata(m)
		st.x.End = st.endNow()
		if st.x.ResponseTrailers == nil {
			st.x.ResponseTrailers = st.headers(m, nil)
		}
		st.resp.ended = true
	}
	return continueResponseTrailers
}

// add takes one body chunk: counts it, copies what fits under the cap and the budget.
func (b *body) add(p []byte, eos bool) {
	b.started = true
	b.n += int64(len(p))
	if b.copy && !b.overBudget {
		if room := b.max - len(b.buf); room > 0 {
			take := p[:min(room, len(p))]
			switch {
			case len(take) > 0 && b.budget != nil && !b.budget.take(int64(len(take))):
				b.dropOverBudget()
			case b.buf == nil && len(take) == len(p):
				// Most bodies arrive in one message: keep the message's own bytes (a received
				// message is never written; see message). The capacity is cut to the length,
				// so a later chunk is appended to a copy, never into the message. A chunk
				// cut at the cap is copied instead, so that the rest of a large message is
				// not held.
				b.buf = take[:len(take):len(take)]
			default:
				b.buf = append(b.buf, take...)
			}
		}
	}
	if eos {
		b.ended = true
	}
}

// dropOverBudget gives up the body when the budget refuses its next bytes: a part of a body is
// of little use, and its bytes are better left to bodies that fit. The body still counts as
// seen (n), so its record says it was truncated.
func (b *body) dropOverBudget() {
	b.overBudget = true
	b.giveBack()
}

// giveBack returns the kept bytes to the budget and keeps nothing more: when the budget
// refuses the body, and when the stream ends, whatever ended it.
func (b *body) giveBack() {
	if b.budget != nil {
		b.budget.give(int64(len(b.buf)))
	}
	b.buf = nil
}

// result returns the copied body, whether it is incomplete, and the body size.
func (b *body) result() (data []byte, truncated bool, size int64) {
	size = b.n
	if !b.started && b.contentLength >= 0 {
		size = b.contentLength
	}
	if b.copy {
		// A body that started and never ended was cut: BUFFERED_PARTIAL over its limit, or a reset.
		truncated = b.n > int64(len(b.buf)) || (b.started && !b.ended)
	}
	return b.buf, truncated, size
}

// headers reads a message's header list: keys lower-cased, raw_value preferred over value.
// The message kept at most maxHeaders of them and counted the rest. The values are the
// message's own strings, without a copy (see message).
func (st *stream) headers(m *message, dst []traffic.Header) []traffic.Header {
	hs := m.headers
	if m.droppedHeaders > 0 {
		st.srv.stats.headersDropped.Add(uint64(m.droppedHeaders))
	}
	if dst == nil {
		dst = make([]traffic.Header, 0, len(hs))
	}
	for _, h := range hs {
		if h.key == "" {
			// No HTTP codec lets a nameless field through; nothing could look it up.
			continue
		}
		v := h.value
		if h.raw != "" {
			if h.value != "" {
				// Envoy rejects such a header in mutations; as input it is malformed but readable.
				st.protocolError("header with value and raw_value")
			}
			v = h.raw
		}
		dst = append(dst, traffic.Header{Name: lowerASCII(h.key), Value: v})
	}
	return dst
}

// attributes reads the attributes Envoy evaluated for this direction; the first value of each wins.
func (st *stream) attributes(m *message) {
	a := &m.attrs
	if !a.present {
		return
	}
	x := &st.x
	if x.SourceAddress == "" {
		x.SourceAddress = clip(a.sourceAddress.stringValue())
	}
	if !st.haveID {
		if id := clip(a.requestID.stringValue()); id != "" {
			x.RequestID, st.haveID = id, true
		}
	}
	if !st.haveTime {
		if s := a.requestTime.stringValue(); s != "" && len(s) <= maxAttributeLen {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				x.Start, st.haveTime = t, true
			}
		}
	}
	if !st.haveDuration {
		st.duration, st.haveDuration = parseDuration(a.requestDuration.stringValue())
	}
	if st.responseCode == 0 {
		switch v := a.responseCode; v.kind {
		case kindNumber:
			if c := v.num; c >= 100 && c <= 999 {
				st.responseCode = int(c)
			}
		case kindString:
			st.responseCode = parseStatus(v.str)
		}
	}
}

// metadata copies the configured namespaces of the forwarded dynamic metadata. Later messages
// replace earlier copies: a filter may reach its verdict after the request headers. The
// metadata is decoded only here, when namespaces are configured; metadata that does not
// decode is a protocol error and is skipped, the rest of the message is still read.
func (st *stream) metadata(m *message) {
	if len(st.cfg.namespaces) == 0 {
		return
	}
	md, err := m.metadataContext()
	if err != nil {
		st.protocolError("metadata_context: " + err.Error())
		return
	}
	fm := md.GetFilterMetadata()
	if len(fm) == 0 {
		return
	}
	for _, ns := range st.cfg.namespaces {
		s := fm[ns]
		if s == nil {
			continue
		}
		fields := make(map[string]any, min(len(s.GetFields()), maxMetadataFields))
		for k, v := range s.GetFields() {
			if len(fields) == maxMetadataFields {
				break
			}
			fields[k] = v.AsInterface()
		}
		if st.x.Metadata == nil {
			st.x.Metadata = make(map[string]map[string]any, len(st.cfg.namespaces))
		}
		st.x.Metadata[ns] = fields
	}
}

// finish hands the exchange to the processor, once, whatever ended the stream.
func (st *stream) finish() {
	if st.finished {
		return
	}
	st.finished = true
	// Deferred first, so that it runs last, after Observe, even if Observe panics.
	defer st.giveBackBodies()
	// Finishing runs in a deferred call of Process: a panic here must not take the server down.
	defer func() {
		if r := recover(); r != nil {
			st.panicked(r)
		}
	}()
	if !st.recording() {
		return
	}
	x := &st.x
	x.RequestBody, x.RequestBodyTruncated, x.RequestBytes = st.req.result()
	x.ResponseBody, x.ResponseBodyTruncated, x.ResponseBytes = st.resp.result()
	// BUFFERED_PARTIAL sends what fit with end_of_stream=false and nothing more: the response
	// completed, only its body was cut. With response_header_mode SKIP the body's end is the
	// only sign of completion.
	bodyCut := st.resp.started && !st.resp.ended && st.respMode != filterv3.ProcessingMode_BUFFERED_PARTIAL
	x.Partial = !((x.ResponseSeen && !bodyCut) || st.resp.ended)
	if x.Status == 0 {
		x.Status = st.responseCode
	}
	if x.Partial || x.End.IsZero() {
		x.End = st.endNow()
	}
	if st.debug {
		st.log.LogAttrs(st.ctx, slog.LevelDebug, "stream end",
			slog.String("request_id", x.RequestID),
			slog.Int("status", x.Status),
			slog.Bool("partial", x.Partial),
			slog.Int("messages", st.messages),
			slog.Int64("request_bytes", x.RequestBytes),
			slog.Int64("response_bytes", x.ResponseBytes),
			slog.Float64("duration_ms", float64(x.End.Sub(x.Start))/float64(time.Millisecond)))
	}
	if o, ok := st.cfg.guard.(Outcomes); ok && st.decided {
		o.Outcome(x, st.grouping.session)
	}
	st.srv.stats.observed.Add(1)
	st.proc.Observe(x)
}

// maxDuration bounds a request.duration attribute that is taken as the exchange's duration.
const maxDuration = 24 * time.Hour

// parseDuration reads a request.duration attribute as Envoy renders a duration ("1.5s",
// "0.000250s"); Go's other units ("250ms") are read too. A value that is empty, malformed,
// negative or longer than maxDuration is not a duration (ok false).
func parseDuration(s string) (d time.Duration, ok bool) {
	if s == "" || len(s) > maxAttributeLen {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxDuration {
		return 0, false
	}
	return d, true
}

// maxClockSkew is how far request.time may be from this server's clock at the request
// headers and still be taken as of this clock.
const maxClockSkew = 30 * time.Second

// endNow is the exchange's end as of now. A request.duration attribute gives it: Envoy sends none
// before a request completes, but a replay of recorded traffic sends the duration the
// recording holds. Otherwise the duration counts from request.time (Envoy's first byte) when it
// is of this server's clock; a request.time far from it (recorded traffic replayed with its own
// times, a skewed clock) counts from when the request headers arrived here, so that a duration
// is never the distance between two clocks.
func (st *stream) endNow() time.Time {
	if st.haveDuration {
		return st.x.Start.Add(st.duration)
	}
	now := st.cfg.now()
	if st.haveTime && !st.recv.IsZero() {
		if skew := st.recv.Sub(st.x.Start); skew < -maxClockSkew || skew > maxClockSkew {
			return st.x.Start.Add(now.Sub(st.recv))
		}
	}
	return now
}

// giveBackBodies returns the bodies' bytes to the budget once the exchange was handed on.
func (st *stream) giveBackBodies() {
	st.req.giveBack()
	st.resp.giveBack()
}

func (st *stream) protocolError(what string) {
	st.srv.stats.protocolErrors.Add(1)
	if st.debug {
		st.log.LogAttrs(st.ctx, slog.LevelDebug, "protocol error",
			slog.String("error", what), slog.String("request_id", st.x.RequestID))
	}
}

// panicked logs a recovered panic at error level: it is a bug, and it cost one request its record.
func (st *stream) panicked(r any) {
	st.srv.stats.panics.Add(1)
	msg := fmt.Sprint(r)
	if len(msg) > maxAttributeLen {
		msg = msg[:maxAttributeLen]
	}
	st.log.LogAttrs(st.ctx, slog.LevelError, "panic in ext_proc stream",
		slog.String("error", msg),
		slog.String("request_id", st.x.RequestID),
		slog.String("stack", string(debug.Stack())))
}

func setOnce(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func setLength(dst *int64, v string) {
	if *dst >= 0 {
		return
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		*dst = n
	}
}

// parseStatus accepts a three-digit HTTP status and returns 0 for anything else.
func parseStatus(v string) int {
	if len(v) != 3 {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		return 0
	}
	return n
}

// clip bounds strings taken from attributes and ids; they are attacker-influenced.
func clip(s string) string {
	if len(s) > maxAttributeLen {
		return s[:maxAttributeLen]
	}
	return s
}

// lowerASCII lower-cases a header name without allocating when it already is, as Envoy sends it.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}
