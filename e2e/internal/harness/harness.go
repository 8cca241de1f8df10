// Package harness is an Envoy-faithful front proxy for end-to-end tests: an http.Handler that
// accepts real HTTP, calls an ext_proc server over gRPC the way Envoy's ext_proc filter does
// for a given filter configuration, and forwards to a real HTTP upstream.
//
// Per request it opens one Process stream, with grpc_service.initial_metadata as the
// stream's metadata, and sends the messages the configured
// processing_mode asks for (headers, BUFFERED / BUFFERED_PARTIAL / STREAMED bodies in chunks,
// with protocol_config on the first inline message and the configured attributes on the first
// message of each direction). Inline, it waits for each answer up to message_timeout and
// applies it as Envoy does: header mutations (raw_value only, mutation_rules), body
// mutations, mode_override (only in headers answers, only when allowed), immediate responses
// and dynamic metadata in the receiving namespaces; a timeout, a spurious answer or a stream
// error fails open (failure_mode_allow) or fails the request. In observability mode every
// message goes through a bounded queue to a side stream and the request never waits.
//
// Where it differs from Envoy is listed in the e2e README section of the repository README
// and on Options. The package is test tooling: it is imported by e2e tests and the load
// tool only.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/sessions/traffic"
)

// Test-only request headers. TLS is not terminated and every client is on loopback, so tests
// say who the client is with these; the harness always strips them before anything else sees
// the request.
const (
	// HeaderClientAddress is the client's "ip:port" as Envoy's use_remote_address would see it.
	HeaderClientAddress = "x-harness-client-address"
	// HeaderJA3 and HeaderJA4 are the values %TLS_JA3_FINGERPRINT% and %TLS_JA4_FINGERPRINT%
	// expand to in the header_mutation filter.
	HeaderJA3 = "x-harness-ja3"
	HeaderJA4 = "x-harness-ja4"
)

// Envoy's defaults.
const (
	defaultMessageTimeout       = 200 * time.Millisecond
	defaultDeferredCloseTimeout = 5 * time.Second
	// DefaultBufferLimit is Envoy's default per-connection buffer limit (1 MiB).
	DefaultBufferLimit = 1 << 20
	// maxBodyRead bounds what the harness reads of a request or response body.
	maxBodyRead = 16 << 20
	// defaultQueue is the per-stream bound of observability copies waiting to be sent.
	defaultQueue = 256
)

// Options configures a Proxy.
type Options struct {
	// Filters are the ext_proc filter and the header_mutation filter before it, e.g. from
	// FromBootstrap. Filters.ExtProc nil means an ext_proc filter with Envoy's defaults.
	Filters Filters
	// Processor is the ext_proc server.
	Processor extprocv3.ExternalProcessorClient
	// Upstream is the base URL of the upstream API, e.g. http://127.0.0.1:8080.
	Upstream string
	// Transport carries upstream requests; nil means a fresh http.Transport.
	Transport http.RoundTripper
	// ChunkSize splits STREAMED bodies into messages of this many bytes (Envoy sends data as
	// it arrives); 0 sends a body in one message.
	ChunkSize int
	// BufferLimit is the stream's buffer limit for BUFFERED and BUFFERED_PARTIAL bodies;
	// 0 means DefaultBufferLimit.
	BufferLimit int
	// Now is the clock behind request.time; nil means time.Now. Tests inject a clock that
	// crosses midnight to split session parts.
	Now func() time.Time
	// QueueSize bounds the observability copies queued per stream (Envoy queues without a
	// bound); a full queue drops the copy and counts it. 0 means 256.
	QueueSize int
}

// Entry is what an access log line would print for one request.
type Entry struct {
	RequestID string
	Client    string
	Method    string
	Path      string
	Status    int
	// Metadata is the dynamic metadata the processor wrote, by namespace (only namespaces the
	// filter receives), as %DYNAMIC_METADATA(ns:key)% would print it.
	Metadata map[string]map[string]any
	// UpstreamHeaders are the request headers the upstream received (nil without upstream).
	UpstreamHeaders http.Header
	// Outcome says how ext_proc ended for this request: "" (normally), "failed_open:<why>",
	// "failed:<why>" (local reply), or "immediate_response".
	Outcome string
	// ModeOverrides counts accepted mode_override answers, RejectedOverrides those that
	// equalled no allowed_override_modes entry, RejectedMutations header mutations the
	// mutation_rules refused.
	ModeOverrides, RejectedOverrides, RejectedMutations int
	// RequestBodySent and ResponseBodySent are the body bytes sent to the processor.
	RequestBodySent, ResponseBodySent int
	// Duration is the time from the request's arrival to the end of the response.
	Duration time.Duration
}

// Stats counts what the proxy did.
type Stats struct {
	Requests        uint64
	StreamsOpened   uint64
	MessagesSent    uint64
	Timeouts        uint64
	FailedOpen      uint64
	QueueDrops      uint64
	SideStreamsOpen int64
}

// Proxy is the front proxy; it implements http.Handler.
type Proxy struct {
	o         Options
	filter    *filterv3.ExternalProcessor
	mode      *filterv3.ProcessingMode
	rules     mutationRules
	receive   []string
	transport http.RoundTripper
	now       func() time.Time

	sides sync.WaitGroup
	mu    sync.Mutex
	log   []Entry
	byID  map[string]int

	// md is grpc_service.initial_metadata, sent with every stream as Envoy does.
	md metadata.MD

	requests, opened, sent, timeouts, failedOpen, drops atomic.Uint64
	sidesOpen                                           atomic.Int64
}

// New checks o and returns a proxy.
func New(o Options) (*Proxy, error) {
	if o.Processor == nil {
		return nil, fmt.Errorf("harness: no processor client")
	}
	if o.Upstream == "" {
		return nil, fmt.Errorf("harness: no upstream")
	}
	f := o.Filters.ExtProc
	if f == nil {
		f = &filterv3.ExternalProcessor{}
	}
	mode := proto.Clone(f.GetProcessingMode()).(*filterv3.ProcessingMode)
	if mode == nil {
		mode = &filterv3.ProcessingMode{}
	}
	for _, m := range []filterv3.ProcessingMode_BodySendMode{mode.GetRequestBodyMode(), mode.GetResponseBodyMode()} {
		if m == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED || m == filterv3.ProcessingMode_GRPC {
			return nil, fmt.Errorf("harness: body mode %v is not modelled", m)
		}
	}
	rules, err := compileRules(f.GetMutationRules())
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		o: o, filter: f, mode: mode, rules: rules,
		receive:   f.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(),
		transport: o.Transport,
		now:       o.Now,
		byID:      map[string]int{},
	}
	for _, h := range f.GetGrpcService().GetInitialMetadata() {
		v := h.GetValue()
		if v == "" {
			v = string(h.GetRawValue())
		}
		if p.md == nil {
			p.md = metadata.MD{}
		}
		p.md.Append(h.GetKey(), v)
	}
	if p.transport == nil {
		p.transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.o.BufferLimit <= 0 {
		p.o.BufferLimit = DefaultBufferLimit
	}
	if p.o.QueueSize <= 0 {
		p.o.QueueSize = defaultQueue
	}
	return p, nil
}

// streamContext returns ctx carrying the filter's initial_metadata for a new stream.
func (p *Proxy) streamContext(ctx context.Context) context.Context {
	if p.md == nil {
		return ctx
	}
	return metadata.NewOutgoingContext(ctx, p.md)
}

// Log returns the access log so far.
func (p *Proxy) Log() []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// Entry returns the access log entry of a request id.
func (p *Proxy) Entry(requestID string) (Entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.byID[requestID]
	if !ok {
		return Entry{}, false
	}
	return p.log[i], true
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests: p.requests.Load(), StreamsOpened: p.opened.Load(), MessagesSent: p.sent.Load(),
		Timeouts: p.timeouts.Load(), FailedOpen: p.failedOpen.Load(), QueueDrops: p.drops.Load(),
		SideStreamsOpen: p.sidesOpen.Load(),
	}
}

// Wait blocks until every observability side stream has delivered its copies and closed (or
// ctx ends), as Envoy's deferred close would let them.
func (p *Proxy) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.sides.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hopByHop headers are connection-level; Envoy's codecs do not pass them on.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"transfer-encoding": true, "upgrade": true, "trailer": true,
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	p.requests.Add(1)
	ex := &exchange{p: p, mode: proto.Clone(p.mode).(*filterv3.ProcessingMode)}
	ex.entry = Entry{RequestID: newRequestID(), Method: r.Method, Path: r.URL.RequestURI()}
	ex.ctx, ex.cancel = context.WithCancel(context.WithoutCancel(r.Context()))
	defer func() {
		ex.end()
		ex.entry.Duration = time.Since(began)
		p.record(ex.entry)
	}()

	client := r.Header.Get(HeaderClientAddress)
	if client == "" {
		client = r.RemoteAddr
	}
	ex.entry.Client = client
	ja3, ja4 := r.Header.Get(HeaderJA3), r.Header.Get(HeaderJA4)
	for _, h := range []string{HeaderClientAddress, HeaderJA3, HeaderJA4} {
		r.Header.Del(h)
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyRead+1))
	if err != nil || len(body) > maxBodyRead {
		ex.localReply(w, http.StatusRequestEntityTooLarge, "request body unreadable or too large")
		return
	}

	hs := requestHeaders(r, client, ex.entry.RequestID)
	hs = p.headerMutation(hs, ja3, ja4)
	if p.filter.GetObservabilityMode() {
		ex.side = p.newSide()
	}

	// Request path.
	reqAttrs := p.requestAttributes(ex, r, client)
	hs, body, stop := ex.direction(w, hs, body, reqAttrs, false)
	if stop {
		return
	}

	// Upstream.
	resp, upHeaders, err := p.forward(ex.ctx, hs, body)
	ex.entry.UpstreamHeaders = upHeaders
	if err != nil {
		// A local reply: since Envoy 1.34 ext_proc does not see it.
		ex.localReply(w, http.StatusServiceUnavailable, "upstream connect error")
		return
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyRead+1))
	if err != nil || len(respBody) > maxBodyRead {
		ex.localReply(w, http.StatusBadGateway, "upstream body unreadable or too large")
		return
	}
	rhs := responseHeaders(resp)

	// Response path.
	respAttrs := p.responseAttributes(resp)
	rhs, respBody, stop = ex.direction(w, rhs, respBody, respAttrs, true)
	if stop {
		return
	}
	ex.writeResponse(w, rhs, respBody)
}

func (p *Proxy) record(e Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byID[e.RequestID] = len(p.log)
	p.log = append(p.log, e)
}

// newRequestID returns a UUID v4, as Envoy generates x-request-id for edge requests.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// requestHeaders builds the header list Envoy's HTTP connection manager hands to filters:
// pseudo-headers first, names lower-cased, hop-by-hop headers gone, x-request-id replaced
// (edge request, preserve_external_request_id false), the client appended to
// x-forwarded-for (use_remote_address: true) and x-forwarded-proto set.
func requestHeaders(r *http.Request, client, requestID string) []traffic.Header {
	hs := []traffic.Header{
		{Name: ":authority", Value: r.Host},
		{Name: ":path", Value: r.URL.RequestURI()},
		{Name: ":method", Value: r.Method},
		{Name: ":scheme", Value: "http"},
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	var xff string
	for _, k := range names {
		lk := strings.ToLower(k)
		if hopByHop[lk] || lk == "x-request-id" || lk == "x-forwarded-proto" {
			continue
		}
		if lk == "x-forwarded-for" {
			xff = strings.Join(r.Header.Values(k), ",")
			continue
		}
		for _, v := range r.Header.Values(k) {
			hs = append(hs, traffic.Header{Name: lk, Value: v})
		}
	}
	ip := client
	if h, _, err := net.SplitHostPort(client); err == nil {
		ip = h
	}
	if xff != "" {
		xff += ","
	}
	hs = append(hs,
		traffic.Header{Name: "x-forwarded-for", Value: xff + ip},
		traffic.Header{Name: "x-forwarded-proto", Value: "http"},
		traffic.Header{Name: "x-request-id", Value: requestID})
	return hs
}

func responseHeaders(resp *http.Response) []traffic.Header {
	hs := []traffic.Header{{Name: ":status", Value: strconv.Itoa(resp.StatusCode)}}
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range resp.Header.Values(k) {
			hs = append(hs, traffic.Header{Name: lk, Value: v})
		}
	}
	return hs
}

// headerMutation runs the header_mutation filter's request mutations: removals, then
// appends whose value may be a TLS fingerprint formatter, which expands to the test's value
// (an empty expansion adds nothing, as in Envoy).
func (p *Proxy) headerMutation(hs []traffic.Header, ja3, ja4 string) []traffic.Header {
	hm := p.o.Filters.HeaderMutation
	if hm == nil {
		return hs
	}
	for _, m := range hm.GetMutations().GetRequestMutations() {
		if name := strings.ToLower(m.GetRemove()); name != "" {
			hs = deleteHeader(hs, name)
			continue
		}
		a := m.GetAppend()
		if a == nil {
			continue
		}
		name := strings.ToLower(a.GetHeader().GetKey())
		v := a.GetHeader().GetValue()
		v = strings.ReplaceAll(v, "%TLS_JA3_FINGERPRINT%", ja3)
		v = strings.ReplaceAll(v, "%TLS_JA4_FINGERPRINT%", ja4)
		if v == "" {
			continue
		}
		switch a.GetAppendAction().String() {
		case "OVERWRITE_IF_EXISTS_OR_ADD":
			hs = append(deleteHeader(hs, name), traffic.Header{Name: name, Value: v})
		case "ADD_IF_ABSENT":
			if !hasHeader(hs, name) {
				hs = append(hs, traffic.Header{Name: name, Value: v})
			}
		case "OVERWRITE_IF_EXISTS":
			if hasHeader(hs, name) {
				hs = append(deleteHeader(hs, name), traffic.Header{Name: name, Value: v})
			}
		default:
			hs = append(hs, traffic.Header{Name: name, Value: v})
		}
	}
	return hs
}

func deleteHeader(hs []traffic.Header, name string) []traffic.Header {
	return slices.DeleteFunc(hs, func(h traffic.Header) bool { return h.Name == name })
}

func hasHeader(hs []traffic.Header, name string) bool {
	return slices.ContainsFunc(hs, func(h traffic.Header) bool { return h.Name == name })
}

func headerValue(hs []traffic.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// requestAttributes evaluates the configured request_attributes that the harness knows;
// like Envoy, it omits the ones it cannot evaluate.
func (p *Proxy) requestAttributes(ex *exchange, r *http.Request, client string) map[string]any {
	out := map[string]any{}
	_, port, _ := net.SplitHostPort(client)
	for _, a := range p.filter.GetRequestAttributes() {
		switch a {
		case "source.address":
			out[a] = client
		case "source.port":
			if n, err := strconv.Atoi(port); err == nil {
				out[a] = n
			}
		case "destination.address":
			if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				out[a] = la.String()
			}
		case "destination.port":
			if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
				out[a] = la.Port
			}
		case "request.id":
			out[a] = ex.entry.RequestID
		case "request.time":
			out[a] = p.now()
		case "request.protocol":
			out[a] = r.Proto
		case "request.method":
			out[a] = r.Method
		case "request.path":
			out[a] = r.URL.RequestURI()
		case "request.url_path":
			out[a] = r.URL.Path
		case "request.host":
			out[a] = r.Host
		case "request.useragent":
			out[a] = r.UserAgent()
		}
	}
	return out
}

func (p *Proxy) responseAttributes(resp *http.Response) map[string]any {
	out := map[string]any{}
	for _, a := range p.filter.GetResponseAttributes() {
		switch a {
		case "response.code":
			out[a] = resp.StatusCode
		case "response.code_details":
			out[a] = "via_upstream"
		case "upstream.address":
			if resp.Request != nil {
				out[a] = resp.Request.URL.Host
			}
		}
	}
	return out
}

// forward sends the (processed) request to the upstream.
func (p *Proxy) forward(ctx context.Context, hs []traffic.Header, body []byte) (*http.Response, http.Header, error) {
	path := headerValue(hs, ":path")
	req, err := http.NewRequestWithContext(ctx, headerValue(hs, ":method"), strings.TrimSuffix(p.o.Upstream, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Host = headerValue(hs, ":authority")
	for _, h := range hs {
		if strings.HasPrefix(h.Name, ":") || h.Name == "content-length" || h.Name == "host" {
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	resp, err := p.transport.RoundTrip(req)
	return resp, req.Header.Clone(), err
}

// writeResponse sends the processed response to the client.
func (ex *exchange) writeResponse(w http.ResponseWriter, hs []traffic.Header, body []byte) {
	status, _ := strconv.Atoi(headerValue(hs, ":status"))
	if status < 100 || status > 999 {
		status = http.StatusBadGateway
	}
	for _, h := range hs {
		if strings.HasPrefix(h.Name, ":") || h.Name == "content-length" || hopByHop[h.Name] {
			continue
		}
		w.Header().Add(h.Name, h.Value)
	}
	if ex.p.o.Filters.AlwaysSetRequestIDInResponse {
		w.Header().Set("x-request-id", ex.entry.RequestID)
	}
	w.Header().Set("content-length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	ex.entry.Status = status
}

// localReply is an Envoy local reply: ext_proc never sees it.
func (ex *exchange) localReply(w http.ResponseWriter, status int, msg string) {
	if ex.p.o.Filters.AlwaysSetRequestIDInResponse {
		w.Header().Set("x-request-id", ex.entry.RequestID)
	}
	w.Header().Set("content-type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
	ex.entry.Status = status
}
