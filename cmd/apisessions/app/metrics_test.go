package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// secretsConfig hashes every parameter, so no value it reads may appear anywhere but hashed.
const secretsConfig = `
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
  - name: custom_cookie
    in: request.cookie
    key: shop_sid
    group: true
    hashed: true
  - name: api_key
    in: request.header
    key: x-api-key
    hashed: true
  - name: email
    in: request.body
    path: $.email
    hashed: true
sinks:
  - type: jsonl
    path: "-"
`

// secretMark is in every secret value below, so one search finds any of them.
const secretMark = "SECRET"

var bufferedMode = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_BUFFERED,
	ResponseBodyMode:   filterv3.ProcessingMode_BUFFERED,
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apisessions.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dialPlain(t *testing.T, addr string) extprocv3.ExternalProcessorClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// secretExchanges carry a secret in each place a hashed parameter reads, and in a bearer token.
func secretExchanges() []*traffic.Exchange {
	now := time.Now().UTC()
	mk := func(id, method, path string, hs []traffic.Header, body string, status int, respBody string) *traffic.Exchange {
		x := &traffic.Exchange{
			RequestID: id, Start: now, Method: method, Scheme: "https", Host: "shop.example.com", Path: path,
			SourceAddress:  "198.51.100.4:5000",
			RequestHeaders: append(protomsg.Pairs("user-agent", "test/1", "content-type", "application/json"), hs...),
			RequestBody:    []byte(body), ResponseSeen: true, Status: status,
			ResponseHeaders: protomsg.Pairs("content-type", "application/json"), ResponseBody: []byte(respBody),
		}
		return x
	}
	return []*traffic.Exchange{
		mk("log-1", "POST", "/login", nil, `{"email":"mail-SECRET@example.com"}`, 200, `{"token":"tok-SECRET-login"}`),
		mk("log-2", "GET", "/items?token=qtok-SECRET-91b2", protomsg.Pairs("x-api-key", "key-SECRET-a9d0"), "", 200, `{}`),
		mk("log-3", "GET", "/cart", protomsg.Pairs("cookie", "theme=dark; shop_sid=cookie-SECRET-44c1"), "", 200, `{}`),
		mk("log-4", "GET", "/orders", protomsg.Pairs("authorization", "Bearer authz-SECRET-5e6f"), "", 401, `{}`),
	}
}

// TestNoValuesInLogsOrMetrics runs a real server at debug level through streams that carry
// secrets in every place a hashed parameter reads (and in broken streams), then searches the
// log, the metrics page and the records for them.
func TestNoValuesInLogsOrMetrics(t *testing.T) {
	t.Parallel()
	r := startServe(t, "--config", writeConfig(t, secretsConfig), "--log-level", "debug")
	client := dialPlain(t, r.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, x := range secretExchanges() {
		if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(x, protomsg.Options{Mode: bufferedMode})); err != nil {
			t.Fatalf("%s: %v", x.RequestID, err)
		}
	}
	// Broken streams log at debug: a header with both value forms, a message without a case,
	// and a reset in the middle of a body.
	bad := protomsg.RequestHeaders(protomsg.Pairs(":method", "GET", ":path", "/x?token=qtok-SECRET-bad", ":authority", "shop.example.com"), true)
	bad.GetRequestHeaders().Headers.Headers = append(bad.GetRequestHeaders().Headers.Headers,
		&corev3.HeaderValue{Key: "x-api-key", Value: "key-SECRET-both", RawValue: []byte("key-SECRET-both")})
	if _, err := protomsg.Exchange(ctx, client, []*extprocv3.ProcessingRequest{bad}); err != nil {
		t.Fatalf("header with both value forms: %v", err)
	}
	if _, err := protomsg.Exchange(ctx, client, []*extprocv3.ProcessingRequest{bad, {}}); err == nil {
		t.Fatal("a message without a request case ended the stream with OK, want InvalidArgument")
	}
	resetMidBody(ctx, t, client, secretExchanges()[0])

	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("serve returned %d, want 0", code)
	}
	for name, text := range map[string]string{"the log": r.stderr.String(), "the metrics page": string(page), "the records": r.stdout.String()} {
		if i := strings.Index(text, secretMark); i >= 0 {
			t.Errorf("%s holds a clear value near %q", name, text[max(0, i-80):min(len(text), i+40)])
		}
	}
	if !strings.Contains(r.stderr.String(), `"level":"DEBUG"`) {
		t.Error("no debug line was written, so the search above proves little; was --log-level debug applied?")
	}
	if !strings.Contains(r.stdout.String(), `"request_id":"log-4"`) {
		t.Error("the records lack log-4; did the streams reach the engine?")
	}
}

// resetMidBody opens a stream, sends the request headers and half of the body, then cancels as
// Envoy does when the client goes away.
func resetMidBody(ctx context.Context, t *testing.T, client extprocv3.ExternalProcessorClient, x *traffic.Exchange) {
	t.Helper()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := client.Process(sctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := protomsg.Sequence(x, protomsg.Options{Mode: &filterv3.ProcessingMode{
		RequestBodyMode: filterv3.ProcessingMode_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
	}, ChunkSize: max(1, len(x.RequestBody)/2)})
	for _, m := range msgs[:2] {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("answer before the reset: %v", err)
		}
	}
	scancel()
}

// TestMetricsEndpoint checks that /metrics serves the components' counters after traffic.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	r := startServe(t, "--config", writeConfig(t, secretsConfig))
	client := dialPlain(t, r.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xs := secretExchanges()
	for _, x := range xs {
		if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(x, protomsg.Options{Mode: bufferedMode})); err != nil {
			t.Fatalf("%s: %v", x.RequestID, err)
		}
	}
	obs := protomsg.Sequence(xs[1], protomsg.Options{Observability: true})
	if _, err := protomsg.Exchange(ctx, client, obs); err != nil {
		t.Fatalf("observability stream: %v", err)
	}

	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	page := string(body)
	n := len(xs) + 1
	tests := []struct {
		name, line string
	}{
		{name: "streams", line: fmt.Sprintf("apisessions_extproc_streams_total %d", n)},
		{name: "no stream open", line: "apisessions_extproc_streams_open 0"},
		{name: "inline request headers", line: fmt.Sprintf(`apisessions_extproc_messages_total{mode="inline",phase="request_headers"} %d`, len(xs))},
		{name: "observability request headers", line: `apisessions_extproc_messages_total{mode="observability",phase="request_headers"} 1`},
		{name: "inline request bodies", line: `apisessions_extproc_messages_total{mode="inline",phase="request_body"} 1`},
		{name: "engine requests", line: fmt.Sprintf("apisessions_sessions_requests_total %d", n)},
		{name: "observe timings", line: fmt.Sprintf(`apisessions_sessions_processing_duration_seconds_count{op="observe"} %d`, n)},
		{name: "live parts", line: "apisessions_sessions_active_parts 4"},
		{name: "records accepted by the stdout sink", line: fmt.Sprintf(`apisessions_sink_records_total{outcome="accepted",sink="jsonl"} %d`, n)},
		{name: "nothing dropped", line: `apisessions_sink_records_total{outcome="dropped",sink="jsonl"} 0`},
		{name: "build info", line: `apisessions_build_info{commit=`},
		{name: "process memory", line: "process_resident_memory_bytes "},
		{name: "go runtime", line: "go_goroutines "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(page, tc.line) {
				t.Errorf("%s: /metrics lacks %q", tc.name, tc.line)
			}
		})
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", page)
	}
}
