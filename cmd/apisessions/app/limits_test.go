package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// TestStreamBoundsFromConfig checks that server.max_streams, server.stream_idle_timeout and
// traffic.body_budget_bytes reach the server, and that their counters reach /metrics.
func TestStreamBoundsFromConfig(t *testing.T) {
	t.Parallel()
	r := startServe(t, "--config", writeConfig(t, `server:
  max_streams: 2
  stream_idle_timeout: 2s
traffic:
  max_body_bytes: 65536
  body_budget_bytes: 65536
parameters:
  - name: user
    in: request.body
    path: $.user
`))
	client := dialPlain(t, r.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	headers := protomsg.RequestHeaders(protomsg.Pairs(":authority", "api.example.com", ":method", "POST", ":path", "/upload",
		"content-type", "application/json"), false)
	chunk := protomsg.RequestBody(make([]byte, 60<<10), false)

	// Two streams each send 60 KiB and stall: the first body fits the budget, the second does not.
	a := stalledStream(ctx, t, client, headers, chunk)
	b := stalledStream(ctx, t, client, headers, chunk)
	held := scrape(t, r.httpAddr)
	refused, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = refused.Send(headers)
	if _, err := refused.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third stream past max_streams: %v, want ResourceExhausted", err)
	}
	// Both stalled streams end with status OK once idle for stream_idle_timeout.
	for name, s := range map[string]extprocv3.ExternalProcessor_ProcessClient{"first": a, "second": b} {
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("the %s stalled stream ended with %v, want status OK", name, err)
		}
	}
	after := scrape(t, r.httpAddr)
	for _, tc := range []struct{ name, page, line string }{
		{"the body that fits is held", held, "apisessions_extproc_body_buffer_bytes 61440"},
		{"the body over budget is counted", after, `apisessions_extproc_bodies_over_budget_total{reason="body_budget"} 1`},
		{"the stream past max_streams is counted", after, `apisessions_extproc_streams_refused_total{reason="max_streams"} 1`},
		{"both idle streams are counted", after, "apisessions_extproc_stream_idle_timeouts_total 2"},
	} {
		if !strings.Contains(tc.page, tc.line+"\n") {
			t.Errorf("%s: /metrics lacks %q", tc.name, tc.line)
		}
	}
}

// stalledStream opens a stream, sends msgs, each answered, and sends nothing more.
func stalledStream(ctx context.Context, t *testing.T, client extprocv3.ExternalProcessorClient, msgs ...*extprocv3.ProcessingRequest) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	s, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if err := s.Send(m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	return s
}

func scrape(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
