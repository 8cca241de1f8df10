package sinks

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

func codecRequest() *record.Request {
	return &record.Request{
		Kind:          record.KindRequest,
		Session:       "s_3f9a2c7e1b5d4a8f9e0c",
		Part:          "2026-11-22",
		RequestID:     "6f1c9a2e-4b7d-4e3a-9c1f-8d2b5a7e3c10",
		Time:          record.At(time.Date(2026, 11, 22, 9, 14, 2, 117_000_000, time.UTC)),
		Method:        "POST",
		Scheme:        "https",
		Host:          "shop.example.com",
		Path:          "/api/v2/cart/items/48213",
		Route:         "/api/v2/cart/items/{id}",
		Status:        201,
		DurationMS:    12.345678,
		RequestBytes:  1834,
		ResponseBytes: 15623,
		ClientIP:      "203.0.113.57",
		UserAgent:     "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		JA4:           "t13d1516h2_8daaf6152771_b0da82dd1658",
		Key:           record.Key{Source: record.SourceBuiltin, Name: "cookie:sid"},
		User:          "alice@example.com",
		Role:          "customer",
		Flows:         []string{"checkout"},
		Params:        map[string]string{"sid": "hmac:00112233445566778899aabbccddeeff", "product_id": "<48213>"},
	}
}

func codecSession() *record.Session {
	return &record.Session{
		Kind:      record.KindSession,
		Session:   "s_3f9a2c7e1b5d4a8f9e0c",
		Part:      "2026-11-22",
		FirstSeen: record.At(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)),
		LastSeen:  record.At(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)),
		Requests:  3,
		Key:       record.Key{Source: record.SourceParam, Name: "sid"},
		IPs:       []string{"203.0.113.57"},
		Methods:   map[string]int{"GET": 2, "POST": 1},
		Final:     true,
		EndReason: record.EndIdle,
	}
}

// otherRecord is a record.Record that is neither a Request nor a Session.
type otherRecord struct {
	ID string `json:"id"`
}

func (o otherRecord) SessionID() string  { return o.ID }
func (o otherRecord) RecordKind() string { return "other" }

// TestMarshalRecordMatchesMarshal checks that MarshalRecord and AppendRecord write the bytes
// json.Marshal writes for the value WithKind returns, and that encodeEntry writes the tag and
// json.Marshal's bytes for the record as it is.
func TestMarshalRecordMatchesMarshal(t *testing.T) {
	t.Parallel()
	emptyKind := codecRequest()
	emptyKind.Kind = ""
	wrongSession := codecSession()
	wrongSession.Kind = record.KindRequest
	tests := []struct {
		name string
		rec  record.Record
	}{
		{name: "a request", rec: codecRequest()},
		{name: "a request without its kind", rec: emptyKind},
		{name: "a session", rec: codecSession()},
		{name: "a session with the wrong kind", rec: wrongSession},
		{name: "a zero session", rec: &record.Session{}},
		{name: "another record type", rec: otherRecord{ID: "<x>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := WithKind(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MarshalRecord(tc.rec)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: MarshalRecord = %s, %v; want %s", tc.name, got, err, want)
			}
			got, err = AppendRecord([]byte("x"), tc.rec)
			if err != nil || !bytes.Equal(got, append([]byte("x"), want...)) {
				t.Errorf("%s: AppendRecord after x = %s, %v; want x%s", tc.name, got, err, want)
			}
			if _, ok := tc.rec.(otherRecord); ok {
				return
			}
			held, err := json.Marshal(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			e, err := encodeEntry(tc.rec)
			if err != nil || len(e) == 0 || !bytes.Equal(e[1:], held) {
				t.Errorf("%s: encodeEntry = %q, %v; want a tag and %s", tc.name, e, err, held)
			}
			back, err := decodeEntry(e)
			if err != nil || back.RecordKind() != tc.rec.RecordKind() {
				t.Errorf("%s: the entry decodes to %T, %v", tc.name, back, err)
			}
		})
	}
}

// TestEncodeErrors checks that records json.Marshal cannot encode fail with its message and
// leave AppendRecord's dst as it was.
func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	nan := codecRequest()
	nan.DurationMS = math.NaN()
	inf := codecRequest()
	inf.Kind = ""
	inf.DurationMS = math.Inf(-1)
	tests := []struct {
		name string
		rec  record.Record
		want string
	}{
		{name: "NaN duration", rec: nan, want: "encode *record.Request: json: unsupported value: NaN"},
		{name: "infinite duration in a copied record", rec: inf, want: "encode *record.Request: json: unsupported value: -Inf"},
		{name: "nil request", rec: (*record.Request)(nil), want: "nil request record"},
		{name: "nil session", rec: (*record.Session)(nil), want: "nil session record"},
		{name: "nil record", rec: nil, want: "nil record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := MarshalRecord(tc.rec); err == nil || err.Error() != tc.want {
				t.Errorf("%s: MarshalRecord error %v, want %s", tc.name, err, tc.want)
			}
			dst := []byte("kept")
			got, err := AppendRecord(dst, tc.rec)
			if err == nil || err.Error() != tc.want {
				t.Errorf("%s: AppendRecord error %v, want %s", tc.name, err, tc.want)
			}
			if string(got) != "kept" {
				t.Errorf("%s: AppendRecord changed dst to %q", tc.name, got)
			}
			if _, err := encodeEntry(tc.rec); err == nil {
				t.Errorf("%s: encodeEntry did not fail", tc.name)
			}
		})
	}
}

// BenchmarkMarshalRecord compares MarshalRecord (AppendJSON into a pooled buffer, copied out at
// its size) with json.Marshal of the value WithKind returns, for a record whose kind is set and
// one whose kind must be fixed in a copy.
func BenchmarkMarshalRecord(b *testing.B) {
	for _, kind := range []string{"kind set", "kind empty"} {
		r := codecRequest()
		if kind == "kind empty" {
			r.Kind = ""
		}
		b.Run(kind+"/append", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MarshalRecord(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := WithKind(r)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSpoolEntriesMarkEvidence: each record is spooled with the tag of its class, which a full
// spool ranks it by, and every entry reads back as the record it was.
func TestSpoolEntriesMarkEvidence(t *testing.T) {
	t.Parallel()
	malicious := codecRequest()
	malicious.Malicious = true
	finalRec := codecSession() // ended idle, no attack
	finalRec.Malicious = 0
	snapshot := codecSession()
	snapshot.Final, snapshot.EndReason, snapshot.Malicious = false, "", 0
	attacked := codecSession()
	attacked.Final, attacked.EndReason, attacked.Malicious = false, "", 2
	for _, tc := range []struct {
		name string
		rec  record.Record
		cl   class
	}{
		{"a plain request", codecRequest(), plain},
		{"a malicious request", malicious, attack},
		{"a snapshot of a session", snapshot, plain},
		{"a final session record", finalRec, final},
		{"a snapshot of an attacked session", attacked, attack},
	} {
		e, err := encodeEntry(tc.rec)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := entryRank(e); got != int(tc.cl) || classOf(tc.rec) != tc.cl {
			t.Errorf("%s: entry rank %d, class %d; want %d", tc.name, got, classOf(tc.rec), tc.cl)
		}
		back, err := decodeEntry(e)
		if err != nil {
			t.Fatalf("%s: decode: %v", tc.name, err)
		}
		want, _ := MarshalRecord(tc.rec)
		if got, _ := MarshalRecord(back); !bytes.Equal(got, want) {
			t.Errorf("%s: read back as %s, want %s", tc.name, got, want)
		}
	}
}
