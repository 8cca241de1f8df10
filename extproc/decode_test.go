package extproc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// checkDecode holds decode to the generated code: whatever proto.Unmarshal accepts, decode
// accepts too and reads as fromProto reads the generated message. Bytes the generated code
// refuses may still decode (decode skips what it does not read and accepts any string bytes),
// but must not panic.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var got message
	gotErr := got.decode(b)
	var req extprocv3.ProcessingRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		if gotErr != nil && !errors.Is(gotErr, errWire) {
			t.Fatalf("decode error %v is not errWire", gotErr)
		}
		return
	}
	if gotErr != nil {
		t.Fatalf("decode: %v; the generated code reads these bytes as %v", gotErr, &req)
	}
	var want message
	want.fromProto(&req)
	if got.kind != want.kind || got.hasKind != want.hasKind || got.eos != want.eos ||
		got.observability != want.observability || got.protocol != want.protocol || !bytes.Equal(got.body, want.body) {
		t.Fatalf("decode = kind %v/%t eos %t obs %t protocol %+v body %q\nwant kind %v/%t eos %t obs %t protocol %+v body %q",
			got.kind, got.hasKind, got.eos, got.observability, got.protocol, got.body,
			want.kind, want.hasKind, want.eos, want.observability, want.protocol, want.body)
	}
	if len(got.headers) != len(want.headers) || got.droppedHeaders != want.droppedHeaders {
		t.Fatalf("decode kept %d headers and dropped %d; want %d and %d",
			len(got.headers), got.droppedHeaders, len(want.headers), want.droppedHeaders)
	}
	for i := range got.headers {
		if got.headers[i] != want.headers[i] {
			t.Fatalf("header %d = %+v; want %+v", i, got.headers[i], want.headers[i])
		}
	}
	if !sameAttributes(got.attrs, want.attrs) {
		t.Fatalf("attributes = %+v; want %+v", got.attrs, want.attrs)
	}
	gotMD, err := got.metadataContext()
	if err != nil {
		t.Fatalf("metadata_context: %v; the generated code reads it", err)
	}
	if wantMD, _ := want.metadataContext(); !proto.Equal(gotMD, wantMD) {
		t.Fatalf("metadata_context = %v; want %v", gotMD, wantMD)
	}
}

// sameAttributes compares attributes, numbers by their bits (NaN is a value like any other).
func sameAttributes(a, b attributes) bool {
	same := func(x, y attrValue) bool {
		return x.kind == y.kind && x.str == y.str && math.Float64bits(x.num) == math.Float64bits(y.num)
	}
	return a.present == b.present && same(a.sourceAddress, b.sourceAddress) && same(a.requestID, b.requestID) &&
		same(a.requestTime, b.requestTime) && same(a.responseCode, b.responseCode)
}

// wire builders for the cases the generated encoder never writes.
func tag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(b, num, typ)
}

func lenField(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(tag(b, num, protowire.BytesType), v)
}

func varintField(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(b, num, protowire.VarintType), v)
}

func header(key, value, raw string) []byte {
	var h []byte
	if key != "" {
		h = lenField(h, 1, []byte(key))
	}
	if value != "" {
		h = lenField(h, 2, []byte(value))
	}
	if raw != "" {
		h = lenField(h, 3, []byte(raw))
	}
	return h
}

func headerList(hs ...[]byte) []byte {
	var m []byte
	for _, h := range hs {
		m = lenField(m, 1, h)
	}
	return m
}

func stringValue(s string) []byte { return lenField(nil, 3, []byte(s)) }

func numberValue(f float64) []byte {
	return protowire.AppendFixed64(tag(nil, 2, protowire.Fixed64Type), math.Float64bits(f))
}

func entry(key string, values ...[]byte) []byte {
	e := lenField(nil, 1, []byte(key))
	for _, v := range values {
		e = lenField(e, 2, v)
	}
	return e
}

func structOf(entries ...[]byte) []byte {
	var s []byte
	for _, e := range entries {
		s = lenField(s, 1, e)
	}
	return s
}

func manyHeaders(n int) [][]byte {
	hs := make([][]byte, n)
	for i := range hs {
		hs[i] = header(fmt.Sprintf("x-%d", i), "", "v")
	}
	return hs
}

// TestDecodeMatchesGenerated covers protobuf's merge rules and the encodings a generated
// encoder never writes but a peer may.
func TestDecodeMatchesGenerated(t *testing.T) {
	reqHeaders := func(b ...[]byte) []byte {
		var m []byte
		for _, x := range b {
			m = lenField(m, fieldRequestHeaders, x)
		}
		return m
	}
	httpHeaders := func(eos bool, hs ...[]byte) []byte {
		m := lenField(nil, 1, headerList(hs...))
		if eos {
			m = varintField(m, 3, 1)
		}
		return m
	}
	attrs := func(entries ...[]byte) []byte {
		return lenField(nil, fieldAttributes, entry(attributesKey, structOf(entries...)))
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty message: no request case", nil},
		{"request headers", reqHeaders(httpHeaders(true, header(":path", "", "/a"), header("x", "v", "")))},
		{"request headers sent twice merge", reqHeaders(httpHeaders(false, header("a", "", "1")), httpHeaders(true, header("b", "", "2")))},
		{"a later case replaces an earlier one",
			append(reqHeaders(httpHeaders(true, header("a", "", "1"))), lenField(nil, 4, lenField(nil, 1, []byte("body")))...)},
		{"the same case again after another starts afresh",
			append(append(reqHeaders(httpHeaders(false, header("a", "", "1"))), lenField(nil, 5, nil)...), reqHeaders(httpHeaders(false, header("b", "", "2")))...)},
		{"header fields repeated: last wins", reqHeaders(lenField(nil, 1, lenField(nil, 1,
			append(append(header("k1", "v1", "r1"), header("k2", "", "")...), lenField(nil, 3, nil)...))))},
		{"header with value and raw_value", reqHeaders(httpHeaders(false, header("k", "v", "r")))},
		{"empty header", reqHeaders(httpHeaders(false, nil))},
		{"more headers than are kept", reqHeaders(httpHeaders(false, manyHeaders(maxHeaders+7)...))},
		{"more headers than are kept, over two header maps", reqHeaders(httpHeaders(false, manyHeaders(maxHeaders-1)...),
			httpHeaders(false, manyHeaders(3)...))},
		{"response trailers", lenField(nil, 7, lenField(nil, 1, headerList(header("grpc-status", "", "0"))))},
		{"body sent twice: last wins", lenField(nil, 4, append(lenField(nil, 1, []byte("one")), append(lenField(nil, 1, []byte("two")), varintField(nil, 2, 1)...)...))},
		{"end_of_stream as a big varint", lenField(nil, 5, varintField(nil, 2, 1<<40))},
		{"wrong wire type on known fields is unknown",
			append(varintField(nil, fieldRequestHeaders, 7), append(lenField(nil, fieldObservability, []byte("x")),
				lenField(nil, 3, append(varintField(nil, 1, 3), lenField(nil, 1, headerList(varintField(nil, 1, 1), header("ok", "", "1")))...))...)...)},
		{"unknown fields of every wire type",
			append(protowire.AppendFixed32(tag(nil, 99, protowire.Fixed32Type), 1),
				append(protowire.AppendFixed64(tag(nil, 98, protowire.Fixed64Type), 1),
					append(tag(append(varintField(tag(nil, 97, protowire.StartGroupType), 1, 1), nil...), 97, protowire.EndGroupType),
						reqHeaders(httpHeaders(false, header("a", "", "1")))...)...)...)},
		{"observability then not", append(varintField(nil, fieldObservability, 1), varintField(nil, fieldObservability, 0)...)},
		{"protocol config merged", append(lenField(nil, fieldProtocolConfig, varintField(nil, 1, 2)),
			lenField(nil, fieldProtocolConfig, append(varintField(nil, 2, 3), varintField(nil, 3, 1)...))...)},
		{"empty protocol config is present", lenField(nil, fieldProtocolConfig, nil)},
		{"protocol config negative enum", lenField(nil, fieldProtocolConfig, varintField(nil, 1, math.MaxUint64))},
		{"attributes", attrs(entry("source.address", stringValue("10.0.0.1:5")), entry("request.id", stringValue("id")),
			entry("request.time", stringValue("2026-01-02T03:04:05Z")), entry("response.code", numberValue(200)), entry("other", stringValue("x")))},
		{"attribute value before its key, and key twice", lenField(nil, fieldAttributes,
			append(append(lenField(nil, 2, structOf(entry("request.id", stringValue("id")))), lenField(nil, 1, []byte("nope"))...), lenField(nil, 1, []byte(attributesKey))...))},
		{"attributes entry again replaces it", append(attrs(entry("request.id", stringValue("one"))), attrs(entry("source.address", stringValue("a")))...)},
		{"attributes of another key are ignored", append(attrs(entry("request.id", stringValue("one"))),
			lenField(nil, fieldAttributes, entry("other", structOf(entry("request.id", stringValue("two")))))...)},
		{"attributes entry with no value", lenField(nil, fieldAttributes, lenField(nil, 1, []byte(attributesKey)))},
		{"value sent twice in one entry merges", attrs(entry("request.id", stringValue("one"), nil), entry("response.code", numberValue(404), stringValue("502")))},
		{"a field again replaces its value", attrs(entry("request.id", stringValue("one")), entry("request.id", nil))},
		{"kinds that are neither string nor number", attrs(entry("request.id", varintField(nil, 4, 1)), entry("source.address", varintField(nil, 1, 0)),
			entry("response.code", lenField(nil, 5, nil)), entry("request.time", lenField(nil, 6, nil)))},
		{"string after another kind", attrs(entry("request.id", append(varintField(nil, 4, 1), stringValue("late")...)))},
		{"number NaN", attrs(entry("response.code", numberValue(math.NaN())))},
		{"metadata merged", append(lenField(nil, fieldMetadataContext, lenField(nil, 1, entry("waf", structOf(entry("a", stringValue("1")))))),
			lenField(nil, fieldMetadataContext, lenField(nil, 1, entry("other", structOf(entry("b", numberValue(2))))))...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.name, "more headers") {
				var m message
				if err := m.decode(tc.b); err != nil || len(m.headers) != maxHeaders || m.droppedHeaders == 0 {
					t.Fatalf("decode = %v, kept %d, dropped %d; want %d kept and the rest counted", err, len(m.headers), m.droppedHeaders, maxHeaders)
				}
			}
			var req extprocv3.ProcessingRequest
			if err := proto.Unmarshal(tc.b, &req); err != nil {
				t.Fatalf("the case is not a valid message: %v", err)
			}
			checkDecode(t, tc.b)
		})
	}
}

// TestDecodeLenient: what the generated code refuses but decode reads, and what both refuse.
func TestDecodeLenient(t *testing.T) {
	t.Run("invalid UTF-8 in a header name", func(t *testing.T) {
		b := lenField(nil, fieldRequestHeaders, lenField(nil, 1, headerList(header("\xff", "", "v"))))
		var m message
		if err := m.decode(b); err != nil || len(m.headers) != 1 || m.headers[0].key != "\xff" {
			t.Fatalf("decode = %v, %+v; want the header read as sent", err, m.headers)
		}
	})
	t.Run("invalid metadata does not lose the message", func(t *testing.T) {
		b := append(lenField(nil, fieldRequestHeaders, nil), lenField(nil, fieldMetadataContext, []byte{0x0a, 0x05})...)
		var m message
		if err := m.decode(b); err != nil || !m.hasKind {
			t.Fatalf("decode = %v; want the request headers read", err)
		}
		if _, err := m.metadataContext(); err == nil {
			t.Fatal("metadataContext read a truncated map entry")
		}
	})
	for _, b := range [][]byte{
		{0x12},             // tag, no length
		{0x12, 0x05, 0x0a}, // length past the end
		{0x00, 0x01},       // field number 0
		lenField(nil, fieldRequestHeaders, []byte{0x0a, 0x03, 0x0a, 0x09}),       // nested length past its message
		{0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint overflow
	} {
		var m message
		if err := m.decode(b); !errors.Is(err, errWire) {
			t.Errorf("decode(% x) = %v; want errWire", b, err)
		}
	}
}

// decodeSeeds are the encodings of Envoy-shaped streams and of the fuzzMessages seeds.
func decodeSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(m *extprocv3.ProcessingRequest) {
		b, err := proto.Marshal(m)
		if err == nil {
			out = append(out, b)
		}
	}
	x := postExchange(`{"token":"t-1","items":[1,2]}`)
	x.ResponseBody = []byte(`{"ok":true}`)
	x.RequestTrailers = pairs("x-checksum", "abc")
	x.ResponseTrailers = pairs("grpc-status", "0")
	mode := &filterv3.ProcessingMode{RequestBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
		RequestTrailerMode: filterv3.ProcessingMode_SEND, ResponseTrailerMode: filterv3.ProcessingMode_SEND}
	for _, obs := range []bool{false, true} {
		for _, m := range protomsg.Sequence(x, protomsg.Options{Mode: mode, Observability: obs, ChunkSize: 7}) {
			protomsg.WithMetadata(m, "waf", map[string]any{"verdict": "block", "score": 9.5, "tags": []any{"a", nil, true}})
			add(m)
		}
	}
	for _, seed := range fuzzProcessSeeds {
		for _, m := range fuzzMessages(seed) {
			add(m)
		}
	}
	return out
}

func TestDecodeSeeds(t *testing.T) {
	seeds := decodeSeeds(t)
	if len(seeds) < 20 {
		t.Fatalf("only %d seeds", len(seeds))
	}
	for _, b := range seeds {
		checkDecode(t, b)
	}
}

// FuzzDecode: decode never panics, and reads what the generated code reads.
func FuzzDecode(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// TestDecodeAllocates: a message decodes without allocating once its header slice has grown;
// only gRPC's copy of the message's bytes is allocated per message.
func TestDecodeAllocates(t *testing.T) {
	msgs := decodeSeeds(t)[:4]
	var m message
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range msgs {
			if err := m.decode(b); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("decode allocates %.1f times per 4 messages; want 0", allocs)
	}
}

// BenchmarkDecode compares decode with proto.Unmarshal on the request headers and response
// headers of an Envoy-shaped exchange with attributes.
func BenchmarkDecode(b *testing.B) {
	x := getExchange()
	msgs := protomsg.Sequence(x, protomsg.Options{Mode: &filterv3.ProcessingMode{}})
	var enc [][]byte
	for _, m := range msgs {
		e, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		enc = append(enc, e)
	}
	b.Run("decode", func(b *testing.B) {
		var m message
		b.ReportAllocs()
		for b.Loop() {
			for _, e := range enc {
				if err := m.decode(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, e := range enc {
				var m extprocv3.ProcessingRequest
				if err := proto.Unmarshal(e, &m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
