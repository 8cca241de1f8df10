package harness

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	commonmutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// errInvalidMutation fails a request even when failing open, as Envoy does.
var errInvalidMutation = errors.New("invalid header mutation")

// exchange is one request's ext_proc state: Envoy's filter instance for that request.
type exchange struct {
	p      *Proxy
	ctx    context.Context // the upstream request's; outlives a dropped processor
	cancel context.CancelFunc
	mode   *filterv3.ProcessingMode // effective mode: configured, then overridden
	entry  Entry

	// Inline stream state.
	stream       extprocv3.ExternalProcessor_ProcessClient
	streamCancel context.CancelFunc
	answers      chan answer
	sentFirst    bool
	// dropped is true after a fail-open event or a server that closed the stream: Envoy
	// sends nothing more for this request.
	dropped bool
	// side is the observability side stream (nil inline).
	side *side
}

type answer struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

// end closes the processor stream the way Envoy does when the HTTP stream is done: an inline
// stream is reset, a side stream is handed to its deferred close.
func (ex *exchange) end() {
	if ex.streamCancel != nil {
		ex.streamCancel()
	}
	if ex.side != nil {
		ex.side.close()
	}
	ex.cancel()
}

// direction runs one direction's messages (headers, body) and applies the answers to hs and
// body. stop is true when a reply has been written (immediate response, local reply).
func (ex *exchange) direction(w http.ResponseWriter, hs []traffic.Header, body []byte, attrs map[string]any, response bool) ([]traffic.Header, []byte, bool) {
	d := &dirRun{ex: ex, w: w, hs: hs, body: body, attrs: attrs, response: response,
		headersMsg: protomsg.RequestHeaders, bodyMsg: protomsg.RequestBody}
	headerMode, bodyMode := ex.mode.GetRequestHeaderMode(), ex.mode.GetRequestBodyMode()
	if response {
		headerMode, bodyMode = ex.mode.GetResponseHeaderMode(), ex.mode.GetResponseBodyMode()
		d.headersMsg, d.bodyMsg = protomsg.ResponseHeaders, protomsg.ResponseBody
	}
	switch bodyMode {
	case filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_BUFFERED_PARTIAL:
		// Envoy may change such a body piecewise, so it drops content-length.
		d.hs = deleteHeader(d.hs, "content-length")
	}
	eos := len(body) == 0
	replaced := false
	if headerMode != filterv3.ProcessingMode_SKIP {
		var stop bool
		if replaced, stop = d.headers(eos); stop {
			return nil, nil, true
		}
	}
	// The body mode may have changed with an override.
	bodyMode = ex.mode.GetRequestBodyMode()
	if response {
		bodyMode = ex.mode.GetResponseBodyMode()
	}
	if ex.p.filter.GetObservabilityMode() && (bodyMode == filterv3.ProcessingMode_BUFFERED || bodyMode == filterv3.ProcessingMode_BUFFERED_PARTIAL) {
		// Observability mode silently sends no buffered body.
		bodyMode = filterv3.ProcessingMode_NONE
	}
	if eos || replaced || ex.dropped {
		return d.hs, d.body, false
	}
	stop := false
	switch bodyMode {
	case filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_BUFFERED_PARTIAL:
		stop = d.buffered(bodyMode == filterv3.ProcessingMode_BUFFERED)
	case filterv3.ProcessingMode_STREAMED:
		stop = d.streamed()
	}
	if stop {
		return nil, nil, true
	}
	return d.hs, d.body, false
}

// dirRun is one direction of an exchange while direction runs it: the headers and body as the
// answers so far changed them, and the attributes not yet sent.
type dirRun struct {
	ex         *exchange
	w          http.ResponseWriter
	hs         []traffic.Header
	body       []byte
	attrs      map[string]any
	response   bool
	headersMsg func([]traffic.Header, bool) *extprocv3.ProcessingRequest
	bodyMsg    func([]byte, bool) *extprocv3.ProcessingRequest
}

// withAttrs adds the attributes to the first message of the direction, as Envoy does.
func (d *dirRun) withAttrs(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
	if d.attrs != nil {
		protomsg.WithAttributes(m, d.attrs)
		d.attrs = nil
	}
	return m
}

// count adds n body bytes sent to the processor to the exchange's log entry.
func (d *dirRun) count(n int) {
	if d.response {
		d.ex.entry.ResponseBodySent += n
	} else {
		d.ex.entry.RequestBodySent += n
	}
}

// headers sends the headers message and applies its answer. replaced is true when the answer
// replaced the body (CONTINUE_AND_REPLACE), so the body is not sent.
func (d *dirRun) headers(eos bool) (replaced, stop bool) {
	ex := d.ex
	resp, stop := ex.call(d.w, d.withAttrs(d.headersMsg(d.hs, eos)))
	if stop {
		return false, true
	}
	if resp == nil {
		return false, false
	}
	common := resp.GetRequestHeaders().GetResponse()
	if d.response {
		common = resp.GetResponseHeaders().GetResponse()
	}
	if ex.immediate(d.w, resp) {
		return false, true
	}
	var err error
	if d.hs, err = ex.mutate(d.hs, common.GetHeaderMutation()); err != nil {
		ex.fatal(d.w, err)
		return false, true
	}
	if common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		replaced = true
		d.body = mutateBody(d.body, common.GetBodyMutation())
	}
	ex.override(resp.GetModeOverride())
	return replaced, false
}

// buffered sends the body in one message, as BUFFERED (whole; over the buffer limit a local
// reply) or BUFFERED_PARTIAL (up to the limit) do, and applies the answer.
func (d *dirRun) buffered(whole bool) (stop bool) {
	ex := d.ex
	limit := ex.p.o.BufferLimit
	part, partEOS := d.body, true
	if len(d.body) > limit {
		if whole {
			// Over the buffer limit: 413 for a request, 500 for a response.
			status := http.StatusRequestEntityTooLarge
			if d.response {
				status = http.StatusInternalServerError
			}
			ex.entry.Outcome = "failed:buffer_limit"
			ex.localReply(d.w, status, "payload too large")
			return true
		}
		part, partEOS = d.body[:limit], false
	}
	d.count(len(part))
	resp, stop := ex.call(d.w, d.withAttrs(d.bodyMsg(part, partEOS)))
	if stop {
		return true
	}
	if resp == nil {
		return false
	}
	if ex.immediate(d.w, resp) {
		return true
	}
	common := bodyCommon(resp, d.response)
	var err error
	// Headers are still held in buffered modes, so their mutations apply.
	if d.hs, err = ex.mutate(d.hs, common.GetHeaderMutation()); err != nil {
		ex.fatal(d.w, err)
		return true
	}
	if m := common.GetBodyMutation(); m != nil {
		d.body = append(mutateBody(part, m), d.body[len(part):]...)
	}
	return false
}

// streamed sends the body in chunks of the configured size, pipelined (all are sent, then the
// answers are taken in order), and applies each chunk's body mutation.
func (d *dirRun) streamed() (stop bool) {
	ex := d.ex
	size := ex.p.o.ChunkSize
	if size <= 0 {
		size = len(d.body)
	}
	var msgs []*extprocv3.ProcessingRequest
	var chunks [][]byte
	for off := 0; off < len(d.body); off += size {
		end := min(off+size, len(d.body))
		chunks = append(chunks, d.body[off:end])
		msgs = append(msgs, d.withAttrs(d.bodyMsg(d.body[off:end], end == len(d.body))))
	}
	d.count(len(d.body))
	for _, m := range msgs {
		if stop := ex.send(d.w, m); stop {
			return true
		}
	}
	var out []byte
	for i, m := range msgs {
		resp, stop := ex.await(d.w, m)
		if stop {
			return true
		}
		if resp != nil && ex.immediate(d.w, resp) {
			return true
		}
		if mut := bodyCommon(resp, d.response).GetBodyMutation(); mut != nil {
			out = append(out, mutateBody(chunks[i], mut)...)
		} else {
			out = append(out, chunks[i]...)
		}
	}
	if !ex.dropped {
		d.body = out
	}
	return false
}

func bodyCommon(resp *extprocv3.ProcessingResponse, response bool) *extprocv3.CommonResponse {
	if response {
		return resp.GetResponseBody().GetResponse()
	}
	return resp.GetRequestBody().GetResponse()
}

func mutateBody(body []byte, m *extprocv3.BodyMutation) []byte {
	switch b := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return b.Body
	case *extprocv3.BodyMutation_ClearBody:
		if b.ClearBody {
			return nil
		}
	}
	return body
}

// call sends one message and, inline, waits for its answer. A nil answer means none is due
// (observability) or the processor is dropped.
func (ex *exchange) call(w http.ResponseWriter, msg *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, bool) {
	if stop := ex.send(w, msg); stop {
		return nil, true
	}
	return ex.await(w, msg)
}

// send puts one message on the stream, opening it first (Envoy opens it lazily).
func (ex *exchange) send(w http.ResponseWriter, msg *extprocv3.ProcessingRequest) bool {
	if ex.dropped {
		return false
	}
	p := ex.p
	if ex.side != nil {
		protomsg.WithObservability(msg)
		ex.side.enqueue(msg)
		return false
	}
	if ex.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := p.o.Processor.Process(p.streamContext(sctx))
		if err != nil {
			cancel()
			return ex.fail(w, "grpc_error", http.StatusInternalServerError)
		}
		p.opened.Add(1)
		ex.stream, ex.streamCancel = stream, cancel
		ex.answers = make(chan answer, 16)
		go func() {
			for {
				r, err := stream.Recv()
				select {
				case ex.answers <- answer{r, err}:
				case <-sctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if !ex.sentFirst {
		ex.sentFirst = true
		msg.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:                         ex.mode.GetRequestBodyMode(),
			ResponseBodyMode:                        ex.mode.GetResponseBodyMode(),
			SendBodyWithoutWaitingForHeaderResponse: p.filter.GetSendBodyWithoutWaitingForHeaderResponse(),
		}
	}
	if err := ex.stream.Send(msg); err != nil {
		return ex.fail(w, "grpc_error", http.StatusInternalServerError)
	}
	p.sent.Add(1)
	return false
}

// await waits for the answer to msg, bounded by message_timeout (restarted once by an
// override_message_timeout within max_message_timeout).
func (ex *exchange) await(w http.ResponseWriter, msg *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, bool) {
	if ex.dropped || ex.side != nil {
		return nil, false
	}
	f := ex.p.filter
	timeout := defaultMessageTimeout
	if d := f.GetMessageTimeout(); d != nil {
		timeout = d.AsDuration()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	extended := false
	for {
		select {
		case a := <-ex.answers:
			if a.err != nil {
				if errors.Is(a.err, io.EOF) {
					// The server ended the stream with OK: continue without it.
					ex.drop("")
					return nil, false
				}
				return nil, ex.fail(w, "grpc_error", http.StatusInternalServerError)
			}
			resp := a.resp
			if d := resp.GetOverrideMessageTimeout(); d != nil && !extended && f.GetMaxMessageTimeout().AsDuration() > 0 {
				extended = true
				nd := d.AsDuration()
				if nd >= time.Millisecond && nd <= f.GetMaxMessageTimeout().AsDuration() {
					timer.Reset(nd)
				}
				continue
			}
			if !protomsg.Answers(msg, resp) || (resp.GetImmediateResponse() != nil && f.GetDisableImmediateResponse()) {
				return nil, ex.fail(w, "spurious_message", http.StatusInternalServerError)
			}
			ex.metadata(resp)
			return resp, false
		case <-timer.C:
			ex.p.timeouts.Add(1)
			return nil, ex.fail(w, "message_timeout", http.StatusGatewayTimeout)
		}
	}
}

// fail handles a processor failure: fail open (stop talking to it) or a local reply.
func (ex *exchange) fail(w http.ResponseWriter, why string, status int) bool {
	if ex.p.filter.GetFailureModeAllow() {
		ex.p.failedOpen.Add(1)
		ex.drop("failed_open:" + why)
		return false
	}
	if s := ex.p.filter.GetStatusOnError().GetCode(); s != typev3.StatusCode_Empty {
		status = int(s)
	}
	ex.drop("")
	ex.entry.Outcome = "failed:" + why
	ex.localReply(w, status, "ext_proc error")
	return true
}

func (ex *exchange) drop(outcome string) {
	ex.dropped = true
	if outcome != "" {
		ex.entry.Outcome = outcome
	}
	if ex.streamCancel != nil {
		ex.streamCancel()
	}
}

// fatal is an invalid mutation: a 500 even when failing open.
func (ex *exchange) fatal(w http.ResponseWriter, err error) {
	ex.drop("")
	status := http.StatusInternalServerError
	if s := ex.p.filter.GetStatusOnError().GetCode(); s != typev3.StatusCode_Empty {
		status = int(s)
	}
	ex.entry.Outcome = "failed:" + err.Error()
	ex.localReply(w, status, "ext_proc error")
}

// metadata keeps the dynamic metadata of the namespaces the filter receives; Envoy merges
// each answer's fields into the stream's metadata.
func (ex *exchange) metadata(resp *extprocv3.ProcessingResponse) {
	fields := resp.GetDynamicMetadata().GetFields()
	for _, ns := range ex.p.receive {
		s := fields[ns].GetStructValue()
		if s == nil {
			continue
		}
		if ex.entry.Metadata == nil {
			ex.entry.Metadata = map[string]map[string]any{}
		}
		if ex.entry.Metadata[ns] == nil {
			ex.entry.Metadata[ns] = map[string]any{}
		}
		for k, v := range s.GetFields() {
			ex.entry.Metadata[ns][k] = v.AsInterface()
		}
	}
}

// immediate sends an immediate response when resp is one.
func (ex *exchange) immediate(w http.ResponseWriter, resp *extprocv3.ProcessingResponse) bool {
	ir := resp.GetImmediateResponse()
	if ir == nil {
		return false
	}
	status := int(ir.GetStatus().GetCode())
	if status < 200 {
		status = 200
	}
	hs, err := ex.mutate(nil, ir.GetHeaders())
	if err != nil {
		ex.fatal(w, err)
		return true
	}
	for _, h := range hs {
		w.Header().Add(h.Name, h.Value)
	}
	if ex.p.o.Filters.AlwaysSetRequestIDInResponse {
		w.Header().Set("x-request-id", ex.entry.RequestID)
	}
	w.WriteHeader(status)
	_, _ = w.Write(ir.GetBody())
	ex.entry.Status = status
	ex.entry.Outcome = "immediate_response"
	ex.drop("")
	return true
}

// override applies a mode_override from a headers answer as Envoy does: only with
// allow_mode_override and without send_body_without_waiting_for_header_response; header and
// trailer modes left DEFAULT keep the current value, body modes are always taken (unset =
// NONE); the effective mode must equal an allowed_override_modes entry on every field but
// request_header_mode.
func (ex *exchange) override(m *filterv3.ProcessingMode) {
	f := ex.p.filter
	if m == nil || !f.GetAllowModeOverride() || f.GetSendBodyWithoutWaitingForHeaderResponse() {
		return
	}
	eff := proto.Clone(ex.mode).(*filterv3.ProcessingMode)
	if v := m.GetRequestHeaderMode(); v != filterv3.ProcessingMode_DEFAULT {
		eff.RequestHeaderMode = v
	}
	if v := m.GetResponseHeaderMode(); v != filterv3.ProcessingMode_DEFAULT {
		eff.ResponseHeaderMode = v
	}
	if v := m.GetRequestTrailerMode(); v != filterv3.ProcessingMode_DEFAULT {
		eff.RequestTrailerMode = v
	}
	if v := m.GetResponseTrailerMode(); v != filterv3.ProcessingMode_DEFAULT {
		eff.ResponseTrailerMode = v
	}
	eff.RequestBodyMode, eff.ResponseBodyMode = m.GetRequestBodyMode(), m.GetResponseBodyMode()
	for _, b := range []filterv3.ProcessingMode_BodySendMode{eff.RequestBodyMode, eff.ResponseBodyMode} {
		if b == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED || b == filterv3.ProcessingMode_GRPC {
			ex.entry.RejectedOverrides++
			return
		}
	}
	if allowed := f.GetAllowedOverrideModes(); len(allowed) > 0 {
		ok := false
		for _, a := range allowed {
			x, y := proto.Clone(a).(*filterv3.ProcessingMode), proto.Clone(eff).(*filterv3.ProcessingMode)
			x.RequestHeaderMode, y.RequestHeaderMode = 0, 0
			if proto.Equal(x, y) {
				ok = true
				break
			}
		}
		if !ok {
			ex.entry.RejectedOverrides++
			return
		}
	}
	ex.mode = eff
	ex.entry.ModeOverrides++
}

// mutationRules is the compiled mutation_rules of the filter.
type mutationRules struct {
	disallowAll, allowAllRouting, allowEnvoy, disallowSystem, disallowIsError bool
	allow, disallow                                                           *regexp.Regexp
}

func compileRules(r *commonmutationv3.HeaderMutationRules) (mutationRules, error) {
	out := mutationRules{
		disallowAll:     r.GetDisallowAll().GetValue(),
		allowAllRouting: r.GetAllowAllRouting().GetValue(),
		allowEnvoy:      r.GetAllowEnvoy().GetValue(),
		disallowSystem:  r.GetDisallowSystem().GetValue(),
		disallowIsError: r.GetDisallowIsError().GetValue(),
	}
	var err error
	if e := r.GetAllowExpression().GetRegex(); e != "" {
		if out.allow, err = regexp.Compile("^(?:" + e + ")$"); err != nil {
			return out, err
		}
	}
	if e := r.GetDisallowExpression().GetRegex(); e != "" {
		if out.disallow, err = regexp.Compile("^(?:" + e + ")$"); err != nil {
			return out, err
		}
	}
	return out, nil
}

// allowed applies the rules in Envoy's order: disallow_expression, allow_expression,
// disallow_all, then the routing, system and x-envoy rules.
func (r mutationRules) allowed(name string, remove bool) bool {
	system := strings.HasPrefix(name, ":") || name == "host"
	if remove && system {
		return false
	}
	switch {
	case r.disallow != nil && r.disallow.MatchString(name):
		return false
	case r.allow != nil && r.allow.MatchString(name):
		return true
	case r.disallowAll:
		return false
	}
	switch name {
	case ":authority", ":method", ":scheme", "host":
		return r.allowAllRouting && !r.disallowSystem
	}
	if system {
		return !r.disallowSystem
	}
	if strings.HasPrefix(name, "x-envoy-") {
		return r.allowEnvoy
	}
	return true
}

// mutate applies a header mutation: raw_value only (a value-only header becomes an empty
// header, envoy#31555), both set is invalid, append unset or false overwrites.
func (ex *exchange) mutate(hs []traffic.Header, m *extprocv3.HeaderMutation) ([]traffic.Header, error) {
	if m == nil {
		return hs, nil
	}
	rules := ex.p.rules
	for _, o := range m.GetSetHeaders() {
		h := o.GetHeader()
		name := strings.ToLower(h.GetKey())
		if h.GetValue() != "" && len(h.GetRawValue()) > 0 {
			return nil, errInvalidMutation
		}
		value := string(h.GetRawValue())
		if !validName(name) || !validValue(value) {
			return nil, errInvalidMutation
		}
		if !rules.allowed(name, false) {
			ex.entry.RejectedMutations++
			if rules.disallowIsError {
				return nil, errInvalidMutation
			}
			continue
		}
		if !o.GetAppend().GetValue() {
			hs = deleteHeader(hs, name)
		}
		hs = append(hs, traffic.Header{Name: name, Value: value})
	}
	for _, name := range m.GetRemoveHeaders() {
		name = strings.ToLower(name)
		if !rules.allowed(name, true) {
			ex.entry.RejectedMutations++
			continue
		}
		hs = deleteHeader(hs, name)
	}
	return hs, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 8192 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/;<=>?@[\\]{}", c) >= 0 {
			if !(i == 0 && c == ':') {
				return false
			}
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// side is an observability side stream: copies go through a bounded queue to a goroutine
// that sends them; the HTTP request never waits for it.
type side struct {
	p  *Proxy
	ch chan *extprocv3.ProcessingRequest
}

func (p *Proxy) newSide() *side {
	s := &side{p: p, ch: make(chan *extprocv3.ProcessingRequest, p.o.QueueSize)}
	p.sides.Add(1)
	p.sidesOpen.Add(1)
	go s.run()
	return s
}

func (s *side) enqueue(m *extprocv3.ProcessingRequest) {
	select {
	case s.ch <- m:
	default:
		s.p.drops.Add(1)
	}
}

func (s *side) close() { close(s.ch) }

func (s *side) run() {
	defer s.p.sides.Done()
	defer s.p.sidesOpen.Add(-1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stream extprocv3.ExternalProcessor_ProcessClient
	broken := false
	for m := range s.ch {
		if broken {
			continue
		}
		if stream == nil {
			var err error
			if stream, err = s.p.o.Processor.Process(s.p.streamContext(ctx)); err != nil {
				broken = true
				continue
			}
			s.p.opened.Add(1)
		}
		if err := stream.Send(m); err != nil {
			broken = true
			continue
		}
		s.p.sent.Add(1)
	}
	if stream == nil || broken {
		return
	}
	// Deferred close: half-close, give the server deferred_close_timeout to finish, then reset.
	_ = stream.CloseSend()
	d := defaultDeferredCloseTimeout
	if v := s.p.filter.GetDeferredCloseTimeout(); v != nil {
		d = v.AsDuration()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
