package extproc

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// message is one ProcessingRequest as a stream reads it, decoded from its wire form by decode.
//
// Decoding into the generated ProcessingRequest cost more than all of the server's own work
// per exchange: every header is a message of its own, and the attributes are a map of Structs
// of maps, about a hundred allocations per exchange. decode reads the same bytes with the
// protobuf wire primitives into this flat form instead: strings and bytes alias the message's
// buffer, which belongs to the stream alone and is never written, and only the attributes the
// stream reads are kept. Its result is the one proto.Unmarshal gives, read through the
// getters the stream used (FuzzDecode compares the two on every input the generated code
// accepts); it accepts more, since it skips what it does not read and does not ask strings to
// be UTF-8 (header names are ASCII in every Envoy codec; values come as raw bytes anyway).
type message struct {
	// kind is the request case; hasKind is false when the message has none.
	kind    Phase
	hasKind bool
	// headers are the request or response headers, or the trailers, in order: the first
	// maxHeaders of them; droppedHeaders counts the rest, which are read but not kept.
	headers        []wireHeader
	droppedHeaders int
	body           []byte
	eos            bool

	observability bool
	protocol      protocolConfig
	attrs         attributes
	// metadata holds each metadata_context field as sent, decoded only when asked for
	// (metadataContext); fromProto sets metadataMsg instead.
	metadata    [][]byte
	metadataMsg *corev3.Metadata
}

// wireHeader is one HeaderValue.
type wireHeader struct {
	key, value, raw string
}

// protocolConfig is protocol_config: the body modes of the filter's configuration.
type protocolConfig struct {
	present                           bool
	requestBodyMode, responseBodyMode filterv3.ProcessingMode_BodySendMode
}

// attributes is what the stream reads of attributes[attributesKey]; present is false when the
// message has no such entry.
type attributes struct {
	present                               bool
	sourceAddress, requestID, requestTime attrValue
	responseCode, requestDuration         attrValue
}

// attrValue is one google.protobuf.Value: its kind and, for a string or a number, its value.
type attrValue struct {
	kind valueKind
	str  string
	num  float64
}

type valueKind uint8

const (
	kindNone   valueKind = iota // no kind set
	kindNumber                  // number_value
	kindString                  // string_value
	kindOther                   // null, bool, struct or list
)

// stringValue is what Value.GetStringValue returns.
func (v attrValue) stringValue() string {
	if v.kind == kindString {
		return v.str
	}
	return ""
}

// Field numbers of the messages decode reads.
const (
	fieldRequestHeaders   = 2 // ProcessingRequest, oneof request: 2 to 7
	fieldResponseTrailers = 7
	fieldMetadataContext  = 8
	fieldAttributes       = 9
	fieldObservability    = 10
	fieldProtocolConfig   = 11
)

// phaseOfField maps the request case's field number to its phase.
var phaseOfField = [...]Phase{
	2: PhaseRequestHeaders, 3: PhaseResponseHeaders,
	4: PhaseRequestBody, 5: PhaseResponseBody,
	6: PhaseRequestTrailers, 7: PhaseResponseTrailers,
}

// errWire reports bytes that are not a protobuf message.
var errWire = errors.New("malformed protobuf")

func wireError(what string, n int) error {
	return fmt.Errorf("%w: %s: %v", errWire, what, protowire.ParseError(n))
}

// field is one field of a message: its number, wire type and, for the scalar and length
// types, its value.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	bytes []byte // BytesType
	u64   uint64 // VarintType, Fixed64Type
}

// fields walks a message's fields. next returns false at the end or on malformed bytes; err
// tells which.
type fields struct {
	b   []byte
	err error
}

func (it *fields) next(f *field) bool {
	if len(it.b) == 0 || it.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(it.b)
	if n < 0 {
		it.err = wireError("tag", n)
		return false
	}
	it.b = it.b[n:]
	*f = field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.u64, n = protowire.ConsumeVarint(it.b)
	case protowire.Fixed64Type:
		f.u64, n = protowire.ConsumeFixed64(it.b)
	case protowire.BytesType:
		f.bytes, n = protowire.ConsumeBytes(it.b)
	default:
		// Fixed32 and groups: nothing decode reads, skipped as the generated code skips
		// unknown fields.
		n = protowire.ConsumeFieldValue(num, typ, it.b)
	}
	if n < 0 {
		it.err = wireError(fmt.Sprintf("field %d", num), n)
		return false
	}
	it.b = it.b[n:]
	return true
}

// str is a string over b without a copy; b is part of a message buffer nothing writes.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decode reads b, a serialized ProcessingRequest, into m, reusing m's header slice. m's
// strings and bytes alias b, so b must not be written afterwards.
//
// Protobuf's rules hold as the generated code applies them: the last of a repeated scalar
// wins, a message field sent twice is merged, a oneof case replaces a different one, map
// entries replace earlier ones of the same key, and a known field with an unexpected wire
// type is skipped as unknown.
func (m *message) decode(b []byte) error {
	*m = message{headers: m.headers[:0], metadata: m.metadata[:0]}
	it := fields{b: b}
	var f field
	for it.next(&f) {
		switch {
		case f.num >= fieldRequestHeaders && f.num <= fieldResponseTrailers && f.typ == protowire.BytesType:
			p := phaseOfField[f.num]
			if !m.hasKind || m.kind != p {
				m.kind, m.hasKind = p, true
				m.headers, m.droppedHeaders, m.body, m.eos = m.headers[:0], 0, nil, false
			}
			var err error
			switch p {
			case PhaseRequestHeaders, PhaseResponseHeaders:
				err = m.httpHeaders(f.bytes)
			case PhaseRequestBody, PhaseResponseBody:
				err = m.httpBody(f.bytes)
			default:
				err = m.httpTrailers(f.bytes)
			}
			if err != nil {
				return err
			}
		case f.num == fieldMetadataContext && f.typ == protowire.BytesType:
			m.metadata = append(m.metadata, f.bytes)
		case f.num == fieldAttributes && f.typ == protowire.BytesType:
			if err := m.attrs.entry(f.bytes); err != nil {
				return err
			}
		case f.num == fieldObservability && f.typ == protowire.VarintType:
			m.observability = f.u64 != 0
		case f.num == fieldProtocolConfig && f.typ == protowire.BytesType:
			if err := m.protocol.decode(f.bytes); err != nil {
				return err
			}
		}
	}
	return it.err
}

// httpHeaders reads HttpHeaders: headers (1, a HeaderMap) and end_of_stream (3).
func (m *message) httpHeaders(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if err := m.headerMap(f.bytes); err != nil {
				return err
			}
		case f.num == 3 && f.typ == protowire.VarintType:
			m.eos = f.u64 != 0
		}
	}
	return it.err
}

// httpBody reads HttpBody: body (1) and end_of_stream (2).
func (m *message) httpBody(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			m.body = f.bytes
		case f.num == 2 && f.typ == protowire.VarintType:
			m.eos = f.u64 != 0
		}
	}
	return it.err
}

// httpTrailers reads HttpTrailers: trailers (1, a HeaderMap).
func (m *message) httpTrailers(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.num == 1 && f.typ == protowire.BytesType {
			if err := m.headerMap(f.bytes); err != nil {
				return err
			}
		}
	}
	return it.err
}

// headerMap appends the HeaderValues (1) of a HeaderMap: key (1), value (2), raw_value (3).
func (m *message) headerMap(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.num != 1 || f.typ != protowire.BytesType {
			continue
		}
		var h wireHeader
		hv := fields{b: f.bytes}
		var g field
		for hv.next(&g) {
			if g.typ != protowire.BytesType {
				continue
			}
			switch g.num {
			case 1:
				h.key = str(g.bytes)
			case 2:
				h.value = str(g.bytes)
			case 3:
				h.raw = str(g.bytes)
			}
		}
		if hv.err != nil {
			return hv.err
		}
		m.addHeader(h)
	}
	return it.err
}

// addHeader keeps h unless maxHeaders are kept already: a message of a few MiB could otherwise
// hold a million empty headers.
func (m *message) addHeader(h wireHeader) {
	if len(m.headers) == maxHeaders {
		m.droppedHeaders++
		return
	}
	m.headers = append(m.headers, h)
}

// decode merges a ProtocolConfiguration: request_body_mode (1), response_body_mode (2).
func (pc *protocolConfig) decode(b []byte) error {
	pc.present = true
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.typ != protowire.VarintType {
			continue
		}
		switch f.num {
		case 1:
			pc.requestBodyMode = filterv3.ProcessingMode_BodySendMode(int32(f.u64))
		case 2:
			pc.responseBodyMode = filterv3.ProcessingMode_BodySendMode(int32(f.u64))
		}
	}
	return it.err
}

// mapEntry returns the key (1) of a map entry, the last one sent; the values (2) are read by
// a second walk, since a value sent twice in one entry is merged.
func mapEntry(b []byte) (key string, err error) {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.num == 1 && f.typ == protowire.BytesType {
			key = str(f.bytes)
		}
	}
	return key, it.err
}

// entryValues calls fn with each value (2) of a map entry, in order.
func entryValues(b []byte, fn func([]byte) error) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.num == 2 && f.typ == protowire.BytesType {
			if err := fn(f.bytes); err != nil {
				return err
			}
		}
	}
	return it.err
}

// entry reads one entry of ProcessingRequest.attributes; only attributesKey's is kept, and it
// replaces an earlier one.
func (a *attributes) entry(b []byte) error {
	key, err := mapEntry(b)
	if err != nil || key != attributesKey {
		return err
	}
	*a = attributes{present: true}
	return entryValues(b, a.structFields)
}

// structFields merges a google.protobuf.Struct: its fields (1) are map entries of Values.
func (a *attributes) structFields(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		if f.num != 1 || f.typ != protowire.BytesType {
			continue
		}
		key, err := mapEntry(f.bytes)
		if err != nil {
			return err
		}
		var v *attrValue
		switch key {
		case "source.address":
			v = &a.sourceAddress
		case "request.id":
			v = &a.requestID
		case "request.time":
			v = &a.requestTime
		case "response.code":
			v = &a.responseCode
		case "request.duration":
			v = &a.requestDuration
		default:
			continue
		}
		*v = attrValue{}
		if err := entryValues(f.bytes, v.decode); err != nil {
			return err
		}
	}
	return it.err
}

// decode merges a google.protobuf.Value: the last kind sent wins.
func (v *attrValue) decode(b []byte) error {
	it := fields{b: b}
	var f field
	for it.next(&f) {
		switch {
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			*v = attrValue{kind: kindNumber, num: math.Float64frombits(f.u64)}
		case f.num == 3 && f.typ == protowire.BytesType:
			*v = attrValue{kind: kindString, str: str(f.bytes)}
		case (f.num == 1 || f.num == 4) && f.typ == protowire.VarintType,
			(f.num == 5 || f.num == 6) && f.typ == protowire.BytesType:
			*v = attrValue{kind: kindOther}
		}
	}
	return it.err
}

// metadataContext returns metadata_context: nil when the message has none.
func (m *message) metadataContext() (*corev3.Metadata, error) {
	if m.metadataMsg != nil || len(m.metadata) == 0 {
		return m.metadataMsg, nil
	}
	md := &corev3.Metadata{}
	for _, b := range m.metadata {
		// Sent twice, a message field is merged.
		if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(b, md); err != nil {
			return nil, err
		}
	}
	return md, nil
}

// fromProto reads a generated ProcessingRequest into m through its getters, as the stream
// read it before decode existed: the message of in-process callers (Process), whose strings
// need not be valid UTF-8 and so cannot always be encoded, and the reference FuzzDecode holds
// decode to.
func (m *message) fromProto(req *extprocv3.ProcessingRequest) {
	*m = message{headers: m.headers[:0], metadata: m.metadata[:0]}
	var hs []*corev3.HeaderValue
	m.hasKind = true
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		m.kind, hs, m.eos = PhaseRequestHeaders, r.RequestHeaders.GetHeaders().GetHeaders(), r.RequestHeaders.GetEndOfStream()
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		m.kind, hs, m.eos = PhaseResponseHeaders, r.ResponseHeaders.GetHeaders().GetHeaders(), r.ResponseHeaders.GetEndOfStream()
	case *extprocv3.ProcessingRequest_RequestBody:
		m.kind, m.body, m.eos = PhaseRequestBody, r.RequestBody.GetBody(), r.RequestBody.GetEndOfStream()
	case *extprocv3.ProcessingRequest_ResponseBody:
		m.kind, m.body, m.eos = PhaseResponseBody, r.ResponseBody.GetBody(), r.ResponseBody.GetEndOfStream()
	case *extprocv3.ProcessingRequest_RequestTrailers:
		m.kind, hs = PhaseRequestTrailers, r.RequestTrailers.GetTrailers().GetHeaders()
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		m.kind, hs = PhaseResponseTrailers, r.ResponseTrailers.GetTrailers().GetHeaders()
	default:
		m.hasKind = false
	}
	for _, h := range hs {
		m.addHeader(wireHeader{key: h.GetKey(), value: h.GetValue(), raw: string(h.GetRawValue())})
	}
	m.observability = req.GetObservabilityMode()
	if pc := req.GetProtocolConfig(); pc != nil {
		m.protocol = protocolConfig{present: true, requestBodyMode: pc.GetRequestBodyMode(), responseBodyMode: pc.GetResponseBodyMode()}
	}
	if a := req.GetAttributes()[attributesKey]; a != nil {
		f := a.GetFields()
		m.attrs = attributes{present: true,
			sourceAddress: valueOf(f["source.address"]), requestID: valueOf(f["request.id"]),
			requestTime: valueOf(f["request.time"]), responseCode: valueOf(f["response.code"]),
			requestDuration: valueOf(f["request.duration"])}
	}
	m.metadataMsg = req.GetMetadataContext()
}

func valueOf(v *structpb.Value) attrValue {
	switch k := v.GetKind().(type) {
	case nil:
		return attrValue{}
	case *structpb.Value_NumberValue:
		return attrValue{kind: kindNumber, num: k.NumberValue}
	case *structpb.Value_StringValue:
		return attrValue{kind: kindString, str: k.StringValue}
	default:
		return attrValue{kind: kindOther}
	}
}
