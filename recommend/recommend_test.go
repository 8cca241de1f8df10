package recommend

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// entry is one HAR entry as the tests write it.
type entry struct {
	client, ua   string
	method, url  string
	headers      [][2]string
	reqType      string
	reqBody      string
	status       int
	respHeaders  [][2]string
	respType     string
	respBody     string
	respEncoding string
}

func harBytes(t testing.TB, es []entry) []byte {
	t.Helper()
	nv := func(pairs [][2]string) []map[string]string {
		out := []map[string]string{}
		for _, p := range pairs {
			out = append(out, map[string]string{"name": p[0], "value": p[1]})
		}
		return out
	}
	var entries []map[string]any
	for i, e := range es {
		hs := append([][2]string{{"user-agent", e.ua}}, e.headers...)
		req := map[string]any{"method": e.method, "url": e.url, "headers": nv(hs)}
		if e.reqBody != "" {
			req["postData"] = map[string]string{"mimeType": e.reqType, "text": e.reqBody}
		}
		status := e.status
		if status == 0 {
			status = 200
		}
		rh := e.respHeaders
		if e.respType != "" {
			rh = append([][2]string{{"content-type", e.respType}}, rh...)
		}
		entries = append(entries, map[string]any{
			"startedDateTime": fmt.Sprintf("2026-11-22T09:%02d:%02d.000Z", i/60%60, i%60),
			"time":            10,
			"_clientIP":       e.client,
			"request":         req,
			"response": map[string]any{"status": status, "headers": nv(rh),
				"content": map[string]string{"text": e.respBody, "encoding": e.respEncoding}},
		})
	}
	b, err := json.Marshal(map[string]any{"log": map[string]any{"entries": entries}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readHAR(t testing.TB, es []entry) []traffic.Exchange {
	t.Helper()
	xs, err := recorded.ReadHAR(bytes.NewReader(harBytes(t, es)), recorded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return xs
}

func recommend(t testing.TB, xs []traffic.Exchange, o Options) (*Report, string) {
	t.Helper()
	rep, err := Recommend(context.Background(), xs, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	return rep, out.String()
}

// checkSnippet parses the YAML snippet as a configuration file: it must validate and hold
// exactly the report's parameters.
func checkSnippet(t testing.TB, rep *Report) {
	t.Helper()
	var y bytes.Buffer
	if err := rep.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseAndValidate("snippet.yaml", y.Bytes())
	if err != nil {
		t.Fatalf("the snippet does not validate: %v\n%s", err, y.String())
	}
	want := rep.Parameters()
	got := cfg.Parameters
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".Line"
	}, cmp.Ignore())); len(want)+len(got) > 0 && diff != "" {
		t.Errorf("the snippet's parameters differ from the report's (-want +got):\n%s", diff)
	}
}

// checkNoValues fails when the output shows any of the secret values of the traffic.
func checkNoValues(t testing.TB, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the output shows a value of the traffic (%d bytes)", len(s))
		}
	}
}

func TestDemoGolden(t *testing.T) {
	t.Parallel()
	xs, _, err := recorded.ReadFile("../examples/demo.har", recorded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, out := recommend(t, xs, Options{})
	checkSnippet(t, rep)
	checkNoValues(t, out, "a1b2c3d4e5f60718293a4b5c6d7e8f90", "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
		"c4r0l-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a", "correct horse", "tr0ub4dor", "alice", "carol", "svc-reporting", "eyJ")
	// The sid cookie (a built-in) ranks first: it covers more requests, and it is listed
	// only because it ranks above the login token flow, which it never meets in a request.
	if len(rep.Keys) != 2 || rep.Keys[0].Members[0].Param.Key != "sid" || rep.Keys[1].Members[0].Param.Path != "$.token" {
		t.Errorf("want the sid cookie, then the login token flow:\n%s", out)
	}
	path := filepath.Join("testdata", "demo.golden")
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("%s differs (-want +got); run go test -update if the change is intended:\n%s", path, diff)
	}
}

// loginTraffic reproduces the product's example: POST /login answers {"token": T}; later
// requests send T in the token query parameter, then in the JSON body's token property.
func loginTraffic(users int) ([]entry, []string) {
	var es []entry
	var secrets []string
	type user struct{ ip, ua, token, name string }
	us := make([]user, users)
	for i := range us {
		us[i] = user{
			ip:    fmt.Sprintf("203.0.113.%d", i+1),
			ua:    fmt.Sprintf("client/%d.0", i+1),
			token: fmt.Sprintf("tok%02d-%s", i, strings.Repeat(fmt.Sprintf("%x", 0xa0+i), 14)),
			name:  fmt.Sprintf("user%02d@example.com", i),
		}
		secrets = append(secrets, us[i].token, us[i].name)
	}
	for _, u := range us {
		es = append(es, entry{client: u.ip, ua: u.ua, method: "POST", url: "https://api.example.com/login",
			reqType: "application/json", reqBody: `{"username":"` + u.name + `","password":"s3cr3t-passw0rd"}`,
			respType: "application/json", respBody: `{"token":"` + u.token + `","expires_in":3600}`})
	}
	for round := range 3 {
		for _, u := range us {
			es = append(es, entry{client: u.ip, ua: u.ua, method: "GET",
				url:      fmt.Sprintf("https://api.example.com/items?page=%d&token=%s", round+1, u.token),
				respType: "application/json", respBody: `{"items":[{"id":7}]}`})
		}
	}
	for round := range 2 {
		for _, u := range us {
			es = append(es, entry{client: u.ip, ua: u.ua, method: "POST", url: "https://api.example.com/cart",
				reqType: "application/json", reqBody: fmt.Sprintf(`{"in":"bbb%d","token":"%s"}`, round, u.token),
				respType: "application/json", respBody: `{"items":1}`})
		}
	}
	es = append(es, entry{client: "192.0.2.9", ua: "curl/8", method: "GET", url: "https://api.example.com/health", respBody: "ok"})
	return es, append(secrets, "s3cr3t-passw0rd")
}

func TestLoginTokenFlow(t *testing.T) {
	t.Parallel()
	es, secrets := loginTraffic(3)
	rep, out := recommend(t, readHAR(t, es), Options{})
	checkSnippet(t, rep)
	checkNoValues(t, out, secrets...)
	if len(rep.Keys) == 0 {
		t.Fatalf("no key suggested for the login token flow:\n%s", out)
	}
	type place struct{ in, key, path string }
	var got []place
	for _, m := range rep.Keys[0].Members {
		got = append(got, place{m.Param.In, m.Param.Key, m.Param.Path})
	}
	want := []place{{"response.body", "", "$.token"}, {"request.query", "token", ""}, {"request.body", "", "$.token"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(place{})); diff != "" {
		t.Errorf("the first key is not the chain response $.token → query token → body $.token (-want +got):\n%s\n%s", diff, out)
	}
	k := rep.Keys[0]
	if k.Covered != 18 || k.Clients != 3 || k.RecurringValues != 3 || k.Stability != 1 || k.Distinctness != 1 {
		t.Errorf("key numbers: covered %d, clients %d, recurring values %d, stability %v, distinctness %v; want 18, 3, 3, 1, 1",
			k.Covered, k.Clients, k.RecurringValues, k.Stability, k.Distinctness)
	}
	for _, m := range k.Members {
		if !m.Param.Group || !m.Param.Hashed {
			t.Errorf("%s: a grouping key must be group: true and hashed: true", m.Param.Name)
		}
	}
	wantWhy := "returned by POST /login in $.token of the response body (3 responses, 3 deciding), later sent in the token query parameter of 9 requests (9 deciding) and in $.token of the request body of 6 requests (6 deciding)"
	if !strings.Contains(out, wantWhy) {
		t.Errorf("the explanation does not tell the flow %q:\n%s", wantWhy, out)
	}
	var user *Context
	for i := range rep.Context {
		if rep.Context[i].Param.Path == "$.username" {
			user = &rep.Context[i]
		}
	}
	if user == nil || user.Param.Type != config.TypeUser || !user.Param.Hashed {
		t.Errorf("the login's username (an e-mail) is not suggested as a hashed user parameter: %+v", rep.Context)
	}
	for _, p := range rep.Parameters() {
		if strings.Contains(p.Path, "password") || strings.Contains(p.Key, "password") {
			t.Errorf("a password field is suggested: %+v", p)
		}
	}
}

func TestAnonymousTraffic(t *testing.T) {
	t.Parallel()
	var es []entry
	for c := range 6 {
		ip := fmt.Sprintf("198.51.100.%d", c+1)
		ua := fmt.Sprintf("browser/%d", c)
		for r := range 5 {
			es = append(es, entry{client: ip, ua: ua, method: "GET",
				url: fmt.Sprintf("https://shop.example.com/api/products?category=books&page=%d&_=%d", r, 1795338000000+c*100+r),
				headers: [][2]string{
					{"accept-language", "en-US"},
					{"x-request-id", fmt.Sprintf("req-%08d-%04d", c, r)},
					{"x-api-key", "shop-public-key-2026"}, // one constant for every client
					{"x-client-version", "web-2026.11.01"},
				},
				respType: "application/json",
				respBody: fmt.Sprintf(`{"products":[{"id":%d,"sku":"SKU-%06d"}],"generated":"2026-11-22T09:00:%02dZ"}`, r, r, r)})
		}
	}
	rep, out := recommend(t, readHAR(t, es), Options{})
	checkSnippet(t, rep)
	checkNoValues(t, out, "shop-public-key-2026")
	if len(rep.Keys) != 0 {
		t.Errorf("anonymous traffic got %d suggestions:\n%s", len(rep.Keys), out)
	}
	// x-api-key is a built-in identifier: every request carries one.
	for _, want := range []string{"No grouping key to suggest", "built-in identifiers", "IP + User-Agent", "0 of 30 requests carry neither", "header x-api-key: 30 requests"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
	var y bytes.Buffer
	if err := rep.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	if got := y.String(); got != "parameters: []\n" {
		t.Errorf("YAML without suggestions = %q, want %q", got, "parameters: []\n")
	}
}

func TestBuiltinsAndCustomKeys(t *testing.T) {
	t.Parallel()
	sess := []string{"9f8e7d6c5b4a39281706f5e4d3c2b1a0", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"}
	custom := []string{"cs-7c1e2f8a9b0d4e5f", "cs-1a2b3c4d5e6f7081"}
	jwt := "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZGV0YWlscyI6eyJ1c2VybmFtZSI6ImpvaG4tZG9lQGNvbXBhbnktMDAxLmNvbSJ9fQ.c2ln"
	var es []entry
	for r := range 4 {
		for c := range 2 {
			es = append(es, entry{client: fmt.Sprintf("192.0.2.%d", c+10), ua: "app/1", method: "GET",
				url:     fmt.Sprintf("https://app.example.com/api/orders/%d", r),
				headers: [][2]string{{"cookie", "PHPSESSID=" + sess[c] + "; shop_cart=" + custom[c] + "; theme=dark"}},
				status:  200})
		}
		es = append(es, entry{client: "10.0.0.5", ua: "svc/2", method: "GET", url: "https://app.example.com/api/report",
			headers: [][2]string{{"authorization", jwt}}})
	}
	rep, out := recommend(t, readHAR(t, es), Options{})
	checkSnippet(t, rep)
	checkNoValues(t, out, append(append(sess, custom...), "john-doe", "user-42", "eyJ")...)
	if len(rep.Keys) != 1 || rep.Keys[0].Members[0].Param.Key != "shop_cart" || rep.Keys[0].Members[0].Role != RoleStandalone {
		t.Errorf("want one suggestion, the shop_cart cookie:\n%s", out)
	}
	names := map[string]bool{}
	for _, b := range rep.Builtins {
		names[b.Name] = true
	}
	if !names["cookie PHPSESSID"] || !names["JWT sub claim (bearer token)"] {
		t.Errorf("built-ins seen = %v, want the PHPSESSID cookie and the JWT sub claim", rep.Builtins)
	}
	found := false
	for _, c := range rep.Context {
		if c.Param.Decode == config.DecodeJWT && c.Param.Path == "$.details.username" && c.Param.Type == config.TypeUser && c.Param.Hashed {
			found = true
		}
	}
	if !found {
		t.Errorf("the custom claim $.details.username (an e-mail) is not suggested as a hashed user: %+v", rep.Context)
	}
	if rep.FallbackRequests != 0 {
		t.Errorf("fallback requests = %d, want 0 (every request carries a built-in)", rep.FallbackRequests)
	}
}

// hostileTraffic is traffic written to hurt: huge values, binary bodies, deep JSON, floods of
// names, and bad UTF-8, around a few ordinary requests.
func hostileTraffic() []entry {
	huge := strings.Repeat("A", 1<<20)
	deep := strings.Repeat(`{"a":`, 50_000) + `"x"` + strings.Repeat("}", 50_000)
	var cookies, query, wide strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&cookies, "c%d=v%08d; ", i, i)
		fmt.Fprintf(&query, "q%d=%d&", i, i)
		if i > 0 {
			wide.WriteByte(',')
		}
		fmt.Fprintf(&wide, `"k%d":"value-%08d"`, i, i)
	}
	bin := string([]byte{0xff, 0xfe, 0x00, 0x01, '{', '"', 'a', '"', ':', 0x80, '}'})
	es := []entry{
		{client: "192.0.2.1", ua: huge, method: "GET", url: "https://x.example.com/?" + query.String(),
			headers: [][2]string{{"cookie", cookies.String()}, {"x-big", huge}, {"x-bin", "\x00\x01\xff"}}},
		{client: "192.0.2.1", ua: "a", method: "POST", url: "https://x.example.com/deep", reqType: "application/json", reqBody: deep,
			respType: "application/json", respBody: deep},
		{client: "192.0.2.2", ua: "b", method: "POST", url: "https://x.example.com/wide", reqType: "application/json", reqBody: "{" + wide.String() + "}",
			respType: "application/json", respBody: "[" + strings.Repeat("[", 10_000) + "]"},
		{client: "192.0.2.3", ua: "c", method: "POST", url: "https://x.example.com/bin", reqType: "application/json", reqBody: bin,
			respType: "application/octet-stream", respBody: "AAEC/w==", respEncoding: "base64"},
		{client: "192.0.2.4", ua: "d", method: "POST", url: "https://x.example.com/form", reqType: "application/x-www-form-urlencoded",
			reqBody: strings.Repeat("%ZZ=%ff&", 5000) + "tok=abcdef123456"},
		{client: "not-an-ip", ua: "\xff\xfe", method: "GET", url: "https://x.example.com/%ff%00?%ff=%00",
			headers:     [][2]string{{"authorization", "Bearer " + huge}, {"x-\xff", "v"}},
			respHeaders: [][2]string{{"set-cookie", "=; ; a"}, {"set-cookie", "s=" + huge}, {"set-cookie", "\xff=1"}}},
		{client: "192.0.2.5", ua: "e", method: "GET", url: "https://x.example.com/jwt",
			headers: [][2]string{{"authorization", "Bearer e30.eyJhIjp7ImIiOnsiYyI6eyJkIjp7ImUiOiJ4In19fX19.c2ln"}}},
	}
	return es
}

func TestHostileTrafficStaysBounded(t *testing.T) {
	t.Parallel()
	xs := readHAR(t, hostileTraffic())
	// The ordinary login flow after the hostile entries must still be found.
	good, _ := loginTraffic(2)
	xs = append(xs, readHAR(t, good)...)
	rep, out := recommend(t, xs, Options{Max: 3})
	checkSnippet(t, rep)
	if strings.Contains(out, strings.Repeat("A", 64)) || strings.Contains(out, "\x00") || strings.Contains(out, "\xff") {
		t.Errorf("the output shows raw hostile values")
	}
	if len(out) > 64<<10 {
		t.Errorf("the output is %d bytes; it must stay small whatever the traffic", len(out))
	}
	if rep.Ignored == 0 {
		t.Errorf("the name floods hit no bound (Ignored = 0); the bounds are not enforced")
	}
	if len(rep.Keys) == 0 {
		t.Errorf("the login flow after the hostile entries was not found:\n%s", out)
	}
}

func TestManyExchangesAreCapped(t *testing.T) {
	t.Parallel()
	one := readHAR(t, []entry{{client: "192.0.2.1", ua: "a", method: "GET", url: "https://x.example.com/"}})
	xs := make([]traffic.Exchange, MaxExchanges+10)
	for i := range xs {
		xs[i] = one[0]
	}
	rep, out := recommend(t, xs, Options{})
	if rep.Requests != MaxExchanges || rep.Total != MaxExchanges+10 || !strings.Contains(out, "Only the first") {
		t.Errorf("requests %d of %d; want %d of %d and a note:\n%s", rep.Requests, rep.Total, MaxExchanges, MaxExchanges+10, out)
	}
}

func TestCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Recommend(ctx, readHAR(t, []entry{{client: "192.0.2.1", ua: "a", method: "GET", url: "https://x.example.com/"}}), Options{}); err == nil {
		t.Errorf("Recommend with a cancelled context returned no error")
	}
}

func TestIsIDLike(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"hex token", "a1b2c3d4e5f60718293a4b5c6d7e8f90", true},
		{"uuid", "3f2b8c1e-9d4a-4e7b-8f6a-1c2d3e4f5a6b", true},
		{"long word without digits", "abcdefghijklmnopq", true},
		{"short", "abc123", false},
		{"enum word", "customer", false},
		{"language", "en-US", false},
		{"unix seconds", "1795338000", false},
		{"unix millis", "1795338000000", false},
		{"iso date", "2026-11-22T09:00:00Z", false},
		{"space", "correct horse battery staple", false},
		{"few characters", "aaaaaaaa1111", false},
		{"binary", "abc\x00def12345", false},
		{"too long", strings.Repeat("ab12", maxValueLen), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := isIDLike(tc.in); got != tc.want {
				t.Errorf("isIDLike = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRouteOfMasksIdentifiers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, want string
	}{
		{"plain", "POST", "/api/login", "POST /api/login"},
		{"query dropped", "GET", "/items?token=secret123456", "GET /items"},
		{"numeric id", "GET", "/api/orders/1001", "GET /api/orders/{id}"},
		{"token in path", "GET", "/s/9f8e7d6c5b4a39281706f5e4d3c2b1a0/view", "GET /s/{id}/view"},
		{"escapes", "GET", "/a%00b/<script>", "GET /{id}/{id}"},
		{"root", "GET", "/", "GET /"},
		{"long", "GET", "/a/b/c/d/e/f/g/h", "GET /a/b/c/d/e/f/…"},
		{"odd method", "g\x00t", "/", "? /"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := traffic.Exchange{Method: tc.method, Path: tc.path}
			if got := routeOf(&x); got != tc.want {
				t.Errorf("routeOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWalkJSONPathsCompile(t *testing.T) {
	t.Parallel()
	doc := map[string]any{
		"a":       map[string]any{"b-c": []any{map[string]any{"d": "x"}}, "e": 1.5},
		"odd key": "skipped", "1st": "skipped", "t": true,
		"deep": map[string]any{"l2": map[string]any{"l3": map[string]any{"l4": map[string]any{"l5": "too deep"}}}},
	}
	got := walkJSON(nil, doc, "$", 0)
	want := []leaf{{"$.a['b-c'][0].d", "x"}, {"$.a.e", "1.5"}, {"$.t", "true"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(leaf{})); diff != "" {
		t.Errorf("walkJSON (-want +got):\n%s", diff)
	}
	for _, l := range got {
		cfg := config.Default()
		cfg.Parameters = []config.Parameter{{Name: "p", In: config.InRequestBody, Path: l.path}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("path %s does not validate: %v", l.path, err)
		}
	}
}

func FuzzRecommendHAR(f *testing.F) {
	es, _ := loginTraffic(2)
	f.Add(harBytes(f, es))
	f.Add([]byte(`{"log":{"entries":[{"request":{"method":"GET","url":"https://a/?t=1","headers":[{"name":"cookie","value":"a=b"}]},"response":{"status":200,"content":{"text":"{\"a\":[[[1]]]}"}}}]}}`))
	f.Add([]byte(`{"log":{"entries":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		xs, err := recorded.ReadHAR(bytes.NewReader(data), recorded.Options{})
		if err != nil {
			return
		}
		rep, err := Recommend(context.Background(), xs, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.WriteText(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		checkSnippet(t, rep)
	})
}
