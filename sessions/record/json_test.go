package record

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostile holds strings that exercise every escaping rule of encoding/json.
var hostile = []string{
	"",
	`<script>alert("x")</script> & more`,
	"\x00\x01\x07\x08\x0b\x0c\x0e\x1f\x7f",
	"tab\tnewline\ncr\r backslash\\ quote\" slash/",
	"line\u2028paragraph\u2029end",
	"bad utf-8: \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 end",
	"valid: é ü 中文 🙂 \ufffd \u2027 \u202a",
	"\x80",
	strings.Repeat("a<", 40),
	allBytes(),
}

// allBytes is every byte value once, in order.
func allBytes() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

// sampleRequest is a request record of about 0.7 KB, as a browser session produces them.
func sampleRequest() *Request {
	return &Request{
		Kind:          KindRequest,
		Session:       "s_3f9a2c7e1b5d4a8f9e0c",
		Part:          "2026-11-22",
		RequestID:     "6f1c9a2e-4b7d-4e3a-9c1f-8d2b5a7e3c10",
		Time:          At(time.Date(2026, 11, 22, 9, 14, 2, 117_345_000, time.UTC)),
		Method:        "POST",
		Scheme:        "https",
		Host:          "shop.example.com",
		Path:          "/api/v2/cart/items/48213",
		Query:         "page=2&token=hmac:00112233445566778899aabbccddeeff",
		Route:         "/api/v2/cart/items/{id}",
		Status:        201,
		DurationMS:    12.345678,
		RequestBytes:  1834,
		ResponseBytes: 15623,
		ClientIP:      "203.0.113.57",
		UserAgent:     "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		JA4:           "t13d1516h2_8daaf6152771_b0da82dd1658",
		Key:           Key{Source: SourceBuiltin, Name: "cookie:sid"},
		User:          "alice@example.com",
		Role:          "customer",
		Flows:         []string{"checkout"},
		Params: map[string]string{
			"sid":        "hmac:00112233445566778899aabbccddeeff",
			"product_id": "48213",
		},
	}
}

func sampleSession() *Session {
	return &Session{
		Kind:       KindSession,
		Session:    "s_3f9a2c7e1b5d4a8f9e0c",
		Part:       "2026-11-22",
		FirstSeen:  At(time.Date(2026, 11, 22, 8, 0, 0, 1_000_000, time.UTC)),
		LastSeen:   At(time.Date(2026, 11, 22, 9, 14, 2, 117_000_000, time.UTC)),
		Requests:   42,
		Key:        Key{Source: SourceParam, Name: "sid"},
		User:       "alice@example.com",
		Role:       "customer",
		IPs:        []string{"203.0.113.57", "2001:db8::1"},
		UserAgents: []string{"curl/8.5.0"},
		Methods:    map[string]int{"GET": 30, "POST": 10, "DELETE": 2},
		Statuses:   map[string]int{"200": 39, "404": 2, "500": 1},
		Flows:      map[string]int{"checkout": 1},
		Malicious:  1,
		BytesIn:    10_000,
		BytesOut:   1 << 40,
		Final:      true,
		EndReason:  EndIdle,
	}
}

// checkRequest fails the test unless r.AppendJSON appends exactly what json.Marshal(r)
// produces, or fails exactly when json.Marshal fails, with the same message and without
// touching dst.
func checkRequest(t *testing.T, name string, r *Request) {
	t.Helper()
	want, wantErr := json.Marshal(r)
	prefix := []byte("prefix:")
	got, err := r.AppendJSON(bytes.Clone(prefix))
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s: AppendJSON error %v, json.Marshal error %v", name, err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Errorf("%s: AppendJSON error %q, json.Marshal error %q", name, err, wantErr)
		}
		if !bytes.Equal(got, prefix) {
			t.Errorf("%s: a failed AppendJSON changed dst to %q", name, got)
		}
		return
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("%s: AppendJSON did not keep dst: %q", name, got)
	}
	if got := got[len(prefix):]; !bytes.Equal(got, want) {
		t.Errorf("%s: AppendJSON wrote\n%s\njson.Marshal writes\n%s", name, got, want)
	}
}

func checkSession(t *testing.T, name string, s *Session) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("%s: json.Marshal failed on a session record: %v", name, err)
	}
	prefix := []byte("prefix:")
	got := s.AppendJSON(bytes.Clone(prefix))
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("%s: AppendJSON did not keep dst: %q", name, got)
	}
	if got := got[len(prefix):]; !bytes.Equal(got, want) {
		t.Errorf("%s: AppendJSON wrote\n%s\njson.Marshal writes\n%s", name, got, want)
	}
}

func TestRequestAppendJSON(t *testing.T) {
	t.Parallel()
	tokyo := time.FixedZone("JST", 9*3600)
	west := time.FixedZone("", -(7*3600 + 30*60))
	type edit func(r *Request)
	tests := []struct {
		name string
		edit edit
	}{
		{name: "a realistic record", edit: func(*Request) {}},
		{name: "a zero record", edit: func(r *Request) { *r = Request{} }},
		{name: "a nil record", edit: nil},
		{name: "a wrong kind is written as held", edit: func(r *Request) { r.Kind = "session<>" }},
		{name: "empty optional strings are left out", edit: func(r *Request) {
			r.RequestID, r.Method, r.Scheme, r.Host, r.Path, r.Query, r.Route = "", "", "", "", "", "", ""
			r.ClientIP, r.UserAgent, r.JA3, r.JA4, r.User, r.Role = "", "", "", "", "", ""
		}},
		{name: "empty, non-nil flows and params are left out", edit: func(r *Request) {
			r.Flows, r.Params = []string{}, map[string]string{}
		}},
		{name: "nil flows and params are left out", edit: func(r *Request) { r.Flows, r.Params = nil, nil }},
		{name: "a flow list with an empty name", edit: func(r *Request) { r.Flows = []string{""} }},
		{name: "a zero time", edit: func(r *Request) { r.Time = Time{} }},
		{name: "a time in a zone east of UTC", edit: func(r *Request) {
			r.Time = At(time.Date(2026, 1, 1, 3, 0, 0, 999_999_999, tokyo))
		}},
		{name: "a time in a zone west of UTC with a half hour", edit: func(r *Request) {
			r.Time = At(time.Date(2025, 12, 31, 20, 0, 0, 5_000_000, west))
		}},
		{name: "a time with a monotonic reading", edit: func(r *Request) { r.Time = At(time.Now()) }},
		{name: "a time past year 9999", edit: func(r *Request) { r.Time = At(time.Date(12345, 6, 7, 8, 9, 10, 0, time.UTC)) }},
		{name: "a time before year 1", edit: func(r *Request) { r.Time = At(time.Date(-44, 3, 15, 12, 0, 0, 0, time.UTC)) }},
		{name: "negative counts", edit: func(r *Request) { r.Status, r.RequestBytes, r.ResponseBytes = -1, math.MinInt64, math.MaxInt64 }},
		{name: "malicious with an attack and its body", edit: func(r *Request) {
			r.Malicious, r.Partial = true, true
			r.Attack = &Attack{
				Source:        "header",
				Types:         []string{"sqli", "xss"},
				RuleIDs:       []string{"942100", "941100"},
				Headers:       map[string]string{"user-agent": "sqlmap/1.7", "content-type": "application/json", ":path": "/login?q=<x>", "Cookie": "sid=hmac:ab"},
				Body:          `{"user":"admin' OR 1=1 --","html":"<img src=x onerror=alert(1)>"}` + "\x00\xff\u2028",
				BodyTruncated: true,
			}
		}},
		{name: "continued from another session, with links", edit: func(r *Request) {
			r.ContinuedFrom = &Continued{Session: "s_\u2028<\x00", Kind: "login"}
			r.Linked = 3
		}},
		{name: "an attack with only its source", edit: func(r *Request) {
			r.Attack = &Attack{Source: "", Types: []string{}, RuleIDs: nil, Headers: map[string]string{}}
		}},
		{name: "params with hostile keys and values", edit: func(r *Request) {
			r.Params = map[string]string{}
			for i, s := range hostile {
				r.Params[s] = hostile[len(hostile)-1-i]
			}
		}},
		{name: "params whose keys sort by bytes", edit: func(r *Request) {
			r.Params = map[string]string{"b": "1", "B": "2", "a": "3", "_": "4", "é": "5", "\xff": "6", "\xfe": "7", "aa": "8", "a\x00": "9"}
		}},
		{name: "params larger than the stack buffer", edit: func(r *Request) {
			r.Params = map[string]string{}
			for i := range 100 {
				r.Params[strings.Repeat("k", 100-i)+string(rune('a'+i%26))] = strings.Repeat("<", i%3)
			}
		}},
		{name: "key with hostile parts", edit: func(r *Request) { r.Key = Key{Source: "\u2029", Name: "cookie:<sid>&\x1b"} }},
	}
	for _, s := range hostile {
		tests = append(tests, struct {
			name string
			edit edit
		}{name: "every string field set to " + strings.ToValidUTF8(s, "?"), edit: func(r *Request) {
			r.Kind, r.Session, r.Part, r.RequestID = s, s, s, s
			r.Method, r.Scheme, r.Host, r.Path, r.Query, r.Route = s, s, s, s, s, s
			r.ClientIP, r.UserAgent, r.JA3, r.JA4, r.User, r.Role = s, s, s, s, s, s
			r.Key = Key{Source: s, Name: s}
			r.Flows = []string{s, s}
			r.Params = map[string]string{s: s}
			r.Attack = &Attack{Source: s, Types: []string{s}, RuleIDs: []string{s}, Headers: map[string]string{s: s}, Body: s}
			r.Protection = &Verdict{Action: s, Rule: s, DryRun: true}
		}})
	}
	floats := []float64{
		0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 12.5, 100, 1e20, 1e21, -1e21, 123456789012345678901.0,
		1e-6, 1e-7, 9.999999e-7, -1e-7, 1.5e-9, 1e-10, 1e-100, 5e-324, -5e-324, math.SmallestNonzeroFloat64,
		math.MaxFloat64, -math.MaxFloat64, 1e300, 999999999999999999999.0, 0.000001, 0.0000011,
		float64(1 << 53), float64(1<<53) + 2, 1e16, 1.7976931348623157e308,
	}
	for _, f := range floats {
		tests = append(tests, struct {
			name string
			edit edit
		}{name: "duration " + formatForName(f), edit: func(r *Request) { r.DurationMS = f }})
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -math.NaN()} {
		tests = append(tests, struct {
			name string
			edit edit
		}{name: "an unsupported duration " + formatForName(f), edit: func(r *Request) { r.DurationMS = f }})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.edit == nil {
				checkRequest(t, tc.name, nil)
				return
			}
			r := sampleRequest()
			tc.edit(r)
			checkRequest(t, tc.name, r)
		})
	}
}

func formatForName(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestSessionAppendJSON(t *testing.T) {
	t.Parallel()
	tokyo := time.FixedZone("JST", 9*3600)
	type edit func(s *Session)
	tests := []struct {
		name string
		edit edit
	}{
		{name: "a realistic record", edit: func(*Session) {}},
		{name: "a zero record", edit: func(s *Session) { *s = Session{} }},
		{name: "a nil record", edit: nil},
		{name: "not final, no end reason", edit: func(s *Session) { s.Final, s.EndReason = false, "" }},
		{name: "empty, non-nil lists and maps are left out", edit: func(s *Session) {
			s.IPs, s.UserAgents = []string{}, []string{}
			s.Methods, s.Statuses, s.Flows = map[string]int{}, map[string]int{}, map[string]int{}
		}},
		{name: "nil lists and maps are left out", edit: func(s *Session) {
			s.IPs, s.UserAgents, s.Methods, s.Statuses, s.Flows = nil, nil, nil, nil, nil
		}},
		{name: "times in zones and zero", edit: func(s *Session) {
			s.FirstSeen = Time{}
			s.LastSeen = At(time.Date(2026, 11, 23, 0, 30, 0, 123_456_789, tokyo))
		}},
		{name: "extreme counts", edit: func(s *Session) {
			s.Requests, s.Malicious, s.BytesIn, s.BytesOut = math.MaxInt, math.MinInt, math.MinInt64, -1
			s.Methods = map[string]int{"GET": math.MaxInt, "POST": math.MinInt, "": 0}
		}},
		{name: "maps larger than the stack buffer", edit: func(s *Session) {
			s.Statuses = map[string]int{}
			for i := range 60 {
				s.Statuses[strings.Repeat("5", i%4)+string(rune('A'+i))] = i
			}
		}},
	}
	for _, str := range hostile {
		tests = append(tests, struct {
			name string
			edit edit
		}{name: "every string field set to " + strings.ToValidUTF8(str, "?"), edit: func(s *Session) {
			s.Kind, s.Session, s.Part, s.User, s.Role, s.EndReason = str, str, str, str, str, str
			s.Key = Key{Source: str, Name: str}
			s.IPs, s.UserAgents = []string{str}, []string{str, str}
			s.Methods = map[string]int{str: 1, "GET": 2}
			s.Statuses = map[string]int{str: 3}
			s.Flows = map[string]int{str: 4, str + "x": 5}
			s.Risk, s.RiskReasons = 87, []RiskReason{{Signal: str, Points: 39.5}, {Signal: "denied", Points: 1e-7}}
		}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.edit == nil {
				checkSession(t, tc.name, nil)
				return
			}
			s := sampleSession()
			tc.edit(s)
			checkSession(t, tc.name, s)
		})
	}
}

// TestAppendFloatMatchesMarshal compares the duration's encoding with json.Marshal's over
// random bit patterns (every exponent, subnormals, NaN and infinities) and random decimals.
func TestAppendFloatMatchesMarshal(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 20000 {
		f := math.Float64frombits(rng.Uint64())
		if i%2 == 1 {
			// A decimal with up to 17 digits and a power of ten around the format switches.
			f = float64(rng.Int64N(1e17)) * math.Pow10(rng.IntN(60)-40)
		}
		want, wantErr := json.Marshal(f)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			if wantErr == nil {
				t.Fatalf("json.Marshal(%v) did not fail", f)
			}
			if err := unsupportedFloat(f); err.Error() != wantErr.Error() {
				t.Errorf("error for %v is %q, json.Marshal's is %q", f, err, wantErr)
			}
			continue
		}
		if buf = appendFloat(buf[:0], f); !bytes.Equal(buf, want) {
			t.Errorf("%v (bits %#x) is written %s, json.Marshal writes %s", f, math.Float64bits(f), buf, want)
		}
	}
}

// TestAppendJSONAllocs checks that encoding into a buffer that is large enough allocates
// nothing, maps included, which is the point of AppendJSON.
func TestAppendJSONAllocs(t *testing.T) {
	r, s := sampleRequest(), sampleSession()
	r.Attack = &Attack{Source: "header", Types: []string{"sqli"}, Headers: map[string]string{"a": "1", "b": "<2>"}}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = r.AppendJSON(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Request.AppendJSON into a large enough buffer allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = s.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("Session.AppendJSON into a large enough buffer allocates %v times, want 0", n)
	}
}

// fields splits s at commas into at most 8 parts; flag picks nil (0), empty (1) or the parts.
func fields(s string, flag uint16) []string {
	switch flag % 3 {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	return strings.SplitN(s, ",", 8)
}

// stringMap turns "k=v&k=v" into a map; flag picks nil (0), empty (1) or the pairs.
func stringMap(s string, flag uint16) map[string]string {
	switch flag % 3 {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for _, kv := range strings.SplitN(s, "&", 40) {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// intMap turns "k,k,k" into counts; flag picks nil (0), empty (1) or the counts.
func intMap(s string, n int64, flag uint16) map[string]int {
	switch flag % 3 {
	case 0:
		return nil
	case 1:
		return map[string]int{}
	}
	m := map[string]int{}
	for i, k := range strings.SplitN(s, ",", 40) {
		m[k] += int(n) + i
	}
	return m
}

// FuzzAppendJSONMatchesMarshal builds a request and a session record from fuzzed strings and
// numbers and requires AppendJSON to write the bytes json.Marshal writes, and to fail exactly
// when json.Marshal fails.
func FuzzAppendJSONMatchesMarshal(f *testing.F) {
	for i, s := range hostile {
		f.Add(s, "a=1&<b>=\u2028&c", "GET,POST,\xff", 12.5, int64(i), int64(1_790_000_000+i), int64(i*1_234_567), int32(i*1800), uint16(i*977))
	}
	for i, d := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 1e21, 1e-7, 5e-324, math.MaxFloat64, 0.1 + 0.2} {
		f.Add("kind", "session", "part", d, int64(-i), int64(0), int64(0), int32(0), uint16(0xffff))
	}
	f.Fuzz(func(t *testing.T, a, b, c string, dur float64, n, sec, nsec int64, zone int32, flags uint16) {
		at := time.Unix(sec, nsec).In(time.FixedZone("Z", int(zone)))
		opt := func(bit int, s string) string {
			if flags&(1<<bit) != 0 {
				return ""
			}
			return s
		}
		r := &Request{
			Kind:          a,
			Session:       b,
			Part:          c,
			RequestID:     opt(0, a+b),
			Time:          At(at),
			Method:        opt(1, b),
			Scheme:        opt(2, c),
			Host:          opt(3, a),
			Path:          opt(4, c+a),
			Query:         opt(3, b+a),
			Route:         opt(5, b+c),
			Status:        int(n),
			DurationMS:    dur,
			RequestBytes:  n,
			ResponseBytes: sec,
			ClientIP:      opt(6, c),
			UserAgent:     opt(7, a),
			JA3:           opt(1, c),
			JA4:           opt(2, b),
			Key:           Key{Source: b, Name: c},
			User:          opt(8, a),
			Role:          opt(9, b),
			Flows:         fields(c, flags>>10),
			Params:        stringMap(a, flags>>4),
			Malicious:     flags&(1<<11) != 0,
			Partial:       flags&(1<<12) != 0,
		}
		if flags&(1<<9) != 0 && flags&(1<<14) != 0 {
			r.ContinuedFrom = &Continued{Session: c, Kind: opt(15, a)}
			r.Linked = int(sec)
		}
		if flags&(1<<13) != 0 {
			r.Attack = &Attack{
				Source:        a,
				Types:         fields(b, flags>>3),
				RuleIDs:       fields(c, flags>>5),
				Headers:       stringMap(b, flags>>6),
				Body:          opt(14, c),
				BodyTruncated: flags&(1<<15) != 0,
			}
		}
		if flags&(1<<14) != 0 {
			r.Protection = &Verdict{Action: opt(3, b), Rule: a, DryRun: flags&(1<<15) != 0}
		}
		checkRequest(t, "fuzzed request", r)
		// The mutator rarely changes a float argument in ways that matter; reading an integer
		// argument's bits as the duration reaches every exponent, subnormals and NaN payloads.
		r.DurationMS = math.Float64frombits(uint64(nsec))
		checkRequest(t, "fuzzed request with a duration from bits", r)

		s := &Session{
			Kind:       b,
			Session:    c,
			Part:       a,
			FirstSeen:  At(at),
			LastSeen:   At(time.Unix(nsec, sec).In(time.FixedZone("", -int(zone)))),
			Requests:   int(n),
			Key:        Key{Source: c, Name: a},
			User:       opt(1, b),
			Role:       opt(2, c),
			IPs:        fields(a, flags),
			UserAgents: fields(b, flags>>2),
			Methods:    intMap(c, n, flags>>4),
			Statuses:   intMap(a, sec, flags>>6),
			Flows:      intMap(b, nsec, flags>>8),
			Malicious:  int(sec),
			BytesIn:    nsec,
			BytesOut:   n ^ sec,
			Linked:     int(n),
			Final:      flags&(1<<10) != 0,
			EndReason:  opt(11, a),
			Risk:       int(n % 101),
		}
		if flags&(1<<12) != 0 {
			s.RiskReasons = []RiskReason{{Signal: b, Points: float64(sec) / 10}, {Signal: c, Points: float64(nsec)}}
		}
		checkSession(t, "fuzzed session", s)
	})
}

// BenchmarkAppendJSON compares AppendJSON into a reused buffer with json.Marshal on a
// request record of about 0.7 KB.
func BenchmarkAppendJSON(b *testing.B) {
	r := sampleRequest()
	want, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("append", func(b *testing.B) {
		b.SetBytes(int64(len(want)))
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = r.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(buf, want) {
			b.Fatalf("AppendJSON wrote %s, want %s", buf, want)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.SetBytes(int64(len(want)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
