package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// seedConfig is the grouping example of the product documentation: a login returns a token in
// its JSON body, later requests send it in the query or in a JSON body. Context parameters add
// the user from a bearer JWT, a hashed email and a product id.
const seedConfig = `
parameters:
  - name: login_token
    in: response.body
    path: $.token
    group: true
    hashed: true
  - name: query_token
    in: request.query
    key: token
    group: true
    hashed: true
  - name: body_token
    in: request.body
    path: $.token
    group: true
    hashed: true
  - name: username
    in: request.header
    key: authorization
    decode: jwt
    path: $.details.username
    type: user
  - name: email
    in: request.body
    path: $.email
    hashed: true
  - name: product_id
    in: response.body
    path: $.product_id
sessions:
  fallback: [ip, user_agent, ja3]
`

// syncBuffer collects what the server writes while the test reads it.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes every JSON line written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a line is not JSON (%v): %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// waitFor waits until some decoded line satisfies ok.
func (b *syncBuffer) waitFor(t *testing.T, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for _, m := range b.lines(t) {
			if ok(m) {
				return m
			}
		}
		select {
		case <-b.changed:
		case <-deadline:
			t.Fatalf("no line with %s within 30s; output so far:\n%s", what, b.String())
			return nil
		}
	}
}

// server is apisessions started in-process with Run, on loopback ports.
type server struct {
	grpcAddr, httpAddr string
	stdout, stderr     *syncBuffer
	cancel             context.CancelFunc
	done               chan int
}

func startServer(t *testing.T, configYAML string) *server {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "apisessions.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1)}
	args := []string{"serve", "--config", cfgPath, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	go func() { s.done <- app.Run(ctx, args, s.stdout, s.stderr) }()
	ready := s.stderr.waitFor(t, `msg "ready"`, func(m map[string]any) bool { return m["msg"] == "ready" })
	s.grpcAddr, _ = ready["grpc_addr"].(string)
	s.httpAddr, _ = ready["http_addr"].(string)
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// stop shuts the server down as SIGTERM would and returns its exit status.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop within 30s")
		return -1
	}
}

func (s *server) client(t *testing.T) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// bufferedBodies is the mode a generated inline bootstrap uses when parameters read both bodies.
var bufferedBodies = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_BUFFERED_PARTIAL,
	ResponseBodyMode:   filterv3.ProcessingMode_BUFFERED_PARTIAL,
}

// streamedBodies is what an observability bootstrap uses: BUFFERED bodies are not sent there.
var streamedBodies = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_STREAMED,
	ResponseBodyMode:   filterv3.ProcessingMode_STREAMED,
}

func jwtWith(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".c2lnbmF0dXJl"
}

func exchange(id, method, path string, reqHeaders []traffic.Header, reqBody string, status int, respBody string) *traffic.Exchange {
	hs := append(protomsg.Pairs("user-agent", "curl/8.5.0"), reqHeaders...)
	if reqBody != "" {
		hs = append(hs, protomsg.Pairs("content-type", "application/json")...)
	}
	x := &traffic.Exchange{
		RequestID: id, Start: time.Now().UTC(), Method: method, Scheme: "https", Host: "api.example.com", Path: path,
		SourceAddress: "203.0.113.7:41000", RequestHeaders: hs, RequestBody: []byte(reqBody),
	}
	if status != 0 {
		x.ResponseSeen, x.Status = true, status
		if respBody != "" {
			x.ResponseHeaders = protomsg.Pairs("content-type", "application/json")
			x.ResponseBody = []byte(respBody)
		}
	}
	return x
}

// TestProcessorEndToEnd drives Envoy-shaped streams for each grouping example into the real
// server and checks the records it writes on stdout.
func TestProcessorEndToEnd(t *testing.T) {
	s := startServer(t, seedConfig)

	// The server answers on both ports.
	resp, err := http.Get("http://" + s.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz answered %d", resp.StatusCode)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health: %v %v, want SERVING", hr.GetStatus(), err)
	}
	client := extprocv3.NewExternalProcessorClient(conn)

	bearer := jwtWith(`{"sub":"932","details":{"username":"john-doe@company-001.com"}}`)
	steps := []struct {
		name string
		x    *traffic.Exchange
		o    protomsg.Options
	}{
		{"login returns the token", exchange("r-login", "POST", "/login", nil, `{"in":"bbb"}`, 200, `{"token":"aaa"}`), protomsg.Options{Mode: bufferedBodies}},
		{"token in a JSON body", exchange("r-body", "POST", "/api/cart", nil, `{"in":"ccc","token":"aaa","email":"john@example.com"}`, 200, `{"product_id":"p-77"}`), protomsg.Options{Mode: bufferedBodies}},
		{"token in the query, observability mode, chunked", exchange("r-query", "GET", "/api/items?token=aaa", nil, "", 200, `{"items":[]}`), protomsg.Options{Mode: streamedBodies, Observability: true, ChunkSize: 3}},
		{"PHP session cookie", exchange("r-cookie", "GET", "/account", protomsg.Pairs("cookie", "theme=dark; PHPSESSID=php-1"), "", 200, ""), protomsg.Options{}},
		{"bearer JWT", exchange("r-jwt", "GET", "/api/orders/42", protomsg.Pairs("authorization", "Bearer "+bearer), "", 200, ""), protomsg.Options{}},
		{"nothing but IP and user agent", exchange("r-anon", "GET", "/", nil, "", 404, ""), protomsg.Options{}},
	}
	for _, st := range steps {
		if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(st.x, st.o)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}

	// A stream Envoy resets after the request headers (client gone): a partial record.
	reset := exchange("r-reset", "GET", "/slow?token=aaa", nil, "", 0, "")
	rctx, rcancel := context.WithCancel(ctx)
	stream, err := client.Process(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(protomsg.Sequence(reset, protomsg.Options{})[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("answer to the request headers of the reset stream: %v", err)
	}
	rcancel()

	byID := map[string]map[string]any{}
	for _, id := range []string{"r-login", "r-body", "r-query", "r-cookie", "r-jwt", "r-anon", "r-reset"} {
		byID[id] = s.stdout.waitFor(t, "request "+id, func(m map[string]any) bool {
			return m["kind"] == "request" && m["request_id"] == id
		})
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("shutdown exit status %d, want 0", code)
	}

	key := func(id string) string {
		k, _ := byID[id]["key"].(map[string]any)
		return k["source"].(string) + ":" + k["name"].(string)
	}
	wantKeys := map[string]string{
		"r-login": "param:login_token", "r-body": "param:body_token", "r-query": "param:query_token",
		"r-cookie": "builtin:cookie:PHPSESSID", "r-jwt": "builtin:jwt:sub", "r-anon": "fallback:ip+user_agent",
		"r-reset": "param:query_token",
	}
	for id, want := range wantKeys {
		if got := key(id); got != want {
			t.Errorf("%s: grouping key %s, want %s", id, got, want)
		}
	}
	token := byID["r-login"]["session"]
	for _, id := range []string{"r-body", "r-query", "r-reset"} {
		if byID[id]["session"] != token {
			t.Errorf("%s: session %v, want the login's session %v (same token value)", id, byID[id]["session"], token)
		}
	}
	for _, id := range []string{"r-cookie", "r-jwt", "r-anon"} {
		if byID[id]["session"] == token {
			t.Errorf("%s: landed in the token session", id)
		}
	}
	if u := byID["r-jwt"]["user"]; u != "john-doe@company-001.com" {
		t.Errorf("r-jwt: user %v, want the JWT's details.username", u)
	}
	params, _ := byID["r-body"]["params"].(map[string]any)
	if e, _ := params["email"].(string); !strings.HasPrefix(e, "hmac:") || len(e) != len("hmac:")+32 {
		t.Errorf("r-body: hashed email exported as %q, want hmac:<32 hex>", e)
	}
	if p := params["product_id"]; p != "p-77" {
		t.Errorf("r-body: product_id %v, want p-77 from the response body", p)
	}
	if byID["r-reset"]["partial"] != true || byID["r-reset"]["status"] != float64(0) {
		t.Errorf("r-reset: partial %v status %v, want a partial record with status 0", byID["r-reset"]["partial"], byID["r-reset"]["status"])
	}
	if byID["r-anon"]["status"] != float64(404) || byID["r-anon"]["client_ip"] != "203.0.113.7" {
		t.Errorf("r-anon: status %v client_ip %v", byID["r-anon"]["status"], byID["r-anon"]["client_ip"])
	}
	out := s.stdout.String()
	for _, secret := range []string{"aaa", "john@example.com"} {
		if strings.Contains(out, `"`+secret+`"`) {
			t.Errorf("the hashed value %q appears in clear in the records", secret)
		}
	}

	// Shutdown ended every part with a final session record; the token session has four requests.
	final := s.stdout.waitFor(t, "the token session's final record", func(m map[string]any) bool {
		return m["kind"] == "session" && m["session"] == token && m["final"] == true
	})
	if final["requests"] != float64(4) {
		t.Errorf("token session: %v requests in its final record, want 4", final["requests"])
	}
}
