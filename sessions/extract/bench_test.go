package extract

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// noiseHeaders returns n typical request headers that are not the one looked for.
func noiseHeaders(n int) []traffic.Header {
	hs := make([]traffic.Header, 0, n)
	for i := range n {
		hs = append(hs, traffic.Header{Name: fmt.Sprintf("x-noise-%d", i), Value: "value-of-some-length"})
	}
	return hs
}

// jsonBody returns a JSON object of about size bytes with "email" as its last member.
func jsonBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","price":%d.5}`, i, i, i)
	}
	b.WriteString(`],"email":"john@example.com"}`)
	return []byte(b.String())
}

func formBody(size int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < size-32; i++ {
		fmt.Fprintf(&b, "field%d=value+%d&", i, i)
	}
	b.WriteString("email=john%40example.com")
	return []byte(b.String())
}

// BenchmarkExtract measures one extraction as the engine runs it: a View per exchange, one
// parameter read, the View released. Body benchmarks parse the body in every iteration.
func BenchmarkExtract(b *testing.B) {
	tok := testutil.JWT(seedClaims)
	cache, err := NewCache(16 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()

	type bench struct {
		name  string
		param config.Parameter
		x     traffic.Exchange
		cache *Cache
		bytes int
		// more are further parameters read from the same View, as an engine reads several.
		more []config.Parameter
		// tree reads JSON paths from the parsed body (the route before the scanner).
		tree bool
	}
	var benches []bench
	for _, n := range []int{8, 32} {
		hs := append(noiseHeaders(n), traffic.Header{Name: "x-session-id", Value: "0123456789abcdef"})
		benches = append(benches, bench{name: fmt.Sprintf("header/%dheaders", n+1),
			param: config.Parameter{In: "request.header", Key: "x-session-id"},
			x:     traffic.Exchange{RequestHeaders: hs}})
	}
	for _, n := range []int{4, 40} {
		var c strings.Builder
		for i := range n {
			fmt.Fprintf(&c, "c%d=v%d; ", i, i)
		}
		c.WriteString("sid=0123456789abcdef")
		benches = append(benches, bench{name: fmt.Sprintf("cookie/%dcookies", n+1),
			param: config.Parameter{In: "request.cookie", Key: "sid"},
			x:     traffic.Exchange{RequestHeaders: append(noiseHeaders(8), traffic.Header{Name: "cookie", Value: c.String()})}})
	}
	benches = append(benches,
		bench{name: "query/plain", param: config.Parameter{In: "request.query", Key: "token"},
			x: traffic.Exchange{Path: "/api/items?page=2&sort=asc&token=0123456789abcdef"}},
		bench{name: "query/escaped", param: config.Parameter{In: "request.query", Key: "token"},
			x: traffic.Exchange{Path: "/api/items?page=2&sort=asc&token=0123%2B4567%2F89abcdef"}},
		bench{name: "path/capture", param: config.Parameter{In: "request.path", Path: "/api/sessions/{sid}/**"},
			x: traffic.Exchange{Path: "/api/sessions/0123456789abcdef/items/7?x=1"}},
		bench{name: "jwt/uncached", param: config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.details.username"},
			x: traffic.Exchange{RequestHeaders: append(noiseHeaders(8), traffic.Header{Name: "authorization", Value: "Bearer " + tok})}},
		bench{name: "jwt/cached", param: config.Parameter{In: "request.header", Key: "authorization", Decode: "jwt", Path: "$.details.username"},
			x:     traffic.Exchange{RequestHeaders: append(noiseHeaders(8), traffic.Header{Name: "authorization", Value: "Bearer " + tok})},
			cache: cache},
	)
	// JSON bodies: "scan" is Extract (the token tape), "tree" the full parse and a walk of the
	// tree, side by side; "3paths" reads three paths of the same body through one View.
	more := []config.Parameter{{In: "request.body", Path: "$.items[0].name"}, {In: "request.body", Path: "$.items[-1].price"}}
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		body := jsonBody(size)
		for _, route := range []string{"scan", "tree"} {
			for _, paths := range []string{"1path", "3paths"} {
				bc := bench{name: fmt.Sprintf("json-body/%dKiB/%s/%s", size>>10, paths, route),
					param: config.Parameter{In: "request.body", Path: "$.email"},
					x:     traffic.Exchange{RequestHeaders: hdrs("content-type", "application/json"), RequestBody: body},
					bytes: len(body), tree: route == "tree"}
				if paths == "3paths" {
					bc.more = more
				}
				benches = append(benches, bc)
			}
		}
	}
	for _, size := range []int{1 << 10, 64 << 10} {
		body := formBody(size)
		benches = append(benches, bench{name: fmt.Sprintf("form-body/%dKiB", size>>10),
			param: config.Parameter{In: "request.body", Key: "email"},
			x:     traffic.Exchange{RequestHeaders: hdrs("content-type", "application/x-www-form-urlencoded"), RequestBody: body},
			bytes: len(body)})
	}

	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			exs := mustCompileAll(b, append([]config.Parameter{bc.param}, bc.more...)...)
			extract := func(v *View) bool {
				for _, e := range exs {
					var ok bool
					if bc.tree {
						doc, _ := v.JSONBody(e.side)
						_, ok = e.sel.pick(doc)
					} else {
						_, ok = e.Extract(v)
					}
					if !ok {
						return false
					}
				}
				return true
			}
			// Warm the cache (and check the case works) outside the timed loop.
			v := NewView(&bc.x, bc.cache, 2<<20)
			if !extract(v) {
				b.Fatalf("%s does not work", bc.name)
			}
			v.Release()
			if bc.cache != nil {
				bc.cache.Wait()
			}
			b.ReportAllocs()
			if bc.bytes > 0 {
				b.SetBytes(int64(bc.bytes))
			}
			for b.Loop() {
				v := NewView(&bc.x, bc.cache, 2<<20)
				if !extract(v) {
					b.Fatal("extraction stopped working")
				}
				v.Release()
			}
		})
	}
}
