package extract

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// seedClaims is the JWT payload of the product documentation's example.
const seedClaims = `{
  "token_type": "access",
  "exp": 1741774186,
  "iat": 1741773706,
  "jti": "jti_value",
  "user_id": 932,
  "details": {
    "username": "john-doe@company-001.com",
    "rnd": "some_data",
    "contact": {
      "contactId": 438,
      "contactUUID": "contact_UUID_value",
      "firstName": "John",
      "lastName": "Doe",
      "portalSecurityLevel": 3,
      "companyId": 255,
      "companyName": "Company 001",
      "companyUUID": "company_UUID_value"
    }
  }
}`

func hdrs(kv ...string) []traffic.Header {
	hs := make([]traffic.Header, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, traffic.Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}

func reqBody(ct, body string) traffic.Exchange {
	x := traffic.Exchange{Method: "POST", Path: "/api", RequestBody: []byte(body)}
	if ct != "" {
		x.RequestHeaders = hdrs("content-type", ct)
	}
	return x
}

func respBody(ct, body string) traffic.Exchange {
	x := traffic.Exchange{Method: "POST", Path: "/login", ResponseSeen: true, Status: 200, ResponseBody: []byte(body)}
	if ct != "" {
		x.ResponseHeaders = hdrs("content-type", ct)
	}
	return x
}

func TestExtract(t *testing.T) {
	t.Parallel()
	seedJWT := testutil.JWT(seedClaims)
	deep := strings.Repeat("[", 64<<10)
	tests := []struct {
		name  string
		param config.Parameter
		x     traffic.Exchange
		want  string // "" = does not work
	}{
		// Seed examples.
		{"seed username from JWT header", config.Parameter{In: "request.header", Key: "Authorization", Decode: "jwt", Path: "$.details.username"},
			traffic.Exchange{RequestHeaders: hdrs("authorization", "Bearer "+seedJWT)}, "john-doe@company-001.com"},
		{"seed user_id is a plain integer", config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.user_id"},
			traffic.Exchange{RequestHeaders: hdrs("authorization", "Bearer "+seedJWT)}, "932"},
		{"seed contact object is canonical JSON", config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.details.contact"},
			traffic.Exchange{RequestHeaders: hdrs("authorization", "Bearer "+seedJWT)},
			`{"companyId":255,"companyName":"Company 001","companyUUID":"company_UUID_value","contactId":438,"contactUUID":"contact_UUID_value","firstName":"John","lastName":"Doe","portalSecurityLevel":3}`},
		{"seed email from JSON request body", config.Parameter{In: "request.body", Path: "$.email"},
			reqBody("application/json", `{"email":"john@example.com","password":"x"}`), "john@example.com"},
		{"seed product_id from JSON response body", config.Parameter{In: "response.body", Path: "$.product_id"},
			respBody("application/json; charset=utf-8", `{"product_id": 1234, "name": "pen"}`), "1234"},
		{"seed login token in response body", config.Parameter{In: "response.body", Path: "$.token"},
			respBody("application/json", `{"token": "aaa"}`), "aaa"},
		{"seed token in query", config.Parameter{In: "request.query", Key: "token"},
			traffic.Exchange{Path: "/items?token=aaa"}, "aaa"},
		{"seed token in request body next to other keys", config.Parameter{In: "request.body", Path: "$.token"},
			reqBody("application/json", `{"in":"ccc","token":"aaa"}`), "aaa"},
		{"seed request without token does not work", config.Parameter{In: "request.body", Path: "$.token"},
			reqBody("application/json", `{"in":"bbb"}`), ""},

		// Headers.
		{"header name is case-insensitive in config", config.Parameter{In: "request.header", Key: "X-Session-ID"},
			traffic.Exchange{RequestHeaders: hdrs("x-session-id", "s1")}, "s1"},
		{"header name case-insensitive in traffic", config.Parameter{In: "request.header", Key: "x-session-id"},
			traffic.Exchange{RequestHeaders: hdrs("X-Session-Id", "s1")}, "s1"},
		{"header first non-empty value", config.Parameter{In: "request.header", Key: "x-a"},
			traffic.Exchange{RequestHeaders: hdrs("x-a", "", "x-b", "no", "x-a", "second", "x-a", "third")}, "second"},
		{"header absent", config.Parameter{In: "request.header", Key: "x-a"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", "v")}, ""},
		{"response header", config.Parameter{In: "response.header", Key: "x-token"},
			traffic.Exchange{RequestHeaders: hdrs("x-token", "req"), ResponseHeaders: hdrs("x-token", "resp")}, "resp"},
		{"header with binary bytes is returned as sent", config.Parameter{In: "request.header", Key: "x-a"},
			traffic.Exchange{RequestHeaders: hdrs("x-a", "\x00\xff\xfe")}, "\x00\xff\xfe"},

		// Cookies.
		{"cookie simple", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "a=1; sid=abc; b=2")}, "abc"},
		{"cookie in second cookie header", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "a=1", "cookie", "sid=abc")}, "abc"},
		{"cookie quoted value unquoted", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", `sid="abc def"`)}, "abc def"},
		{"cookie malformed pairs skipped", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", ";;=x; junk; =; \t sid = abc ;garbage")}, "abc"},
		{"cookie value containing equals", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "sid=a=b==")}, "a=b=="},
		{"cookie empty value skipped for later one", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "sid=; sid=second")}, "second"},
		{"cookie names are case-sensitive", config.Parameter{In: "request.cookie", Key: "SID"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "sid=abc")}, ""},
		{"cookie lone quote kept", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", `sid="`)}, `"`},
		{"cookie only from request", config.Parameter{In: "request.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("cookie", "sid=abc")}, ""},
		{"cookie decoded as JWT", config.Parameter{In: "request.cookie", Key: "jwt", Decode: "jwt", Path: "$.user_id"},
			traffic.Exchange{RequestHeaders: hdrs("cookie", "jwt="+seedJWT)}, "932"},

		// Set-cookie.
		{"set-cookie value", config.Parameter{In: "response.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("set-cookie", "sid=new; Path=/; HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT")}, "new"},
		{"set-cookie several headers", config.Parameter{In: "response.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("set-cookie", "a=1", "set-cookie", "sid=x", "set-cookie", "b=2")}, "x"},
		{"set-cookie last non-empty wins", config.Parameter{In: "response.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("set-cookie", "sid=old", "set-cookie", "sid=new", "set-cookie", "sid=; Max-Age=0")}, "new"},
		{"set-cookie malformed", config.Parameter{In: "response.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("set-cookie", "sid", "set-cookie", "=sid")}, ""},
		{"set-cookie quoted", config.Parameter{In: "response.cookie", Key: "sid"},
			traffic.Exchange{ResponseHeaders: hdrs("set-cookie", `sid="q"; Secure`)}, "q"},

		// Query.
		{"query decoded", config.Parameter{In: "request.query", Key: "q"},
			traffic.Exchange{Path: "/s?q=a%20b+c&x=1"}, "a b c"},
		{"query escaped name", config.Parameter{In: "request.query", Key: "to ken"},
			traffic.Exchange{Path: "/s?to%20ken=v"}, "v"},
		{"query first non-empty occurrence", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s?t=&t&t=2&t=3"}, "2"},
		{"query bad escape falls back to raw", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s?t=100%zz"}, "100%zz"},
		{"query truncated escape falls back to raw", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s?t=ab%4"}, "ab%4"},
		{"query name with bad escape compared as sent", config.Parameter{In: "request.query", Key: "t%z"},
			traffic.Exchange{Path: "/s?t%z=v"}, "v"},
		{"query fragment ignored", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s?t=v#frag"}, "v"},
		{"query absent", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s"}, ""},
		{"query empty pairs", config.Parameter{In: "request.query", Key: "t"},
			traffic.Exchange{Path: "/s?&&=&t=v&"}, "v"},
		{"query base64 JSON", config.Parameter{In: "request.query", Key: "s", Decode: "base64", Path: "$.id"},
			traffic.Exchange{Path: "/s?s=" + base64.URLEncoding.EncodeToString([]byte(`{"id":"u1"}`))}, "u1"},

		// Path.
		{"path capture", config.Parameter{In: "request.path", Path: "/api/sessions/{sid}/**"},
			traffic.Exchange{Path: "/api/sessions/abc/items?x=1"}, "abc"},
		{"path capture unescaped", config.Parameter{In: "request.path", Path: "/u/{id}"},
			traffic.Exchange{Path: "/u/a%2Fb+c"}, "a/b+c"},
		{"path capture bad escape raw", config.Parameter{In: "request.path", Path: "/u/{id}"},
			traffic.Exchange{Path: "/u/a%zz"}, "a%zz"},
		{"path no match", config.Parameter{In: "request.path", Path: "/u/{id}"},
			traffic.Exchange{Path: "/v/a"}, ""},

		// Bodies.
		{"form body field", config.Parameter{In: "request.body", Key: "user"},
			reqBody("application/x-www-form-urlencoded; charset=UTF-8", "a=1&user=j%40x.com&user=2"), "j@x.com"},
		{"form body plus and bad escape", config.Parameter{In: "request.body", Key: "u"},
			reqBody("application/x-www-form-urlencoded", "u=%G1+x"), "%G1+x"},
		{"form body key on JSON body does not work", config.Parameter{In: "request.body", Key: "user"},
			reqBody("application/json", `{"user":"x"}`), ""},
		{"form body field decoded", config.Parameter{In: "request.body", Key: "t", Decode: "jwt", Path: "$.details.username"},
			reqBody("application/x-www-form-urlencoded", "t="+seedJWT), "john-doe@company-001.com"},
		{"key and path: JSON body uses the path", config.Parameter{In: "request.body", Key: "token", Path: "$.token"},
			reqBody("application/json", `{"token":"j"}`), "j"},
		{"key and path: form body uses the key", config.Parameter{In: "request.body", Key: "token", Path: "$.token"},
			reqBody("application/x-www-form-urlencoded", `token=f`), "f"},
		{"multipart field", config.Parameter{In: "request.body", Key: "email"},
			reqBody("multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nnotme\r\n--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nm@x.com\r\n--XyZ--\r\n"), "m@x.com"},
		{"multipart file part skipped", config.Parameter{In: "request.body", Key: "file"},
			reqBody("multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nnotme\r\n--XyZ--\r\n"), ""},
		{"multipart without boundary", config.Parameter{In: "request.body", Key: "email"},
			reqBody("multipart/form-data", "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nm@x.com\r\n--XyZ--\r\n"), ""},
		{"multipart truncated keeps earlier fields", config.Parameter{In: "request.body", Key: "a"},
			reqBody("multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B\r\nContent-Disposition: form-da"), "1"},
		{"JSON vendor type", config.Parameter{In: "response.body", Path: "$.id"},
			respBody("application/vnd.api+json", `{"id":"v"}`), "v"},
		{"JSON sniffed without content type", config.Parameter{In: "request.body", Path: "$[0].id"},
			reqBody("", " \n[{\"id\":7}]"), "7"},
		{"JSON not sniffed for plain text", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("text/plain", `{"id":"v"}`), ""},
		{"JSON wrong content type html", config.Parameter{In: "response.body", Path: "$.id"},
			respBody("text/html", `{"id":"v"}`), ""},
		{"JSON invalid", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", `{"id":"v",`), ""},
		{"JSON binary body", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", "\x00\x01\xff{"), ""},
		{"JSON truncated body is not parsed", config.Parameter{In: "request.body", Path: "$.id"},
			func() traffic.Exchange {
				x := reqBody("application/json", `{"id":"v"}`)
				x.RequestBodyTruncated = true
				return x
			}(), ""},
		{"JSON deep nesting does not work", config.Parameter{In: "request.body", Path: "$[0][0]"},
			reqBody("application/json", deep), ""},
		{"JSON null does not work", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", `{"id":null}`), ""},
		{"JSON empty string does not work", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", `{"id":""}`), ""},
		{"JSON empty object does not work", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", `{"id":{}}`), ""},
		{"JSON empty array does not work", config.Parameter{In: "request.body", Path: "$.id"},
			reqBody("application/json", `{"id":[]}`), ""},
		{"JSON bool", config.Parameter{In: "request.body", Path: "$.ok"},
			reqBody("application/json", `{"ok":false}`), "false"},
		{"JSON float without exponent noise", config.Parameter{In: "request.body", Path: "$.n"},
			reqBody("application/json", `{"n":9.32e2}`), "932"},
		{"JSON fraction", config.Parameter{In: "request.body", Path: "$.n"},
			reqBody("application/json", `{"n":0.25}`), "0.25"},
		{"JSON big integer kept as written", config.Parameter{In: "request.body", Path: "$.n"},
			reqBody("application/json", `{"n":123456789012345678901234567890}`), "123456789012345678901234567890"},
		{"JSON negative index", config.Parameter{In: "request.body", Path: "$.a[-1]"},
			reqBody("application/json", `{"a":[1,2,3]}`), "3"},
		{"JSON index out of range", config.Parameter{In: "request.body", Path: "$.a[5]"},
			reqBody("application/json", `{"a":[1,2,3]}`), ""},
		{"JSON bracket child", config.Parameter{In: "request.body", Path: "$['a b']"},
			reqBody("application/json", `{"a b":"x"}`), "x"},
		{"JSON wildcard first that works", config.Parameter{In: "request.body", Path: "$.items[*].id"},
			reqBody("application/json", `{"items":[{"id":null},{"id":""},{"id":"b"},{"x":1}]}`), "b"},
		{"JSON wildcard over object is deterministic", config.Parameter{In: "request.body", Path: "$.m.*"},
			reqBody("application/json", `{"m":{"z":"zz","a":"aa","k":"kk"}}`), "aa"},
		{"JSON descent", config.Parameter{In: "request.body", Path: "$..token"},
			reqBody("application/json", `{"a":{"b":{"token":"deep"}}}`), "deep"},
		{"JSON filter", config.Parameter{In: "request.body", Path: "$.u[?(@.role == 'admin')].name"},
			reqBody("application/json", `{"u":[{"role":"user","name":"a"},{"role":"admin","name":"b"}]}`), "b"},
		{"JSON whole document", config.Parameter{In: "request.body", Path: "$"},
			reqBody("application/json", `{"b":[1,"x"],"a":"\u00e9\n"}`), `{"a":"é\n","b":[1,"x"]}`},
		{"response body not seen", config.Parameter{In: "response.body", Path: "$.token"},
			traffic.Exchange{Path: "/login"}, ""},

		// Decodings.
		{"JWT bearer case-insensitive with spaces", config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.jti"},
			traffic.Exchange{RequestHeaders: hdrs("authorization", "  bEaReR    "+seedJWT+"  ")}, "jti_value"},
		{"JWT without bearer", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.jti"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", seedJWT)}, "jti_value"},
		{"JWT padded payload", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.sub"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWTEncoded(`{"sub":"u?>"}`, base64.URLEncoding))}, "u?>"},
		{"JWT standard alphabet payload", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.sub"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWTEncoded(`{"sub":"u?>"}`, base64.StdEncoding))}, "u?>"},
		{"JWT two segments", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.sub"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", "e30."+base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"s"}`)))}, "s"},
		{"JWT one segment", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.sub"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"s"}`)))}, ""},
		{"JWT payload not an object", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWT(`["a"]`))}, ""},
		{"JWT payload invalid base64", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", "a.b!c.d")}, ""},
		{"JWT payload invalid JSON", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWT(`{"a":`))}, ""},
		{"JWT too long", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt", Path: "$.sub"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWT(`{"sub":"s","pad":"`+strings.Repeat("x", MaxTokenBytes)+`"}`))}, ""},
		{"JWT bearer only", config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt"},
			traffic.Exchange{RequestHeaders: hdrs("authorization", "Bearer ")}, ""},
		{"JWT whole claims", config.Parameter{In: "request.header", Key: "x-jwt", Decode: "jwt"},
			traffic.Exchange{RequestHeaders: hdrs("x-jwt", testutil.JWT(`{"b":1,"a":true}`))}, `{"a":true,"b":1}`},
		{"json decode", config.Parameter{In: "request.header", Key: "x-ctx", Decode: "json", Path: "$.tenant"},
			traffic.Exchange{RequestHeaders: hdrs("x-ctx", `{"tenant":"t1"}`)}, "t1"},
		{"json decode invalid", config.Parameter{In: "request.header", Key: "x-ctx", Decode: "json", Path: "$.tenant"},
			traffic.Exchange{RequestHeaders: hdrs("x-ctx", `{"tenant":`)}, ""},
		{"json decode string", config.Parameter{In: "request.header", Key: "x-ctx", Decode: "json"},
			traffic.Exchange{RequestHeaders: hdrs("x-ctx", `"quoted"`)}, "quoted"},
		{"base64 text", config.Parameter{In: "request.header", Key: "x-b", Decode: "base64"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", base64.StdEncoding.EncodeToString([]byte("user:pw")))}, "user:pw"},
		{"base64 url unpadded JSON", config.Parameter{In: "request.header", Key: "x-b", Decode: "base64", Path: "$.u"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", base64.RawURLEncoding.EncodeToString([]byte(`{"u":"??>>"}`)))}, "??>>"},
		{"base64 invalid", config.Parameter{In: "request.header", Key: "x-b", Decode: "base64"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", "!!!not base64")}, ""},
		{"base64 one byte dangling", config.Parameter{In: "request.header", Key: "x-b", Decode: "base64"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", "abcde")}, ""},
		{"base64 path on plain text", config.Parameter{In: "request.header", Key: "x-b", Decode: "base64", Path: "$.u"},
			traffic.Exchange{RequestHeaders: hdrs("x-b", base64.StdEncoding.EncodeToString([]byte("plain")))}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.param.Name = "p"
			e, err := Compile(tc.param)
			if err != nil {
				t.Fatalf("Compile(%+v) failed: %v", tc.param, err)
			}
			v := NewView(&tc.x, nil, 2<<20)
			defer v.Release()
			got, ok := e.Extract(v)
			if tc.want == "" {
				if ok {
					t.Fatalf("the parameter should not work, but it gave %q", got)
				}
				return
			}
			if !ok || got != tc.want {
				t.Fatalf("Extract = %q, %v; want %q", got, ok, tc.want)
			}
			// A second read through the same View uses what the first parsed.
			if again, ok := e.Extract(v); !ok || again != got {
				t.Fatalf("second Extract = %q, %v; want %q", again, ok, got)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		param config.Parameter
	}{
		{"unknown source", config.Parameter{In: "request.bodyy", Key: "a"}},
		{"unknown decode", config.Parameter{In: "request.header", Key: "a", Decode: "rot13"}},
		{"header without key", config.Parameter{In: "request.header"}},
		{"cookie without key", config.Parameter{In: "request.cookie", Decode: "jwt"}},
		{"path without decode", config.Parameter{In: "request.query", Key: "a", Path: "$.x"}},
		{"body without key or path", config.Parameter{In: "response.body"}},
		{"body decode without key", config.Parameter{In: "request.body", Path: "$.t", Decode: "jwt"}},
		{"bad JSONPath", config.Parameter{In: "request.body", Path: "$.a["}},
		{"request.path without pattern", config.Parameter{In: "request.path"}},
		{"request.path with key", config.Parameter{In: "request.path", Key: "a", Path: "/{a}"}},
		{"request.path without capture", config.Parameter{In: "request.path", Path: "/a/*"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.param.Name = "p"
			e, err := Compile(tc.param)
			if err == nil {
				t.Fatalf("Compile(%+v) = %v, want an error", tc.param, e)
			}
			if !errors.Is(err, ErrInvalidParameter) {
				t.Fatalf("Compile error %v does not wrap ErrInvalidParameter", err)
			}
		})
	}
}

func TestExtractorAccessors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		param     config.Parameter
		side      Side
		needsBody bool
	}{
		{"request header", config.Parameter{Name: "a", In: "request.header", Key: "x"}, Request, false},
		{"response cookie", config.Parameter{Name: "b", In: "response.cookie", Key: "x"}, Response, false},
		{"request body", config.Parameter{Name: "c", In: "request.body", Key: "x"}, Request, true},
		{"response body", config.Parameter{Name: "d", In: "response.body", Path: "$.x"}, Response, true},
		{"request path", config.Parameter{Name: "e", In: "request.path", Path: "/{x}"}, Request, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := Compile(tc.param)
			if err != nil {
				t.Fatal(err)
			}
			if e.Name() != tc.param.Name || e.Side() != tc.side || e.NeedsBody() != tc.needsBody {
				t.Fatalf("got name %q side %v needsBody %v; want %q %v %v", e.Name(), e.Side(), e.NeedsBody(), tc.param.Name, tc.side, tc.needsBody)
			}
		})
	}
}

func TestScalar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want string // "" = does not work
	}{
		{"string", "x", "x"},
		{"empty string", "", ""},
		{"nil", nil, ""},
		{"true", true, "true"},
		{"false", false, "false"},
		{"int64", int64(-932), "-932"},
		{"integral float", 932.0, "932"},
		{"large integral float", 1e20, "100000000000000000000"},
		{"huge float", 1e21, "1e+21"},
		{"tiny float", 1e-7, "1e-7"},
		{"fraction", 0.1, "0.1"},
		{"negative zero", -0.0, "0"},
		{"empty map", map[string]any{}, ""},
		{"empty slice", []any{}, ""},
		{"nested sorted", map[string]any{"b": []any{int64(1), nil, map[string]any{}}, "a": "q\"\\<\x01"},
			`{"a":"q\"\\<\u0001","b":[1,null,{}]}`},
		{"invalid utf8 replaced", []any{"\xff"}, `["\ufffd"]`},
		{"unsupported type", struct{}{}, ""},
		{"unsupported nested", []any{struct{}{}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Scalar(tc.in)
			if tc.want == "" {
				if ok {
					t.Fatalf("Scalar(%#v) = %q, want it not to work", tc.in, got)
				}
				return
			}
			if !ok || got != tc.want {
				t.Fatalf("Scalar(%#v) = %q, %v; want %q", tc.in, got, ok, tc.want)
			}
		})
	}
}

func TestScalarDepthLimit(t *testing.T) {
	t.Parallel()
	var v any = "leaf"
	for range maxRenderDepth + 10 {
		v = []any{v}
	}
	if got, ok := Scalar(v); ok {
		t.Fatalf("a value nested %d deep rendered (%d bytes); it should not work", maxRenderDepth+10, len(got))
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	big := `{"pad":"` + strings.Repeat("a", 1<<20) + `","token":"t"}`
	deepObj := `{"token":"t","x":` + strings.Repeat("[", 64<<10) + strings.Repeat("]", 64<<10) + `}`
	tests := []struct {
		name    string
		body    string
		maxBody int
		path    string
		want    string
	}{
		{"1 MB body within cap", big, 2 << 20, "$.token", "t"},
		{"1 MB body over cap", big, 64 << 10, "$.token", ""},
		{"1 MB body descent", big, 2 << 20, "$..token", "t"},
		{"no cap", big, 0, "$.token", "t"},
		{"64 KiB deep valid nesting", deepObj, 1 << 20, "$.token", "t"},
		{"64 KiB deep descent", deepObj, 1 << 20, "$..token", "t"},
		{"64 KiB deep value does not render", deepObj, 1 << 20, "$.x", ""},
		{"64 KiB unclosed nesting", strings.Repeat("[", 64<<10), 1 << 20, "$..x", ""},
		{"64 KiB deep objects", strings.Repeat(`{"a":`, 64<<10), 1 << 20, "$.a.a", ""},
		{"descent wildcard over deep arrays finds the leaf", strings.Repeat("[", 64<<10) + `"x"` + strings.Repeat("]", 64<<10), 1 << 20, "$..*", "x"},
		{"descent wildcard over a big string nested deep", strings.Repeat("[", 500) + `"` + strings.Repeat("s", 1<<20) + `"` + strings.Repeat("]", 500), 2 << 20, "$..*", strings.Repeat("s", 1<<20)},
		{"descent wildcard renders containers when no scalar works", `{"a":{"b":[null]},"c":[{}]}`, 0, "$.*", "[{}]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := Compile(config.Parameter{Name: "p", In: "request.body", Path: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			x := reqBody("application/json", tc.body)
			v := NewView(&x, nil, tc.maxBody)
			defer v.Release()
			got, ok := e.Extract(v)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("Extract = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// TestDescentOverDeepContainers checks that "$..*" over 64 KiB of nested empty arrays, where
// every result is a container, ends within the rendering budget with a renderable value.
func TestDescentOverDeepContainers(t *testing.T) {
	t.Parallel()
	e, err := Compile(config.Parameter{Name: "p", In: "request.body", Path: "$..*"})
	if err != nil {
		t.Fatal(err)
	}
	x := reqBody("application/json", strings.Repeat("[", 64<<10)+strings.Repeat("]", 64<<10))
	v := NewView(&x, nil, 0)
	defer v.Release()
	got, ok := e.Extract(v)
	if ok && (len(got) > 2*(maxRenderDepth+1) || !strings.HasPrefix(got, "[[")) {
		t.Fatalf("Extract gave %d bytes starting %q; want at most %d nested arrays", len(got), got[:min(len(got), 8)], maxRenderDepth+1)
	}
}

// TestBodyParsedOnce checks that the second extractor of a side reuses the first's parse.
func TestBodyParsedOnce(t *testing.T) {
	t.Parallel()
	x := reqBody("application/json", `{"a":"1","b":"2"}`)
	v := NewView(&x, nil, 0)
	defer v.Release()
	d1, ok1 := v.JSONBody(Request)
	m1, _ := d1.(map[string]any)
	d2, ok2 := v.JSONBody(Request)
	m2, _ := d2.(map[string]any)
	if !ok1 || !ok2 || m1 == nil || fmt.Sprintf("%p", m1) != fmt.Sprintf("%p", m2) {
		t.Fatalf("JSONBody parsed twice or failed: %v %v", ok1, ok2)
	}
	if v.parsedBytes != len(x.RequestBody) {
		t.Fatalf("parsed %d bytes, want one parse of %d", v.parsedBytes, len(x.RequestBody))
	}
	if _, ok := v.JSONBody(Response); ok {
		t.Fatal("an absent response body should not parse")
	}
}

func TestClaimsCache(t *testing.T) {
	t.Parallel()
	c, err := NewCache(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok := testutil.JWT(seedClaims)
	x := traffic.Exchange{RequestHeaders: hdrs("authorization", "Bearer "+tok)}

	v := NewView(&x, c, 0)
	if _, ok := v.UnverifiedClaims("Bearer " + tok); !ok {
		t.Fatal("the seed token should decode")
	}
	v.Release()
	c.Wait()
	if _, ok := c.get(tok); !ok {
		t.Fatal("decoded claims should be cached after Wait")
	}

	// A slot holding another token's claims (a key-hash collision) must not be returned.
	other := map[string]any{"user_id": int64(1)}
	c.store.Set(maphash.String(c.keySeed, tok), claimsEntry{check: maphash.String(c.checkSeed, tok) + 1, claims: other}, 1)
	c.Wait()
	v = NewView(&x, c, 0)
	defer v.Release()
	claims, ok := v.UnverifiedClaims(tok)
	if !ok {
		t.Fatal("the token should still decode when its slot holds other claims")
	}
	if got, _ := Scalar(claims.(map[string]any)["user_id"]); got != "932" {
		t.Fatalf("a colliding entry was returned: user_id %q, want 932", got)
	}
}

func TestNewCacheRejectsNonPositive(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, -1} {
		if c, err := NewCache(n); err == nil {
			c.Close()
			t.Fatalf("NewCache(%d) succeeded, want an error", n)
		}
	}
}

// TestConcurrentViews runs many exchanges through shared extractors and a shared cache, for
// the race detector.
func TestConcurrentViews(t *testing.T) {
	t.Parallel()
	c, err := NewCache(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	params := []config.Parameter{
		{Name: "user", In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.details.username"},
		{Name: "sid", In: "request.cookie", Key: "sid"},
		{Name: "q", In: "request.query", Key: "token"},
		{Name: "email", In: "request.body", Path: "$.email"},
		{Name: "tok", In: "response.body", Path: "$.token"},
	}
	var exs []*Extractor
	for _, p := range params {
		e, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		exs = append(exs, e)
	}
	tok := testutil.JWT(seedClaims)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprint(g*1000 + i)
				x := traffic.Exchange{
					Path:           "/a?token=" + id,
					RequestHeaders: hdrs("authorization", "Bearer "+tok, "cookie", "sid="+id, "content-type", "application/json"),
					RequestBody:    []byte(`{"email":"` + id + `@x"}`),
					ResponseSeen:   true, ResponseBody: []byte(`{"token":"` + id + `"}`),
				}
				v := NewView(&x, c, 0)
				want := []string{"john-doe@company-001.com", id, id, id + "@x", id}
				for k, e := range exs {
					if got, ok := e.Extract(v); !ok || got != want[k] {
						errs <- fmt.Sprintf("%s = %q, %v; want %q", e.Name(), got, ok, want[k])
						v.Release()
						return
					}
				}
				v.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestReleasedValuesStayValid checks that values handed out survive the View's reuse and the
// caller's reuse of the body buffer.
func TestReleasedValuesStayValid(t *testing.T) {
	t.Parallel()
	body := []byte("user=alice&x=1")
	x := traffic.Exchange{RequestHeaders: hdrs("content-type", "application/x-www-form-urlencoded"), RequestBody: body}
	e, err := Compile(config.Parameter{Name: "u", In: "request.body", Key: "user"})
	if err != nil {
		t.Fatal(err)
	}
	v := NewView(&x, nil, 0)
	got, ok := e.Extract(v)
	v.Release()
	copy(body, "user=bobby&x=2")
	if !ok || got != "alice" {
		t.Fatalf("value changed after the body buffer was reused: %q", got)
	}
}

// TestPooledViewForgetsPreviousExchange checks that a View taken from the pool carries
// nothing of the exchange it read before.
func TestPooledViewForgetsPreviousExchange(t *testing.T) {
	t.Parallel()
	exs := mustCompileAll(t,
		config.Parameter{In: "request.cookie", Key: "sid"},
		config.Parameter{In: "response.cookie", Key: "sid"},
		config.Parameter{In: "request.query", Key: "t"},
		config.Parameter{In: "request.body", Path: "$.t"},
		config.Parameter{In: "response.body", Key: "t"},
		config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.sub"},
	)
	tok := testutil.JWT(`{"sub":"u"}`)
	full := traffic.Exchange{
		Path:            "/a?t=1",
		RequestHeaders:  hdrs("cookie", "sid=1", "content-type", "application/json", "authorization", tok),
		RequestBody:     []byte(`{"t":"1"}`),
		ResponseSeen:    true,
		ResponseHeaders: hdrs("set-cookie", "sid=1", "content-type", "multipart/form-data; boundary=B"),
		ResponseBody:    []byte("--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n1\r\n--B--\r\n"),
	}
	for range 50 {
		v := NewView(&full, nil, 0)
		for _, e := range exs {
			if _, ok := e.Extract(v); !ok {
				t.Fatalf("%s should work on the full exchange", e.Name())
			}
		}
		v.Release()
		empty := traffic.Exchange{Path: "/a"}
		w := NewView(&empty, nil, 0)
		for _, e := range exs {
			if got, ok := e.Extract(w); ok {
				t.Fatalf("%s gave %q on an empty exchange: state leaked through the pool", e.Name(), got)
			}
		}
		w.Release()
	}
}

func TestReadableContentType(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ct   string
		want bool
	}{
		{"absent: may be sniffed as JSON", "", true},
		{"empty", " ", true},
		{"JSON with charset", "Application/JSON; charset=utf-8", true},
		{"a +json type", "application/problem+json", true},
		{"urlencoded form", "application/x-www-form-urlencoded", true},
		{"multipart form", "multipart/form-data; boundary=x", true},
		{"plain text", "text/plain", false},
		{"binary", "application/octet-stream", false},
		{"just +json", "+json", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ReadableContentType(tc.ct); got != tc.want {
				t.Errorf("ReadableContentType(%q) = %v; want %v", tc.ct, got, tc.want)
			}
			// The answer is the rule a View reads bodies by.
			if read := classify([]byte(`{"a":1}`), tc.ct) != bodyNone; read != tc.want {
				t.Errorf("a View reads a JSON-looking body of type %q: %v; ReadableContentType says %v", tc.ct, read, tc.want)
			}
		})
	}
}
