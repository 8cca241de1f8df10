package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// faultsConfig groups by the login token and writes records to a JSON lines file.
const faultsConfig = `
parameters:
  - name: body_token
    in: request.body
    path: $.token
    group: true
    hashed: true
sinks:
  - type: jsonl
    path: %DIR%/records.jsonl
`

// faultsExchange is one POST with a JSON body naming its session token.
func faultsExchange(id, token string) *traffic.Exchange {
	return &traffic.Exchange{
		RequestID: id, Start: time.Now().UTC(), Method: "POST", Scheme: "https", Host: "api.example.com", Path: "/api/cart",
		SourceAddress:  "192.0.2.10:40000",
		RequestHeaders: protomsg.Pairs("user-agent", "load/1", "content-type", "application/json"),
		RequestBody:    []byte(`{"token":"` + token + `","items":[1,2,3]}`),
		ResponseSeen:   true, Status: 200,
		ResponseHeaders: protomsg.Pairs("content-type", "application/json"),
		ResponseBody:    []byte(`{"ok":true}`),
	}
}

var faultsBuffered = &filterv3.ProcessingMode{
	RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseBodyMode: filterv3.ProcessingMode_BUFFERED,
}

var faultsStreamed = &filterv3.ProcessingMode{
	RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode: filterv3.ProcessingMode_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_STREAMED,
}

// TestFaultSIGTERMUnderLoad sends SIGTERM to the binary while workers open streams and a few
// streams are held open mid-request. The process must exit 0, finish the held streams, and
// every stream that ended OK must have its request record in the file, and every session its
// final session record.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		workers   = 8
		heldCount = 4
		sigAfter  = 400 // completed streams before SIGTERM
	)
	p := startFaultsProc(t, faultsConfig)
	client := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Held streams: request headers and body answered, response still to come.
	type heldStream struct {
		id     string
		stream extprocv3.ExternalProcessor_ProcessClient
		rest   []*extprocv3.ProcessingRequest
	}
	var held []heldStream
	for i := range heldCount {
		id := fmt.Sprintf("held-%d", i)
		msgs := protomsg.Sequence(faultsExchange(id, fmt.Sprintf("tok-held-%d", i)), protomsg.Options{Mode: faultsBuffered})
		st, err := client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:2] {
			if err := st.Send(m); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
		held = append(held, heldStream{id: id, stream: st, rest: msgs[2:]})
	}

	var (
		mu        sync.Mutex
		ok        []string
		completed atomic.Int64
		refused   atomic.Int64
		sigSent   = make(chan struct{})
		draining  = make(chan struct{}) // closed once a new stream was refused after SIGTERM
		drainOnce sync.Once
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := protomsg.Exchange(ctx, client, protomsg.Sequence(faultsExchange(id, fmt.Sprintf("tok-%d-%d", w, i%7)), protomsg.Options{Mode: faultsBuffered}))
				if err == nil {
					mu.Lock()
					ok = append(ok, id)
					mu.Unlock()
					if completed.Add(1) == sigAfter {
						close(sigSent)
					}
					continue
				}
				select {
				case <-sigSent:
					refused.Add(1)
					drainOnce.Do(func() { close(draining) })
					return
				default:
					t.Errorf("%s failed before SIGTERM: %v", id, err)
					return
				}
			}
		})
	}
	select {
	case <-sigSent:
	case <-ctx.Done():
		t.Fatal("the load did not reach the SIGTERM point")
	}
	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-draining:
	case <-ctx.Done():
		t.Fatal("no new stream was refused after SIGTERM")
	}
	// The server is draining; the held streams must still complete.
	for _, h := range held {
		for _, m := range h.rest {
			if err := h.stream.Send(m); err != nil {
				t.Fatalf("%s after SIGTERM: send: %v", h.id, err)
			}
			if _, err := h.stream.Recv(); err != nil {
				t.Fatalf("%s after SIGTERM: answer: %v", h.id, err)
			}
		}
		if err := h.stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := h.stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s after SIGTERM: end %v, want OK", h.id, err)
		}
		mu.Lock()
		ok = append(ok, h.id)
		mu.Unlock()
	}
	wg.Wait()
	code := p.wait(t, 20*time.Second)
	shutdown := time.Since(sigAt)
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}

	data, err := os.ReadFile(filepath.Join(p.dir, "records.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	requests := map[string]string{} // request id → session
	finals := map[string]bool{}
	lines, err := testutil.JSONLines(string(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range lines {
		switch m["kind"] {
		case "request":
			id, _ := m["request_id"].(string)
			s, _ := m["session"].(string)
			requests[id] = s
		case "session":
			if m["final"] == true {
				s, _ := m["session"].(string)
				finals[s] = true
			}
		}
	}
	missing := 0
	sessions := map[string]bool{}
	for _, id := range ok {
		s, found := requests[id]
		if !found {
			missing++
			if missing <= 5 {
				t.Errorf("stream %s ended OK but its record is not in the file", id)
			}
			continue
		}
		sessions[s] = true
	}
	if missing > 0 {
		t.Errorf("%d of %d completed streams have no record", missing, len(ok))
	}
	for s := range sessions {
		if !finals[s] {
			t.Errorf("session %s has no final session record", s)
		}
	}
	if n := bytes.Count(data, []byte("\n")); n != len(lines) {
		t.Errorf("%d lines but %d decode: a torn or corrupt line", n, len(lines))
	}
	if !strings.Contains(p.stderr.String(), `"msg":"shutdown complete"`) {
		t.Error("no shutdown complete line")
	}
	t.Logf("SIGTERM after %d streams; %d completed OK (%d held across SIGTERM), %d refused while draining; "+
		"%d request records, %d sessions with final records; exit 0 %s after SIGTERM",
		sigAfter, len(ok), heldCount, refused.Load(), len(requests), len(finals), shutdown.Round(time.Millisecond))
}

// TestFaultResetMidBody resets streams after part of the request body, as Envoy does when
// the client goes away: each yields a partial record, nothing is counted as a stream error,
// and the server keeps serving.
func TestFaultResetMidBody(t *testing.T) {
	t.Parallel()
	const resets = 50
	p := startFaultsProc(t, "parameters:\n  - {name: body_token, in: request.body, path: $.token, group: true, hashed: true}\n")
	client := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, resets)
	for i := range resets {
		wg.Go(func() {
			x := faultsExchange(fmt.Sprintf("reset-%d", i), "tok-reset")
			msgs := protomsg.Sequence(x, protomsg.Options{Mode: faultsStreamed, ChunkSize: len(x.RequestBody) / 3})
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			st, err := client.Process(sctx)
			if err != nil {
				errs <- err
				return
			}
			for _, m := range msgs[:2] { // headers and the first body chunk
				if err := st.Send(m); err != nil {
					errs <- err
					return
				}
				if _, err := st.Recv(); err != nil {
					errs <- fmt.Errorf("%s: %w", x.RequestID, err)
					return
				}
			}
			scancel()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range resets {
		id := fmt.Sprintf("reset-%d", i)
		rec := p.stdout.WaitFor(t, "record "+id, func(m map[string]any) bool { return m["request_id"] == id })
		if rec["partial"] != true || rec["status"] != float64(0) {
			t.Errorf("%s: partial %v status %v, want a partial record without status", id, rec["partial"], rec["status"])
		}
	}
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(faultsExchange("after-resets", "tok-after"), protomsg.Options{Mode: faultsBuffered})); err != nil {
		t.Fatalf("a stream after the resets: %v", err)
	}
	p.stdout.WaitFor(t, "record after-resets", func(m map[string]any) bool { return m["request_id"] == "after-resets" && m["partial"] != true })
	for _, series := range []string{"apisessions_extproc_stream_errors_total", "apisessions_extproc_panics_total"} {
		if v := p.metric(t, series); v != 0 {
			t.Errorf("%s = %v after resets, want 0 (a reset is a normal end)", series, v)
		}
	}
}

// TestFaultMalformedAndOversized plays hostile messages, each on its own stream, next to a
// stream held open; only the offending stream may end, and the server keeps serving.
func TestFaultMalformedAndOversized(t *testing.T) {
	t.Parallel()
	p := startFaultsProc(t, "server:\n  max_message_bytes: 1048576\n")
	client := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	headers := func(extra ...*corev3.HeaderValue) *extprocv3.ProcessingRequest {
		m := protomsg.RequestHeaders(protomsg.Pairs(":method", "GET", ":scheme", "https", ":authority", "api.example.com", ":path", "/x"), true)
		m.GetRequestHeaders().Headers.Headers = append(m.GetRequestHeaders().Headers.Headers, extra...)
		return m
	}
	many := make([]*corev3.HeaderValue, 10_000)
	for i := range many {
		many[i] = &corev3.HeaderValue{Key: fmt.Sprintf("x-h-%d", i), RawValue: []byte("v")}
	}
	big := faultsExchange("too-big", "tok")
	big.RequestBody = bytes.Repeat([]byte("A"), 2<<20)
	bigMsgs := protomsg.Sequence(big, protomsg.Options{Mode: faultsBuffered})
	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
		code codes.Code
	}{
		{name: "a message without a request case", msgs: []*extprocv3.ProcessingRequest{headers(), {}}, code: codes.InvalidArgument},
		{name: "a header with both value and raw_value", msgs: []*extprocv3.ProcessingRequest{headers(&corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("2")})}, code: codes.OK},
		{name: "ten thousand headers", msgs: []*extprocv3.ProcessingRequest{headers(many...)}, code: codes.OK},
		{name: "a 512 KiB header value", msgs: []*extprocv3.ProcessingRequest{headers(&corev3.HeaderValue{Key: "cookie", RawValue: bytes.Repeat([]byte("a=b;"), 128<<10)})}, code: codes.OK},
		{name: "response headers before request headers", msgs: []*extprocv3.ProcessingRequest{protomsg.ResponseHeaders(protomsg.Pairs(":status", "200"), true)}, code: codes.OK},
		{name: "binary bytes as a JSON body", msgs: protomsg.Sequence(&traffic.Exchange{Method: "POST", Scheme: "https", Host: "api.example.com", Path: "/j",
			RequestHeaders: protomsg.Pairs("content-type", "application/json"), RequestBody: []byte{'{', 0xff, 0x00, '"', 0xc3}}, protomsg.Options{Mode: faultsBuffered}), code: codes.OK},
		{name: "a 2 MiB body over max_message_bytes", msgs: bigMsgs, code: codes.ResourceExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A neighbour held open across the hostile stream must be unaffected.
			nb := protomsg.Sequence(faultsExchange("neighbour-"+tc.name, "tok-n"), protomsg.Options{Mode: faultsBuffered})
			st, err := client.Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(nb[0]); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			_, err = protomsg.Exchange(ctx, client, tc.msgs)
			if status.Code(err) != tc.code {
				t.Errorf("%s: stream ended with %v, want %v", tc.name, err, tc.code)
			}
			for _, m := range nb[1:] {
				if err := st.Send(m); err != nil {
					t.Fatalf("%s: neighbour send: %v", tc.name, err)
				}
				if _, err := st.Recv(); err != nil {
					t.Fatalf("%s: neighbour answer: %v", tc.name, err)
				}
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("%s: the neighbour stream ended with %v, want OK", tc.name, err)
			}
		})
	}
	if _, err := protomsg.Exchange(ctx, client, protomsg.Sequence(faultsExchange("after-hostile", "tok"), protomsg.Options{Mode: faultsBuffered})); err != nil {
		t.Fatalf("a stream after the hostile ones: %v", err)
	}
	p.stdout.WaitFor(t, "record after-hostile", func(m map[string]any) bool { return m["request_id"] == "after-hostile" })
	want := []struct {
		series  string
		atLeast float64
		exact   bool
	}{
		{series: "apisessions_extproc_panics_total", atLeast: 0, exact: true},
		{series: "apisessions_extproc_protocol_errors_total", atLeast: 3},
		{series: "apisessions_extproc_headers_dropped_total", atLeast: 10_000 - 1024},
	}
	for _, w := range want {
		v := p.metric(t, w.series)
		if (w.exact && v != w.atLeast) || v < w.atLeast {
			t.Errorf("%s = %v, want %v%s", w.series, v, w.atLeast, map[bool]string{true: "", false: " or more"}[w.exact])
		}
	}
	resp, err := http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz %d after hostile streams, want 200", resp.StatusCode)
	}
}
