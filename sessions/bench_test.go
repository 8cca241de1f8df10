package sessions

import (
	"fmt"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// benchParams: four grouping keys (one in a JSON request body) and six context parameters.
var benchParams = []config.Parameter{
	{Name: "login_token", In: config.InResponseBody, Path: "$.token", Group: true, Hashed: true},
	{Name: "query_token", In: config.InRequestQuery, Key: "token", Group: true, Hashed: true},
	{Name: "body_token", In: config.InRequestBody, Path: "$.token", Group: true, Hashed: true},
	{Name: "api_session", In: config.InRequestHeader, Key: "x-api-session", Group: true},
	{Name: "username", In: config.InRequestHeader, Key: "authorization", Decode: config.DecodeJWT, Path: "$.details.username", Type: config.TypeUser},
	{Name: "role", In: config.InRequestHeader, Key: "x-role", Type: config.TypeRole},
	{Name: "email", In: config.InRequestBody, Path: "$.email", Hashed: true},
	{Name: "product_id", In: config.InResponseBody, Path: "$.product_id"},
	{Name: "tenant", In: config.InRequestCookie, Key: "tenant"},
	{Name: "page", In: config.InRequestQuery, Key: "page"},
}

// benchExchanges are n realistic exchanges spread over n sessions.
func benchExchanges(b *testing.B, n int) []*traffic.Exchange {
	xs := make([]*traffic.Exchange, n)
	for i := range xs {
		token := jwt(b, map[string]any{"sub": fmt.Sprint("user-", i), "details": map[string]any{"username": fmt.Sprintf("user%d@example.com", i)}})
		x := exchange("POST", "/api/v1/orders/12345?page=3",
			"authorization", "Bearer "+token,
			"x-role", "buyer",
			"cookie", "tenant=acme; theme=dark",
			"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
			"x-client-ja3", "e7d705a3286e19ea42f587b344ee6865",
			"accept", "application/json")
		withJSONBody(x, fmt.Sprintf(`{"token":"tok-%d","email":"user%d@example.com","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"please deliver after 5pm"}`, i, i))
		withResponse(x, 200, `{"product_id":98765,"status":"accepted","eta":"2026-11-23"}`)
		xs[i] = x
	}
	return xs
}

func BenchmarkObserve(b *testing.B) {
	cfg := testConfig(b, benchParams...)
	cfg.Sessions.LookupCacheMB = 32
	e, _, _ := newTestEngine(b, cfg)
	xs := benchExchanges(b, 1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Observe(xs[i%len(xs)])
		i++
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	cfg := testConfig(b, benchParams...)
	cfg.Sessions.LookupCacheMB = 32
	e, _, _ := newTestEngine(b, cfg)
	xs := benchExchanges(b, 1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Observe(xs[i%len(xs)])
			i++
		}
	})
}

// BenchmarkResolve measures grouping alone as Peek runs it (view, parameters, client when no
// parameter decides, key, HMAC), per deciding key.
func BenchmarkResolve(b *testing.B) {
	cfg := testConfig(b, benchParams...)
	cfg.Sessions.LookupCacheMB = 32
	e, _, _ := newTestEngine(b, cfg)
	full := benchExchanges(b, 1)[0]
	cases := []struct {
		name string
		x    *traffic.Exchange
	}{
		{name: "param-json-body", x: full},
		{name: "builtin-cookie", x: exchange("GET", "/", "cookie", "a=b; PHPSESSID=0123456789abcdef", "user-agent", "ua")},
		{name: "builtin-jwt-sub", x: exchange("GET", "/", "authorization", "Bearer "+jwt(b, map[string]any{"sub": "user-1"}))},
		{name: "fallback", x: exchange("GET", "/", "user-agent", "Mozilla/5.0", "x-client-ja3", "e7d705a3286e19ea42f587b344ee6865")},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s := e.snap.Load()
			b.ReportAllocs()
			for b.Loop() {
				v := extract.NewView(tc.x, e.cache, s.maxBody)
				s.group(v, tc.x, e.hash)
				v.Release()
			}
		})
	}
}
