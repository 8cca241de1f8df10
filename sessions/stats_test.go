package sessions

import (
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// TestStatsParseErrorsAndLookupCache feeds values each decoder refuses and checks that every
// failure is counted once per recorded exchange under its source, that Peek counts none, and
// that the lookup cache counts a miss and then hits for one token.
func TestStatsParseErrorsAndLookupCache(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t,
		config.Parameter{Name: "user", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.sub"},
		config.Parameter{Name: "b64", In: config.InRequestHeader, Key: "x-b64", Decode: config.DecodeBase64},
		config.Parameter{Name: "js", In: config.InRequestHeader, Key: "x-json", Decode: config.DecodeJSON, Path: "$.a"},
		config.Parameter{Name: "email", In: config.InRequestBody, Path: "$.email"},
		config.Parameter{Name: "field", In: config.InRequestBody, Key: "field"},
	)
	multipart := func(x *traffic.Exchange, ct, body string) *traffic.Exchange {
		x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "content-type", Value: ct})
		x.RequestBody = []byte(body)
		return x
	}
	good := jwt(t, map[string]any{"sub": "ann"})
	cases := []struct {
		name string
		x    *traffic.Exchange
		want [extract.NumParseSources]uint64
	}{
		{name: "valid values count nothing",
			x: withJSONBody(exchange("POST", "/", "authorization", "Bearer "+good, "x-b64", "aGVsbG8", "x-json", `{"a":"b"}`), `{"email":"a@b"}`)},
		{name: "a JWT whose payload is not base64 JSON",
			x:    exchange("GET", "/", "authorization", "Bearer aaa.!!!.ccc"),
			want: [extract.NumParseSources]uint64{extract.ParseJWT: 1}},
		{name: "a value that is not base64",
			x:    exchange("GET", "/", "x-b64", "***"),
			want: [extract.NumParseSources]uint64{extract.ParseBase64: 1}},
		{name: "a value that is not JSON",
			x:    exchange("GET", "/", "x-json", `{"a":`),
			want: [extract.NumParseSources]uint64{extract.ParseJSON: 1}},
		{name: "a JSON body that does not parse, read by two parameters",
			x:    withJSONBody(exchange("POST", "/"), `{"email":`),
			want: [extract.NumParseSources]uint64{extract.ParseJSONBody: 1}},
		{name: "a multipart body without a boundary",
			x:    multipart(exchange("POST", "/"), "multipart/form-data", "--x\r\n"),
			want: [extract.NumParseSources]uint64{extract.ParseFormBody: 1}},
		{name: "a multipart body with a malformed part",
			x:    multipart(exchange("POST", "/"), "multipart/form-data; boundary=xyz", "--xyz\r\nbroken"),
			want: [extract.NumParseSources]uint64{extract.ParseFormBody: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, _, _ := newTestEngine(t, cfg)
			e.Peek(tc.x)
			if got := e.Stats().ParseErrors; got != ([extract.NumParseSources]uint64{}) {
				t.Errorf("after Peek: parse errors %v; want none", got)
			}
			e.Observe(tc.x)
			if got := e.Stats().ParseErrors; got != tc.want {
				t.Errorf("parse errors %v; want %v (sources %v)", got, tc.want, extract.ParseSourceNames)
			}
		})
	}

	t.Run("lookup cache hits and misses", func(t *testing.T) {
		t.Parallel()
		e, _, _ := newTestEngine(t, cfg)
		x := exchange("GET", "/", "authorization", "Bearer "+good)
		e.Observe(x)
		e.cache.Wait()
		e.Observe(x)
		e.Observe(x)
		if s := e.Stats(); s.LookupCacheMisses != 1 || s.LookupCacheHits != 2 {
			t.Errorf("lookup cache hits %d misses %d; want 2 and 1", s.LookupCacheHits, s.LookupCacheMisses)
		}
	})
}
