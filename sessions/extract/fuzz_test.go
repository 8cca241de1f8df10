package extract

import (
	"net/url"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

func mustCompileAll(tb testing.TB, ps ...config.Parameter) []*Extractor {
	tb.Helper()
	out := make([]*Extractor, 0, len(ps))
	for _, p := range ps {
		if p.Name == "" {
			p.Name = "p"
		}
		e, err := Compile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// checkWorks fails when a working extraction returned an empty value.
func checkWorks(t *testing.T, exs []*Extractor, v *View) {
	t.Helper()
	for _, e := range exs {
		if got, ok := e.Extract(v); ok && got == "" {
			t.Fatalf("%s worked with an empty value", e.Name())
		}
	}
}

func FuzzJSONBody(f *testing.F) {
	for _, s := range []string{`{"token":"aaa"}`, `{"in":"ccc","token":"aaa"}`, `[{"id":1},{"id":2.5e3}]`,
		`{"a":{"b":[true,null,"x"]}}`, `[[[[[[`, `{"token":"\ud800"}`, "\xef\xbb\xbf{}", `{"n":1e999}`} {
		f.Add([]byte(s))
	}
	exs := mustCompileAll(f,
		config.Parameter{In: "request.body", Path: "$.token"},
		config.Parameter{In: "request.body", Path: "$..id"},
		config.Parameter{In: "request.body", Path: "$[0]"},
		config.Parameter{In: "request.body", Path: "$.*"},
		config.Parameter{In: "request.body", Path: "$"},
		config.Parameter{In: "request.body", Path: "$[?(@.id > 1)].id"},
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		x := traffic.Exchange{RequestHeaders: hdrs("content-type", "application/json"), RequestBody: body}
		v := NewView(&x, nil, 1<<20)
		defer v.Release()
		checkWorks(t, exs, v)
		// Without a content type the body is sniffed; that path must hold up too.
		y := traffic.Exchange{RequestBody: body}
		w := NewView(&y, nil, 1<<20)
		defer w.Release()
		checkWorks(t, exs, w)
	})
}

func FuzzJWT(f *testing.F) {
	f.Add("Bearer " + testutil.JWT(seedClaims))
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig")
	f.Add("a.b")
	f.Add("bearer .")
	f.Add("x.e30=.y")
	f.Add("x.W10.y")
	f.Fuzz(func(t *testing.T, token string) {
		x := traffic.Exchange{RequestHeaders: hdrs("authorization", token)}
		v := NewView(&x, nil, 0)
		defer v.Release()
		claims, ok := v.UnverifiedClaims(token)
		if ok {
			if _, isObject := claims.(map[string]any); !isObject {
				t.Fatalf("claims are a %T, want a JSON object", claims)
			}
			if len(stripBearer(token)) > MaxTokenBytes {
				t.Fatalf("a token of %d bytes decoded past the cap", len(token))
			}
		}
		exs := mustCompileAll(t,
			config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.sub"},
			config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt"},
			config.Parameter{In: "request.header", Key: "authorization", Decode: "base64"},
			config.Parameter{In: "request.header", Key: "authorization", Decode: "json", Path: "$..*"},
		)
		checkWorks(t, exs, v)
	})
}

func FuzzCookie(f *testing.F) {
	for _, s := range []string{"sid=abc", `a=1; sid="q"; b`, ";;=;sid=;sid=2", "sid=\x00\xff", "\tsid\t=\tx\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		x := traffic.Exchange{RequestHeaders: hdrs("cookie", h, "cookie", h)}
		v := NewView(&x, nil, 0)
		defer v.Release()
		for _, name := range []string{"sid", "a", ""} {
			got, ok := v.Cookie(name)
			if ok && (got == "" || !strings.Contains(h, got)) {
				t.Fatalf("Cookie(%q) = %q, which is empty or not in the header", name, got)
			}
		}
	})
}

func FuzzSetCookie(f *testing.F) {
	for _, s := range []string{"sid=new; Path=/", `sid="q"; Secure`, "sid", "=x", "sid=; Max-Age=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		x := traffic.Exchange{ResponseHeaders: hdrs("set-cookie", h, "set-cookie", "other=1")}
		v := NewView(&x, nil, 0)
		defer v.Release()
		got, ok := v.SetCookie("sid")
		if ok && (got == "" || !strings.Contains(h, got)) {
			t.Fatalf("SetCookie = %q, which is empty or not in the header", got)
		}
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{"/a?token=aaa", "/a?t=%zz&token=b+c", "/?token=&token=%41", "/?%74oken=x", "?token=x#y", "/?a=1;token=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		x := traffic.Exchange{Path: p}
		v := NewView(&x, nil, 0)
		defer v.Release()
		got, ok := v.Query("token")
		if ok && got == "" {
			t.Fatal("Query worked with an empty value")
		}
		// Where net/url accepts the whole query, both must agree.
		q := p
		if i := strings.IndexByte(q, '?'); i >= 0 {
			q = q[i+1:]
		} else {
			q = ""
		}
		if i := strings.IndexByte(q, '#'); i >= 0 {
			q = q[:i]
		}
		vals, err := url.ParseQuery(q)
		if err != nil || strings.Count(q, "&") >= maxPairs {
			return
		}
		want := ""
		for _, s := range vals["token"] {
			if s != "" {
				want = s
				break
			}
		}
		if got != want {
			t.Fatalf("Query(token) = %q, net/url says %q", got, want)
		}
	})
}

func FuzzForm(f *testing.F) {
	f.Add([]byte("user=j%40x&token=aaa"), false)
	f.Add([]byte("=&&token&token=%g"), false)
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\naaa\r\n--B--\r\n"), true)
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"token\"; filename=\"x\"\r\n\r\nf\r\n--B"), true)
	exs := mustCompileAll(f,
		config.Parameter{In: "request.body", Key: "token"},
		config.Parameter{In: "request.body", Key: "token", Decode: "base64"},
	)
	f.Fuzz(func(t *testing.T, body []byte, multi bool) {
		ct := "application/x-www-form-urlencoded"
		if multi {
			ct = "multipart/form-data; boundary=B"
		}
		x := traffic.Exchange{RequestHeaders: hdrs("content-type", ct), RequestBody: body}
		v := NewView(&x, nil, 1<<20)
		defer v.Release()
		checkWorks(t, exs, v)
		if multi {
			return
		}
		// Where net/url accepts the whole body, both must agree.
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return
		}
		want := ""
		for _, s := range vals["token"] {
			if s != "" {
				want = s
				break
			}
		}
		if got, _ := v.FormField(Request, "token"); got != want {
			t.Fatalf("FormField(token) = %q, net/url says %q", got, want)
		}
	})
}
