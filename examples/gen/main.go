// Command gen writes examples/demo.har: a morning of traffic to a small shop, the same bytes on
// every run. Run it from the repository root with `go run ./examples/gen`.
//
// The traffic: two signed-in customers with session cookies, anonymous visitors, a customer who
// logs in and uses the token the login returned, a reporting service calling with a JWT, and a
// scanner whose SQL injection a WAF in front of the shop flags with an x-waf-attack header.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/apisessions/apisessions/internal/har"
)

type nv = har.NV

// entry is a HAR entry with the custom fields replay reads: HAR has no field for the client's
// address or the request's id.
type entry struct {
	har.Entry
	ClientIP  string `json:"_clientIP"`
	RequestID string `json:"_requestId"`
}

type harLog struct {
	Log struct {
		Version string      `json:"version"`
		Creator har.Creator `json:"creator"`
		Entries []entry     `json:"entries"`
	} `json:"log"`
}

const (
	origin  = "https://shop.example.com"
	firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
	chrome  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
	safari  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
	edge    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0"
	sqlmap  = "sqlmap/1.8.11#stable (https://sqlmap.org)"
	python  = "python-requests/2.32.3"
)

var start = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

// call is one request of the demo, at an offset from start.
type call struct {
	at      time.Duration
	ip, ua  string
	method  string
	path    string
	headers []nv
	body    string
	status  int
	resp    string
	respHdr []nv
}

func main() {
	out := flag.String("o", "examples/demo.har", "file to write")
	flag.Parse()
	var calls []call
	calls = append(calls, customer("alice", "203.0.113.10", firefox, "sid", "a1b2c3d4e5f60718293a4b5c6d7e8f90", 0)...)
	calls = append(calls, customer("bob", "198.51.100.23", chrome, "sid", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 7*time.Minute)...)
	calls = append(calls, visitor("192.0.2.40", safari, 2*time.Minute)...)
	calls = append(calls, visitor("192.0.2.41", edge, 11*time.Minute)...)
	calls = append(calls, tokenUser(15*time.Minute)...)
	calls = append(calls, jwtClient(5*time.Minute)...)
	calls = append(calls, scanner(20*time.Minute)...)

	h := harLog{}
	h.Log.Version = "1.2"
	h.Log.Creator = har.Creator{Name: "apisessions examples/gen", Version: "1"}
	for i, c := range calls {
		h.Log.Entries = append(h.Log.Entries, c.entry(i))
	}
	sortEntries(h.Log.Entries)
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// sortEntries orders entries by start time (insertion sort: stable, and the list is short).
func sortEntries(es []entry) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].StartedDateTime < es[j-1].StartedDateTime; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// customer browses with a session cookie and asks who they are (/api/me names the user).
func customer(name, ip, ua, cookie, sid string, at time.Duration) []call {
	ck := []nv{{Name: "cookie", Value: cookie + "=" + sid}}
	me := fmt.Sprintf(`{"username":%q,"role":"customer"}`, name)
	return []call{
		{at: at, ip: ip, ua: ua, method: "GET", path: "/", headers: ck, status: 200, resp: "<!doctype html><title>Shop</title>"},
		{at: at + 2*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/me", headers: ck, status: 200, resp: me},
		{at: at + 40*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/products?category=books", headers: ck, status: 200, resp: `{"products":[{"id":42},{"id":43}]}`},
		{at: at + 75*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/products/42", headers: ck, status: 200, resp: `{"id":42,"name":"Gödel, Escher, Bach","price":24.5}`},
		{at: at + 2*time.Minute, ip: ip, ua: ua, method: "POST", path: "/api/cart", headers: ck, body: `{"product_id":42,"quantity":1}`, status: 201, resp: `{"items":1}`},
		{at: at + 3*time.Minute, ip: ip, ua: ua, method: "POST", path: "/api/checkout", headers: ck, body: `{"payment":"card"}`, status: 200, resp: `{"order_id":1001}`},
		{at: at + 3*time.Minute + 5*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/orders/1001", headers: ck, status: 200, resp: `{"id":1001,"status":"paid"}`},
	}
}

// visitor looks around without signing in: only its address and browser tell it apart.
func visitor(ip, ua string, at time.Duration) []call {
	return []call{
		{at: at, ip: ip, ua: ua, method: "GET", path: "/", status: 200, resp: "<!doctype html><title>Shop</title>"},
		{at: at + time.Second, ip: ip, ua: ua, method: "GET", path: "/static/app.js", status: 200, resp: "console.log('shop')"},
		{at: at + 30*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/products?category=games", status: 200, resp: `{"products":[{"id":7}]}`},
		{at: at + 50*time.Second, ip: ip, ua: ua, method: "GET", path: "/api/products/7", status: 200, resp: `{"id":7,"name":"Go"}`},
	}
}

// tokenUser logs in; the login answers a token that the next calls send in x-auth-token.
func tokenUser(at time.Duration) []call {
	const ip, tok = "203.0.113.77", "c4r0l-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
	auth := []nv{{Name: "x-auth-token", Value: tok}, {Name: "accept", Value: "application/json"}}
	return []call{
		{at: at, ip: ip, ua: firefox, method: "GET", path: "/login", status: 200, resp: "<!doctype html><title>Sign in</title>"},
		{at: at + 20*time.Second, ip: ip, ua: firefox, method: "POST", path: "/api/login", headers: []nv{{Name: "accept", Value: "application/json"}},
			body: `{"username":"carol","password":"correct horse battery staple"}`, status: 200, resp: `{"token":"` + tok + `","expires_in":3600}`},
		{at: at + 25*time.Second, ip: ip, ua: firefox, method: "GET", path: "/api/account", headers: auth, status: 200, resp: `{"email":"carol@example.com"}`},
		{at: at + 90*time.Second, ip: ip, ua: firefox, method: "POST", path: "/api/account/password", headers: auth,
			body: `{"old":"correct horse battery staple","new":"tr0ub4dor&3"}`, status: 204},
		{at: at + 2*time.Minute, ip: ip, ua: firefox, method: "GET", path: "/api/orders", headers: auth, status: 200, resp: `{"orders":[]}`},
		{at: at + 3*time.Minute, ip: ip, ua: firefox, method: "POST", path: "/api/logout", headers: auth, status: 204},
	}
}

// jwtClient is a reporting service that sends a JWT with every call.
func jwtClient(at time.Duration) []call {
	const ip = "10.20.30.40"
	auth := []nv{{Name: "authorization", Value: "Bearer " + jwt(map[string]any{"sub": "svc-reporting", "role": "reporter", "iat": start.Unix()})}}
	var cs []call
	for i, p := range []string{"/api/v1/reports/daily", "/api/v1/reports/weekly", "/api/v1/orders?since=2026-11-21", "/api/v1/orders?since=2026-11-22"} {
		cs = append(cs, call{at: at + time.Duration(i)*10*time.Minute, ip: ip, ua: python, method: "GET", path: p, headers: auth, status: 200, resp: `{"rows":[]}`})
	}
	cs = append(cs, call{at: at + 45*time.Minute, ip: ip, ua: python, method: "POST", path: "/api/v1/chat/completions", headers: auth,
		body: `{"model":"shop-assistant","messages":[{"role":"user","content":"Summarise yesterday's orders"}]}`, status: 200, resp: `{"choices":[]}`})
	return cs
}

// scanner probes the shop; the WAF flags the injections with x-waf-attack.
func scanner(at time.Duration) []call {
	const ip = "192.0.2.66"
	waf := func(types string) []nv { return []nv{{Name: "x-waf-attack", Value: types}} }
	return []call{
		{at: at, ip: ip, ua: sqlmap, method: "GET", path: "/.env", status: 404},
		{at: at + time.Second, ip: ip, ua: sqlmap, method: "GET", path: "/admin", status: 404},
		{at: at + 2*time.Second, ip: ip, ua: sqlmap, method: "GET", path: "/api/products?category=books%27%20OR%201%3D1--", status: 403, respHdr: waf("sqli")},
		{at: at + 3*time.Second, ip: ip, ua: sqlmap, method: "POST", path: "/api/login", body: `{"username":"admin' --","password":"x"}`, status: 403, respHdr: waf("sqli")},
		{at: at + 4*time.Second, ip: ip, ua: sqlmap, method: "GET", path: "/api/products/42?preview=%3Cscript%3Ealert(1)%3C/script%3E", status: 403, respHdr: waf("xss")},
	}
}

// jwt builds an unsigned-looking token: apisessions reads the claims and never checks signatures.
func jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	head, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	body, _ := json.Marshal(claims)
	return enc.EncodeToString(head) + "." + enc.EncodeToString(body) + "." + enc.EncodeToString([]byte("demo-signature"))
}

func (c call) entry(i int) entry {
	t := start.Add(c.at)
	hdrs := []nv{{Name: "host", Value: "shop.example.com"}, {Name: "user-agent", Value: c.ua}}
	hdrs = append(hdrs, c.headers...)
	e := entry{
		Entry: har.Entry{
			StartedDateTime: t.Format("2006-01-02T15:04:05.000Z"),
			Time:            float64(12 + i%7*9),
			ServerIPAddress: "198.51.100.1",
			Timings:         har.Timings{Send: 0, Wait: float64(10 + i%7*9), Receive: 2},
		},
		ClientIP:  c.ip,
		RequestID: fmt.Sprintf("demo-%04d", i+1),
	}
	var cookies []nv
	for _, h := range c.headers {
		if h.Name == "cookie" {
			name, value, _ := strings.Cut(h.Value, "=")
			cookies = append(cookies, nv{Name: name, Value: value})
		}
	}
	e.Request = har.Request{Method: c.method, URL: origin + c.path, HTTPVersion: "HTTP/2", Cookies: orEmpty(cookies),
		Headers: hdrs, QueryString: query(c.path), HeadersSize: -1, BodySize: int64(len(c.body))}
	if c.body != "" {
		hdrs = append(hdrs, nv{Name: "content-type", Value: "application/json"})
		e.Request.Headers = hdrs
		e.Request.PostData = &har.PostData{MimeType: "application/json", Text: c.body}
	}
	mime := "application/json"
	if strings.HasPrefix(c.resp, "<") {
		mime = "text/html"
	} else if strings.HasSuffix(c.path, ".js") {
		mime = "text/javascript"
	}
	rh := []nv{{Name: "content-type", Value: mime}}
	rh = append(rh, c.respHdr...)
	e.Response = har.Response{Status: c.status, StatusText: statusText(c.status), HTTPVersion: "HTTP/2", Cookies: []nv{},
		Headers: rh, Content: har.Content{Size: int64(len(c.resp)), MimeType: mime, Text: c.resp}, HeadersSize: -1, BodySize: int64(len(c.resp))}
	return e
}

func orEmpty(v []nv) []nv {
	if v == nil {
		return []nv{}
	}
	return v
}

func query(path string) []nv {
	_, q, ok := strings.Cut(path, "?")
	if !ok {
		return []nv{}
	}
	var out []nv
	for kv := range strings.SplitSeq(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, nv{Name: k, Value: v})
	}
	return out
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 204:
		return "No Content"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	}
	return ""
}
