package sessions

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// fuzzAlphabet is what a fuzzed secret is made of: characters every source reads back
// unchanged (no ';' for cookies, no '%' that a cookie would keep escaped), letters with case
// and without, characters that need escaping in paths, queries and JSON.
const fuzzAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$'()*@:/+=é日ü"

// fuzzSecret turns fuzz bytes into a secret of 8 to 40 characters. The fixed start "Zq7"
// never occurs in what a record says by itself (hex hashes, dates, names), so finding the
// secret in a record always means a leak.
func fuzzSecret(raw []byte) string {
	alpha := []rune(fuzzAlphabet)
	var b strings.Builder
	b.WriteString("Zq7")
	for i, c := range raw {
		if i >= 37 {
			break
		}
		b.WriteRune(alpha[int(c)%len(alpha)])
	}
	for utf8.RuneCountInString(b.String()) < 8 {
		b.WriteByte('x')
	}
	return b.String()
}

// fuzzEncodings are the encodings a client may give a secret; sel varies what an encoding
// may vary (which letters change case).
var fuzzEncodings = []func(s string, sel byte) string{
	func(s string, _ byte) string { return s },
	func(s string, _ byte) string { return strings.ToUpper(s) },
	func(s string, _ byte) string { return strings.ToLower(s) },
	func(s string, sel byte) string { // ASCII case flipped where sel's bits say
		b := []byte(s)
		for i, c := range b {
			if sel>>(i%8)&1 == 1 {
				b[i] = foldASCII(c)
			}
		}
		return string(b)
	},
	func(s string, _ byte) string { return url.QueryEscape(s) },
	func(s string, _ byte) string { return lowerEscapes(url.PathEscape(s)) },
	func(s string, sel byte) string { // every byte escaped
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if sel&1 == 1 {
				fmt.Fprintf(&b, "%%%02x", s[i])
			} else {
				fmt.Fprintf(&b, "%%%02X", s[i])
			}
		}
		return b.String()
	},
	func(s string, _ byte) string { return url.QueryEscape(url.QueryEscape(s)) },
	func(s string, sel byte) string { // JSON \u escapes of every rune
		var b strings.Builder
		for _, r := range s {
			if r > 0xFFFF {
				r1, r2 := utf16Pair(r)
				fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			} else if sel&1 == 1 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		}
		return b.String()
	},
	func(s string, _ byte) string { return jsonEscape(s) },
	func(s string, _ byte) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	func(s string, _ byte) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) },
	func(s string, sel byte) string { // inside a longer base64 text, at any alignment
		return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("u", int(sel%3)) + ":" + s + "!"))
	},
	func(s string, _ byte) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+s)) },
}

// fuzzPlaces put an encoded secret somewhere in a request, as a client could send it
// (escaped further where the place requires it). i numbers the place's use.
var fuzzPlaces = []func(x *traffic.Exchange, enc string, i int){
	func(x *traffic.Exchange, enc string, i int) { x.Path = insertPath(x.Path, "/"+url.PathEscape(enc)) },
	func(x *traffic.Exchange, enc string, i int) {
		x.Path = appendQuery(x.Path, "e"+strconv.Itoa(i)+"="+url.QueryEscape(enc))
	},
	func(x *traffic.Exchange, enc string, i int) { setHeader(x, "user-agent", "agent "+enc) },
	func(x *traffic.Exchange, enc string, i int) { x.Host = enc + ".example.com" },
	func(x *traffic.Exchange, enc string, i int) { setHeader(x, "x-"+enc, "1") },
	func(x *traffic.Exchange, enc string, i int) { setHeader(x, "x-echo-"+strconv.Itoa(i), enc) },
	func(x *traffic.Exchange, enc string, i int) { setHeader(x, "cookie", "c"+strconv.Itoa(i)+"="+enc) },
	func(x *traffic.Exchange, enc string, i int) { x.RequestID = "r-" + enc },
	func(x *traffic.Exchange, enc string, i int) { // the body, after the field that carries the secret
		if json.Valid(x.RequestBody) || strings.HasPrefix(string(x.RequestBody), "{") {
			x.RequestBody = append(x.RequestBody[:len(x.RequestBody)-1], `,"e`+strconv.Itoa(i)+`":"`+jsonEscape(enc)+`"}`...)
		} else {
			x.RequestBody = append(x.RequestBody, "&e"+strconv.Itoa(i)+"="+url.QueryEscape(enc)...)
		}
	},
}

// FuzzNoSecretInClear sends requests that carry the value of a hashed parameter (the secret)
// where the parameter reads it and, in random encodings, in random other places of the
// request, ordinary or malicious, and searches the request record as sinks write it —
// attack headers and body included — for the secret in clear: in any case, percent-escaped
// once or more, JSON-escaped, base64-encoded at any alignment.
func FuzzNoSecretInClear(f *testing.F) {
	f.Add([]byte("hunter2-horse"), uint8(0), []byte{1, 0, 0, 0, 0})
	f.Add([]byte("Alice@Example.com"), uint8(1), []byte{1, 3, 5, 0xA5, 0, 4, 2, 0, 8})
	f.Add([]byte{200, 1, 2, 3, 77, 78, 79}, uint8(2), []byte{0, 4, 7, 0, 1, 9, 1, 6, 12, 2, 8, 6})
	f.Add([]byte("token+with space/slash"), uint8(3), []byte{1, 0, 13, 0, 5, 11, 2, 7, 10, 0})
	f.Add([]byte("formvalue"), uint8(4), []byte{1, 8, 7, 0, 8, 9, 0, 2, 2, 0})
	f.Add([]byte("pathsecret"), uint8(5), []byte{0, 3, 1, 0xFF, 0, 6, 1})
	f.Add([]byte(strings.Repeat("long", 20)), uint8(3), []byte{1, 8, 6, 1, 8, 10, 0, 8, 12, 0, 8, 4, 0})

	cfg := testConfig(f,
		config.Parameter{Name: "key_header", In: config.InRequestHeader, Key: "x-key", Hashed: true},
		config.Parameter{Name: "key_query", In: config.InRequestQuery, Key: "key", Hashed: true},
		config.Parameter{Name: "key_cookie", In: config.InRequestCookie, Key: "key", Hashed: true},
		config.Parameter{Name: "key_json", In: config.InRequestBody, Path: "$.auth.key", Hashed: true},
		config.Parameter{Name: "key_form", In: config.InRequestBody, Key: "key", Hashed: true},
		config.Parameter{Name: "key_path", In: config.InRequestPath, Path: "/k/{key}/**", Hashed: true},
	)
	cfg.Attacks = testAttacks
	cfg.Traffic.MaxBodyBytes = 512
	cfg.Sessions.MaxLiveParts = 1000
	e, _, _ := newTestEngine(f, cfg)

	f.Fuzz(func(t *testing.T, raw []byte, source uint8, plan []byte) {
		secret := fuzzSecret(raw)
		x := fuzzExchange(secret, source%6)
		mal := len(plan) > 0 && plan[0]&1 == 1
		for i := 1; i+2 < len(plan) && i < 1+3*12; i += 3 {
			enc := fuzzEncodings[int(plan[i])%len(fuzzEncodings)](secret, plan[i+2])
			body := slices.Clone(x.RequestBody)
			fuzzPlaces[int(plan[i+1])%len(fuzzPlaces)](x, enc, i)
			if source%6 == 3 || source%6 == 4 {
				// A body the cap cuts is never parsed: its parameter would read nothing, and
				// nobody could know the secret to hide its copies. Copies in the body stay
				// within the cap when the body is where the secret is read.
				if len(x.RequestBody) > cfg.Traffic.MaxBodyBytes {
					x.RequestBody = body
				}
			}
		}
		x.RequestBytes = int64(len(x.RequestBody))
		if len(x.RequestBody) > cfg.Traffic.MaxBodyBytes {
			x.RequestBody, x.RequestBodyTruncated = x.RequestBody[:cfg.Traffic.MaxBodyBytes], true
		}
		setHeader(x, ":authority", x.Host)
		setHeader(x, ":path", x.Path)
		if mal {
			malicious(x)
		}
		rec := e.observe(x)
		if len(rec.Params) == 0 {
			t.Fatalf("no parameter read the secret from source %d: the case tests nothing; body %q truncated %v", source%6, x.RequestBody, x.RequestBodyTruncated)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		for _, s := range allStrings(doc) {
			if form, ok := clearForm(s, secret); ok {
				t.Fatalf("the secret %q is in the record in clear (%s) in %q\nrecord: %s", secret, form, s, b)
			}
		}
	})
}

// fuzzExchange is a request in which the secret sits where parameter source reads it.
func fuzzExchange(secret string, source uint8) *traffic.Exchange {
	x := envoyExchange("POST", "api.example.com", "/submit")
	x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: "user-agent", Value: "agent"})
	ct := "application/json"
	x.RequestBody = []byte(`{"n":1}`)
	switch source {
	case 0:
		setHeader(x, "x-key", secret)
	case 1:
		x.Path = appendQuery(x.Path, "key="+url.QueryEscape(secret))
	case 2:
		setHeader(x, "cookie", "key="+secret)
	case 3:
		x.RequestBody = []byte(`{"auth":{"key":"` + jsonEscape(secret) + `"}}`)
	case 4:
		ct = "application/x-www-form-urlencoded"
		x.RequestBody = []byte("key=" + url.QueryEscape(secret))
	case 5:
		x.Path = "/k/" + url.PathEscape(secret) + "/submit"
	}
	setHeader(x, "content-type", ct)
	return x
}

// clearForm reports whether s holds the secret in clear: as is or in any case, after up to
// four rounds of percent- and \u-decoding, or base64-encoded at any alignment.
func clearForm(s, secret string) (string, bool) {
	want := strings.ToLower(secret)
	for round := range 5 {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(s, "+", " ")), strings.ReplaceAll(want, "+", " ")) {
			return fmt.Sprintf("after %d rounds of decoding", round), true
		}
		for _, run := range base64RunRE.FindAllString(s, -1) {
			run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
			for off := range 4 {
				if off >= len(run) {
					break
				}
				r := run[off:]
				r = r[:len(r)/4*4]
				dec, err := base64.StdEncoding.DecodeString(r)
				if err == nil && strings.Contains(strings.ToLower(string(dec)), want) {
					return fmt.Sprintf("base64 after %d rounds of decoding", round), true
				}
			}
		}
		next := unicodeEscapeRE.ReplaceAllStringFunc(s, func(m string) string {
			n, _ := strconv.ParseUint(m[2:], 16, 32)
			return string(rune(n))
		})
		if u, err := url.PathUnescape(next); err == nil {
			next = u
		} else {
			next = percentRE.ReplaceAllStringFunc(next, func(m string) string {
				n, _ := strconv.ParseUint(m[1:], 16, 8)
				return string([]byte{byte(n)})
			})
		}
		if next == s {
			break
		}
		s = next
	}
	return "", false
}

var (
	base64RunRE     = regexp.MustCompile(`[A-Za-z0-9+/_-]{8,}`)
	unicodeEscapeRE = regexp.MustCompile(`\\u[0-9a-fA-F]{4}`)
	percentRE       = regexp.MustCompile(`%[0-9a-fA-F]{2}`)
)

// allStrings lists every string and object key in a decoded JSON document.
func allStrings(doc any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			out = append(out, t)
		case map[string]any:
			for k, e := range t {
				out = append(out, k)
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(doc)
	return out
}

func setHeader(x *traffic.Exchange, name, value string) {
	for i := range x.RequestHeaders {
		if x.RequestHeaders[i].Name == name && name != "cookie" && !strings.HasPrefix(name, "x-") {
			x.RequestHeaders[i].Value = value
			return
		}
	}
	x.RequestHeaders = append(x.RequestHeaders, traffic.Header{Name: name, Value: value})
}

func appendQuery(p, pair string) string {
	if strings.Contains(p, "?") {
		return p + "&" + pair
	}
	return p + "?" + pair
}

// insertPath adds a segment before the query.
func insertPath(p, seg string) string {
	path, q, ok := strings.Cut(p, "?")
	if ok {
		return path + seg + "?" + q
	}
	return path + seg
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func lowerEscapes(s string) string {
	return percentRE.ReplaceAllStringFunc(s, strings.ToLower)
}

func foldASCII(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z':
		return c - 32
	case c >= 'A' && c <= 'Z':
		return c + 32
	}
	return c
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + r>>10, 0xDC00 + r&0x3FF
}
