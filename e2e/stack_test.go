package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/e2e/internal/demo"
	"github.com/apisessions/apisessions/e2e/internal/harness"
)

// testClock is the harness's clock for request.time: tests move it across midnight.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// upstream is the demo API on a loopback port; it remembers the headers of every request by
// the x-request-id the proxy gave it.
type upstream struct {
	url  string
	api  *demo.API
	mu   sync.Mutex
	seen map[string]http.Header
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{seen: map[string]http.Header{}}
	u.api = demo.New(demo.Options{Observe: func(r *http.Request) {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.seen[r.Header.Get("x-request-id")] = r.Header.Clone()
	}})
	srv := httptest.NewServer(u.api)
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

func (u *upstream) headers(id string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[id]
}

// front is the Envoy-faithful proxy in front of the demo API, configured by the bootstrap
// `apisessions envoy-config` renders for the server's configuration.
type front struct {
	proxy *harness.Proxy
	url   string
	clock *testClock
}

// renderBootstrap runs `apisessions envoy-config` for a configuration file. It renders the
// TLS bootstrap, whose header_mutation adds the JA3/JA4 headers; the harness takes their
// values from the test instead of a handshake.
func renderBootstrap(t *testing.T, configPath, mode string) []byte {
	t.Helper()
	var out, errs bytes.Buffer
	args := []string{"envoy-config", "--config", configPath, "--mode", mode}
	if code := app.Run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("envoy-config exited %d: %s", code, errs.String())
	}
	return out.Bytes()
}

func startFront(t *testing.T, s *server, up *upstream, mode string, tweak func(*harness.Options)) *front {
	t.Helper()
	filters, err := harness.FromBootstrap(renderBootstrap(t, s.configPath, mode))
	if err != nil {
		t.Fatal(err)
	}
	// The access log needs the id; Envoy has the same connection manager option.
	filters.AlwaysSetRequestIDInResponse = true
	f := &front{clock: &testClock{}}
	o := harness.Options{Filters: *filters, Processor: s.client(t), Upstream: up.url, Now: f.clock.Now}
	if tweak != nil {
		tweak(&o)
	}
	f.proxy, err = harness.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.proxy)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// client is who sends a request: its address as the proxy sees it, its User-Agent and the
// TLS fingerprints Envoy would compute for its handshake.
type client struct {
	addr, ua, ja3, ja4 string
}

// reply is what the client got back.
type reply struct {
	status int
	id     string
	header http.Header
	body   map[string]any
}

// do sends one request through the front proxy; extra is "name", "value", ….
func (f *front) do(t *testing.T, c client, method, path, body string, extra ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" && !slices.Contains(extra, "content-type") {
		req.Header.Set("content-type", "application/json")
	}
	req.Header.Set("user-agent", c.ua)
	if c.addr != "" {
		req.Header.Set(harness.HeaderClientAddress, c.addr)
	}
	if c.ja3 != "" {
		req.Header.Set(harness.HeaderJA3, c.ja3)
	}
	if c.ja4 != "" {
		req.Header.Set(harness.HeaderJA4, c.ja4)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Add(extra[i], extra[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, id: resp.Header.Get("x-request-id"), header: resp.Header}
	_ = json.Unmarshal(raw, &r.body)
	if r.id == "" {
		t.Fatalf("%s %s: no x-request-id in the answer", method, path)
	}
	return r
}

// record waits for the request record of a request id.
func (s *server) record(t *testing.T, id string) map[string]any {
	t.Helper()
	return s.stdout.WaitFor(t, "the request record of "+id, func(m map[string]any) bool {
		return m["kind"] == "request" && m["request_id"] == id
	})
}

func keyOf(rec map[string]any) string {
	k, _ := rec["key"].(map[string]any)
	src, _ := k["source"].(string)
	name, _ := k["name"].(string)
	return src + ":" + name
}
