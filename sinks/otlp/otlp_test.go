package otlp_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/otlp"
)

const secret = "Bearer otlp-secret-token"

// receiver is an OTLP logs receiver, over gRPC and HTTP: it keeps what it is sent and answers
// with fail when set.
type receiver struct {
	collogspb.UnimplementedLogsServiceServer
	partial  int64 // records the receiver says it refused while accepting the batch
	mu       sync.Mutex
	got      []*collogspb.ExportLogsServiceRequest
	auth     []string
	failGRPC codes.Code
	failHTTP int
}

func (r *receiver) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	r.auth = append(r.auth, md.Get("authorization")...)
	if r.failGRPC != codes.OK {
		return nil, status.Error(r.failGRPC, "refused by the test")
	}
	r.got = append(r.got, req)
	if r.partial > 0 {
		return &collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{
			RejectedLogRecords: r.partial, ErrorMessage: "record too large"}}, nil
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	var m collogspb.ExportLogsServiceRequest
	if req.URL.Path != "/v1/logs" || proto.Unmarshal(b, &m) != nil {
		http.Error(w, "not an OTLP logs export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	if r.failHTTP != 0 {
		http.Error(w, "refused by the test", r.failHTTP)
		return
	}
	r.got = append(r.got, &m)
	resp := &collogspb.ExportLogsServiceResponse{}
	if r.partial > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: r.partial, ErrorMessage: "record too large"}
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// logs are the log records received, with their resource's attributes.
func (r *receiver) logs() (res map[string]string, recs []*logspb.LogRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res = map[string]string{}
	for _, req := range r.got {
		for _, rl := range req.GetResourceLogs() {
			for _, kv := range rl.GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, sl := range rl.GetScopeLogs() {
				recs = append(recs, sl.GetLogRecords()...)
			}
		}
	}
	return res, recs
}

func attr(lr *logspb.LogRecord, key string) *commonpb.AnyValue {
	for _, kv := range lr.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

func startGRPC(t *testing.T, r *receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(gs, r)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return "http://" + ln.Addr().String()
}

func newSink(t *testing.T, endpoint, protocol, compression string) *otlp.Sink {
	t.Helper()
	c := config.DefaultSink(otlp.Type)
	c.Timeout = config.Duration(5 * time.Second)
	o := otlp.DefaultConfig()
	o.Endpoint, o.Protocol, o.Compression = endpoint, protocol, compression
	o.Headers = map[string]string{"authorization": secret}
	o.ResourceAttributes = map[string]string{"deployment.environment": "test"}
	sk, err := otlp.New(c, *o, sinks.Settings{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = sk.Close(context.Background()) })
	return sk
}

func batch() []record.Record {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	return []record.Record{
		&record.Request{Kind: record.KindRequest, Session: "s_1", Part: "2026-12-04", RequestID: "r1", Time: record.At(at),
			Method: "POST", Host: "api.example", Path: "/login", Route: "/login", Status: 403, ClientIP: "203.0.113.7",
			User: "alice", Malicious: true, Key: record.Key{Source: record.SourceParam, Name: "token"}},
		&record.Session{Kind: record.KindSession, Session: "s_1", Part: "2026-12-04", FirstSeen: record.At(at),
			LastSeen: record.At(at.Add(time.Second)), Requests: 1, Malicious: 1, Final: true, EndReason: record.EndIdle},
	}
}

// TestExportsLogRecords sends a request and a session record over each protocol and reads them
// back from the receiver: resource, event names, severities, attributes, the JSON body, times,
// the credentials header.
func TestExportsLogRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ protocol, compression string }{{"grpc", "gzip"}, {"grpc", "none"}, {"http", "gzip"}, {"http", "none"}} {
		t.Run(tc.protocol+"/"+tc.compression, func(t *testing.T) {
			t.Parallel()
			r := &receiver{}
			endpoint := startGRPC(t, r)
			if tc.protocol == "http" {
				ts := httptest.NewServer(r)
				t.Cleanup(ts.Close)
				endpoint = ts.URL
			}
			sk := newSink(t, endpoint, tc.protocol, tc.compression)
			if err := sk.Write(context.Background(), batch()); err != nil {
				t.Fatalf("Write: %v", err)
			}
			res, recs := r.logs()
			if res["service.name"] != "apisessions" || res["deployment.environment"] != "test" {
				t.Errorf("resource attributes %v; want service.name apisessions and deployment.environment test", res)
			}
			if len(recs) != 2 {
				t.Fatalf("%d log records received; want 2", len(recs))
			}
			req, ses := recs[0], recs[1]
			if req.GetEventName() != "apisessions.request" || ses.GetEventName() != "apisessions.session" {
				t.Errorf("event names %q, %q", req.GetEventName(), ses.GetEventName())
			}
			if req.GetSeverityNumber() != logspb.SeverityNumber_SEVERITY_NUMBER_WARN || attr(req, "apisessions.malicious").GetBoolValue() != true {
				t.Errorf("a malicious request: severity %v, malicious %v; want WARN and true", req.GetSeverityNumber(), attr(req, "apisessions.malicious"))
			}
			for key, want := range map[string]string{"session.id": "s_1", "apisessions.part": "2026-12-04", "http.request.method": "POST",
				"http.route": "/login", "client.address": "203.0.113.7", "user.name": "alice", "apisessions.key": "param:token"} {
				if got := attr(req, key).GetStringValue(); got != want {
					t.Errorf("request attribute %s = %q; want %q", key, got, want)
				}
			}
			if attr(req, "http.response.status_code").GetIntValue() != 403 {
				t.Errorf("status attribute %v; want 403", attr(req, "http.response.status_code"))
			}
			if time.Unix(0, int64(req.GetTimeUnixNano())).UTC() != time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC) {
				t.Errorf("request time %d; want the request's start", req.GetTimeUnixNano())
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(req.GetBody().GetStringValue()), &body); err != nil || body["kind"] != "request" || body["request_id"] != "r1" {
				t.Errorf("request body %q; want the record's JSON", req.GetBody().GetStringValue())
			}
			if attr(ses, "apisessions.requests").GetIntValue() != 1 || !attr(ses, "apisessions.final").GetBoolValue() || attr(ses, "apisessions.end_reason").GetStringValue() != "idle" {
				t.Errorf("session attributes %v", ses.GetAttributes())
			}
			r.mu.Lock()
			auth := strings.Join(r.auth, ",")
			r.mu.Unlock()
			if auth != secret {
				t.Errorf("authorization sent %q; want the configured header", auth)
			}
		})
	}
}

// TestRefusals: what the receiver says is worth retrying comes back as a plain error, for the
// pipeline to retry and spool; a final refusal is permanent. Header values never show.
func TestRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		code      codes.Code
		http      int
		permanent bool
	}{
		{name: "grpc unavailable", code: codes.Unavailable},
		{name: "grpc resource exhausted", code: codes.ResourceExhausted},
		{name: "grpc invalid argument", code: codes.InvalidArgument, permanent: true},
		{name: "grpc unauthenticated", code: codes.Unauthenticated, permanent: true},
		{name: "http 503", http: http.StatusServiceUnavailable},
		{name: "http 429", http: http.StatusTooManyRequests},
		{name: "http 400", http: http.StatusBadRequest, permanent: true},
		{name: "http 401", http: http.StatusUnauthorized, permanent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &receiver{failGRPC: tc.code, failHTTP: tc.http}
			endpoint, protocol := startGRPC(t, r), "grpc"
			if tc.http != 0 {
				ts := httptest.NewServer(r)
				t.Cleanup(ts.Close)
				endpoint, protocol = ts.URL, "http"
			}
			sk := newSink(t, endpoint, protocol, "gzip")
			err := sk.Write(context.Background(), batch())
			if err == nil {
				t.Fatal("Write succeeded against a refusing receiver")
			}
			if sinks.IsPermanent(err) != tc.permanent {
				t.Errorf("Write: %v; permanent %v, want %v", err, sinks.IsPermanent(err), tc.permanent)
			}
			if strings.Contains(err.Error(), "otlp-secret-token") {
				t.Errorf("the error shows a header value: %v", err)
			}
			// The receiver recovers: the same batch goes through.
			r.mu.Lock()
			r.failGRPC, r.failHTTP = codes.OK, 0
			r.mu.Unlock()
			if err := sk.Write(context.Background(), batch()); err != nil {
				t.Errorf("Write after recovery: %v", err)
			}
			if _, recs := r.logs(); len(recs) != 2 {
				t.Errorf("%d records after recovery; want 2", len(recs))
			}
		})
	}
}

// TestReceiverDown: a receiver that is not there fails the write, to be retried; it does not
// fail New.
func TestReceiverDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, protocol := range []string{"grpc", "http"} {
		sk := newSink(t, "http://"+addr, protocol, "gzip")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := sk.Write(ctx, batch())
		cancel()
		if err == nil || sinks.IsPermanent(err) {
			t.Errorf("%s: Write to a closed port: %v; want an error worth retrying", protocol, err)
		}
	}
}

// TestThroughThePipeline: records emitted while the receiver refuses (Unavailable) wait,
// retried, and all arrive once it recovers, in order; a final refusal goes to the rejects file.
func TestThroughThePipeline(t *testing.T) {
	t.Parallel()
	const n = 120
	r := &receiver{failGRPC: codes.Unavailable}
	endpoint := startGRPC(t, r)
	c := config.DefaultSink(otlp.Type)
	c.BatchSize, c.FlushInterval = 20, config.Duration(time.Millisecond)
	c.Retry = config.Retry{InitialInterval: config.Duration(time.Millisecond), MaxInterval: config.Duration(5 * time.Millisecond)}
	o := otlp.DefaultConfig()
	o.Endpoint = endpoint
	c.Options = o
	sk, err := otlp.New(c, *o, sinks.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := sinks.NewOutput(c, t.TempDir(), sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := sinks.NewPipeline(nil, []sinks.Output{out})
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i := range n {
		p.Emit(&record.Request{Kind: record.KindRequest, Session: "s_1", Part: "2026-12-04", RequestID: strconv.Itoa(i), Time: record.At(at)})
	}
	for deadline := time.Now().Add(10 * time.Second); p.Stats()[0].Retried < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retries while the receiver refuses: %+v", p.Stats()[0])
		}
	}
	r.mu.Lock()
	r.failGRPC = codes.OK
	r.mu.Unlock()
	// What failed waits in the spool and is sent again from it, oldest first.
	for deadline := time.Now().Add(20 * time.Second); p.Stats()[0].Delivered < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not all delivered after the receiver recovered: %+v", p.Stats()[0])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, recs := r.logs()
	if len(recs) != n {
		t.Fatalf("%d log records received; want all %d", len(recs), n)
	}
	for i, lr := range recs {
		if got := attr(lr, "http.request.id").GetStringValue(); got != strconv.Itoa(i) {
			t.Fatalf("record %d has request id %s; want them in order", i, got)
		}
	}
	if st := p.Stats()[0]; st.Delivered != n || st.Retried < 3 {
		t.Errorf("stats %+v; want all %d delivered after retries", st, n)
	}
}

// TestConfigProblems: the keys' checks name the file, line, key and fix, and never echo a
// secret. It reads a header value from the environment, so it does not run in parallel.
func TestConfigProblems(t *testing.T) {
	t.Setenv("OTLP_TOK", "line\nbreak-secret")
	const f = "apisessions.yaml"
	text := "sinks:\n" +
		"  - type: otlp\n" +
		"  - {type: otlp, endpoint: \"https://u:pw@c:4317\"}\n" +
		"  - {type: otlp, endpoint: \"collector:4317\"}\n" +
		"  - {type: otlp, endpoint: \"https://c:4317/v1/logs\"}\n" +
		"  - {type: otlp, endpoint: \"https://c:4318\", protocol: thrift, compression: zstd}\n" +
		"  - {type: otlp, endpoint: \"https://c:4317\", headers: {authorization: \"${OTLP_TOK}\"}}\n" +
		"  - {type: otlp, endpoint: \"http://c:4317\", tls: {ca_file: ca.pem}}\n" +
		"  - {type: otlp, endpoint: \"https://c:4318/v1/logs\", protocol: http}\n"
	want := []string{
		f + `:2: sinks[0].endpoint: is missing; write the receiver's URL, e.g. https://otel-collector:4317`,
		f + `:3: sinks[1].endpoint: holds a user name or password; send credentials in headers instead, e.g. authorization: "Bearer ${OTLP_TOKEN}"`,
		f + `:4: sinks[2].endpoint: "collector:4317" is not an http or https URL; write e.g. https://otel-collector:4317 (http:// for plaintext)`,
		f + `:5: sinks[3].endpoint: a gRPC endpoint has no path; write the scheme, host and port only, e.g. https://otel-collector:4317`,
		f + `:6: sinks[4].protocol: "thrift" is not an OTLP protocol; use grpc or http`,
		f + `:6: sinks[4].compression: "zstd" is not a compression; use gzip or none`,
		f + `:7: sinks[5].headers.authorization: the value holds a line break or NUL, which cannot be sent in a header; remove it`,
		f + `:8: sinks[6].tls: applies to https endpoints only; use an https endpoint or remove tls`,
	}
	got := testutil.ConfigProblems(t, text, otlp.Factory.ConfigType())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems differ (-want +got):\n%s", diff)
	}
	if j := strings.Join(got, "\n"); strings.Contains(j, "secret") || strings.Contains(j, "pw@") {
		t.Error("the problems echo a credential")
	}
}

// TestPartialSuccess: records a receiver refuses while accepting the batch are failed for good
// (counted, not sent again); the others are delivered.
func TestPartialSuccess(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"grpc", "http"} {
		r := &receiver{partial: 1}
		endpoint := startGRPC(t, r)
		if protocol == "http" {
			ts := httptest.NewServer(r)
			t.Cleanup(ts.Close)
			endpoint = ts.URL
		}
		sk := newSink(t, endpoint, protocol, "gzip")
		err := sk.Write(context.Background(), batch())
		var pe *sinks.PartialError
		if !errors.As(err, &pe) || pe.Failed != 1 || !sinks.IsPermanent(err) || !strings.Contains(err.Error(), "record too large") {
			t.Errorf("%s: Write after a partial success: %v; want a permanent partial error of 1 record", protocol, err)
		}
	}
}
