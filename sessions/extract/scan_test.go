package extract

import (
	"fmt"
	"testing"

	"github.com/ohler55/ojg/oj"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// treeAnswer is what the full parse gives for path on body: the reference the scanner must match.
func treeAnswer(t testing.TB, sel *selector, body []byte) (string, bool) {
	t.Helper()
	doc, err := new(oj.Parser).Parse(body)
	if err != nil {
		return "", false
	}
	return sel.pick(doc)
}

// scanAnswer reads path through the tape of a fresh View.
func scanAnswer(sel *selector, body []byte) (val string, ok, sure bool) {
	x := traffic.Exchange{RequestHeaders: hdrs("content-type", "application/json"), RequestBody: body}
	v := NewView(&x, nil, 0)
	defer v.Release()
	return v.scanJSON(Request, sel.steps)
}

func mustSelector(t testing.TB, path string) *selector {
	t.Helper()
	sel, err := compileSelector(path)
	if err != nil {
		t.Fatalf("compile %q: %v", path, err)
	}
	if !sel.simple {
		t.Fatalf("%q is not a simple path", path)
	}
	return sel
}

func TestScanMatchesParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		path string
		want string // "" = does not work
		sure bool   // the scanner answers without the parser
	}{
		{"top-level string", `{"token":"abc"}`, "$.token", "abc", true},
		{"nested string", `{"a":{"b":{"c":"deep"}}}`, "$.a.b.c", "deep", true},
		{"bracket child", `{"a b":{"c":"x"}}`, "$['a b'].c", "x", true},
		{"array index", `{"items":[{"id":1},{"id":2}]}`, "$.items[1].id", "2", true},
		{"negative index", `{"items":[10,20,30]}`, "$.items[-1]", "30", true},
		{"index past the end", `{"items":[10]}`, "$.items[3]", "", true},
		{"negative index past the start", `{"items":[10]}`, "$.items[-2]", "", true},
		{"root array", `[{"id":"a"},{"id":"b"}]`, "$[0].id", "a", true},
		{"missing key", `{"a":1}`, "$.b", "", true},
		{"child of a scalar", `{"a":1}`, "$.a.b", "", true},
		{"index into an object", `{"a":{"0":1}}`, "$.a[0]", "", true},
		{"child of an array", `{"a":[1]}`, "$.a.b", "", true},
		{"last duplicate wins", `{"t":"first","t":"second"}`, "$.t", "second", true},
		{"duplicate after a subtree", `{"t":"first","x":{"t":"inner"},"t":"last"}`, "$.t", "last", true},
		{"empty string does not work", `{"t":""}`, "$.t", "", true},
		{"null does not work", `{"t":null}`, "$.t", "", true},
		{"true", `{"t":true}`, "$.t", "true", true},
		{"false", `{"t":false}`, "$.t", "false", true},
		{"integer", `{"t":932}`, "$.t", "932", true},
		{"negative zero", `{"t":-0}`, "$.t", "0", true},
		{"decimal", `{"t":1.50}`, "$.t", "1.5", true},
		{"exponent", `{"t":1e2}`, "$.t", "100", true},
		{"zero exponent", `{"t":7e0}`, "$.t", "7", true},
		{"small float", `{"t":1.5e-7}`, "$.t", "1.5e-7", true},
		{"long integer left to the parser", `{"t":1234567890123456789}`, "$.t", "1234567890123456789", false},
		{"huge integer left to the parser", `{"t":123456789012345678901234567890}`, "$.t", "123456789012345678901234567890", false},
		{"simple escapes", `{"t":"a\"b\\c\/d\ne\tf"}`, "$.t", "a\"b\\c/d\ne\tf", true},
		{"unicode escape left to the parser", `{"t":"caf\u00e9"}`, "$.t", "café", false},
		{"escaped key", `{"t\"k":"v"}`, `$['t"k']`, "v", true},
		{"unicode-escaped key left to the parser", `{"\u0074":"v"}`, "$.t", "v", false},
		{"utf-8 value", `{"t":"café ☕"}`, "$.t", "café ☕", true},
		{"empty object does not work", `{"t":{}}`, "$.t", "", true},
		{"empty array does not work", `{"t":[]}`, "$.t", "", true},
		{"object left to the parser", `{"t":{"b":1,"a":2}}`, "$.t", `{"a":2,"b":1}`, false},
		{"array left to the parser", `{"t":[1,"x"]}`, "$.t", `[1,"x"]`, false},
		{"whitespace everywhere", " \r\n\t{ \"a\" : [ 1 , { \"b\" : \"x\" } ] } \n", "$.a[1].b", "x", true},
		{"trailing garbage", `{"t":"x"} y`, "$.t", "", false},
		{"trailing comma", `{"t":"x",}`, "$.t", "", false},
		{"leading zero", `{"t":01}`, "$.t", "", false},
		{"exponent after a zero, which ojg refuses", `{"t":0e1}`, "$.t", "", false},
		{"exponent past a float's left to the parser", `{"t":0.0E2000}`, "$.t", "0e2000", false},
		{"exponent after a zero fraction", `{"t":0.5e1}`, "$.t", "5", true},
		{"byte-order mark", "\xef\xbb\xbf{\"t\":\"x\"}", "$.t", "x", false},
		{"invalid utf-8", "{\"t\":\"x\",\"u\":\"\xff\"}", "$.t", "x", false},
		{"control character", "{\"t\":\"a\x01b\"}", "$.t", "", false},
		{"unterminated", `{"t":"x"`, "$.t", "", false},
		{"deep nesting", `{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"t":"y"}`, "$.t", "y", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sel := mustSelector(t, tc.path)
			got, ok, sure := scanAnswer(sel, []byte(tc.body))
			if sure != tc.sure {
				t.Fatalf("the scanner was sure %t of %s in %s; want %t", sure, tc.path, tc.body, tc.sure)
			}
			if sure && (got != tc.want || ok != (tc.want != "")) {
				t.Fatalf("the scanner read %q (works %t) at %s; want %q", got, ok, tc.path, tc.want)
			}
			// Whatever the route, Extract gives the parser's answer.
			if want, wantOK := treeAnswer(t, sel, []byte(tc.body)); want != tc.want || wantOK != (tc.want != "") {
				t.Fatalf("the parser reads %q (works %t) at %s; the case expects %q", want, wantOK, tc.path, tc.want)
			}
			e, err := Compile(config.Parameter{Name: "p", In: config.InRequestBody, Path: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			x := traffic.Exchange{RequestHeaders: hdrs("content-type", "application/json"), RequestBody: []byte(tc.body)}
			v := NewView(&x, nil, 0)
			defer v.Release()
			if got, ok := e.Extract(v); got != tc.want || ok != (tc.want != "") {
				t.Fatalf("Extract read %q (works %t) at %s; want %q", got, ok, tc.path, tc.want)
			}
		})
	}
}

// TestScanOnePass checks that several paths on one body share one tape and that a body
// already parsed is read from its tree.
func TestScanOnePass(t *testing.T) {
	t.Parallel()
	body := []byte(`{"token":"t1","customer":{"email":"a@b.c"},"items":[{"sku":"A"}]}`)
	x := traffic.Exchange{RequestHeaders: hdrs("content-type", "application/json"), RequestBody: body}
	v := NewView(&x, nil, 0)
	defer v.Release()
	for _, tc := range []struct{ path, want string }{{"$.token", "t1"}, {"$.customer.email", "a@b.c"}, {"$.items[0].sku", "A"}} {
		got, ok, sure := v.scanJSON(Request, mustSelector(t, tc.path).steps)
		if !sure || !ok || got != tc.want {
			t.Fatalf("%s read %q (works %t, sure %t); want %q", tc.path, got, ok, sure, tc.want)
		}
	}
	if n := len(v.tapes[Request]); n != 12 {
		t.Fatalf("the tape holds %d entries after three lookups; want the 12 of one scan", n)
	}
	if _, ok := v.JSONBody(Request); !ok {
		t.Fatal("the body does not parse")
	}
	if _, _, sure := v.scanJSON(Request, mustSelector(t, "$.token").steps); sure {
		t.Fatal("the scanner answered for a body whose tree exists")
	}
}

func FuzzScanMatchesParse(f *testing.F) {
	for _, s := range []struct{ body, path string }{
		{`{"token":"aaa"}`, "$.token"},
		{`{"a":{"b":[1,2.5,"x",true,null]}}`, "$.a.b[2]"},
		{`[{"id":1},{"id":2.5e3}]`, "$[-1].id"},
		{`{"t":"a\"\\\/\b\f\n\r\t","t":"again"}`, "$.t"},
		{`{"t":-0.0e-0}`, "$.t"},
		{`{"t":1E400}`, "$.t"},
		{`{"t":"\ud800"}`, "$.t"},
		{"\xef\xbb\xbf{}", "$.t"},
		{`{"a":[[[["x"]]]],"t":9007199254740993}`, "$.t"},
		{`{"t":0.1000000000000000055511151231257827}`, "$.t"},
	} {
		f.Add([]byte(s.body), s.path)
	}
	fixed := []*selector{mustSelector(f, "$.t"), mustSelector(f, "$.token"), mustSelector(f, "$[0]"),
		mustSelector(f, "$.a.b[1]"), mustSelector(f, "$"), mustSelector(f, "$[-1].id")}
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		sels := fixed
		if sel, err := compileSelector(path); err == nil && sel.simple {
			sels = append(sels[:len(sels):len(sels)], sel)
		}
		for _, sel := range sels {
			got, ok, sure := scanAnswer(sel, body)
			if !sure {
				continue
			}
			want, wantOK := treeAnswer(t, sel, body)
			if got != want || ok != wantOK {
				t.Fatalf("at %s the scanner reads %q (works %t), the parser %q (works %t)",
					fmt.Sprint(sel.expr), got, ok, want, wantOK)
			}
		}
	})
}
