package webhook_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/spool"
	"github.com/apisessions/apisessions/sinks/webhook"
)

const secret = "Bearer s3cr3t-token"

// server is a webhook endpoint that decodes what it receives and answers from a script.
type server struct {
	t      *testing.T
	mu     sync.Mutex
	got    []map[string]any // records received and accepted, in order
	hdr    []http.Header
	answer func(n int) (int, http.Header) // n counts requests from 0
	reqs   int
	total  chan int // receives the number of records accepted after each accepted request
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := s.reqs
	s.reqs++
	s.hdr = append(s.hdr, r.Header.Clone())
	s.mu.Unlock()
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.t.Errorf("body is not gzip: %v", err)
			w.WriteHeader(500)
			return
		}
		body = zr
	}
	var recs []map[string]any
	if err := json.NewDecoder(body).Decode(&recs); err != nil {
		s.t.Errorf("body is not a JSON array: %v", err)
	}
	code, h := 200, http.Header(nil)
	if s.answer != nil {
		code, h = s.answer(n)
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	if code/100 == 2 {
		s.mu.Lock()
		s.got = append(s.got, recs...)
		total := len(s.got)
		s.mu.Unlock()
		if s.total != nil {
			s.total <- total
		}
	}
}

func (s *server) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.got {
		out = append(out, r["request_id"].(string))
	}
	return out
}

func reqs(n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = &record.Request{Session: "s_" + strconv.Itoa(i%3), RequestID: strconv.Itoa(i)}
	}
	return out
}

func sinkConfig(url string) config.Sink {
	c := config.DefaultSink(webhook.Type)
	c.Name = "siem"
	o := webhook.DefaultConfig()
	o.URL = url
	o.Headers = map[string]string{"Authorization": secret, "X-Tenant": "t1"}
	c.Options = o
	return c
}

// options returns the webhook keys of c, for a test to change.
func options(c config.Sink) *webhook.Config { return c.Options.(*webhook.Config) }

func newSink(t *testing.T, c config.Sink) *webhook.Sink {
	t.Helper()
	sk, err := webhook.New(c, *options(c), sinks.Settings{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { sk.Close(context.Background()) })
	return sk
}

func TestPostsBatches(t *testing.T) {
	t.Parallel()
	for _, gz := range []bool{true, false} {
		t.Run("gzip="+strconv.FormatBool(gz), func(t *testing.T) {
			t.Parallel()
			srv := &server{t: t}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c := sinkConfig(ts.URL + "/ingest?token=q")
			options(c).Gzip = gz
			sk := newSink(t, c)
			batch := append(reqs(3), &record.Session{Session: "s_0", Part: "2026-11-22", Requests: 2})
			if err := sk.Write(context.Background(), batch); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := srv.got; len(got) != 4 || got[0]["kind"] != "request" || got[3]["kind"] != "session" || got[2]["request_id"] != "2" {
				t.Errorf("server received %v, want 3 requests then a session, kinds filled in", got)
			}
			h := srv.hdr[0]
			if h.Get("Authorization") != secret || h.Get("X-Tenant") != "t1" || h.Get("Content-Type") != "application/json" {
				t.Errorf("request headers %v lack the configured ones or the JSON content type", h)
			}
			if (h.Get("Content-Encoding") == "gzip") != gz {
				t.Errorf("Content-Encoding = %q with gzip %v", h.Get("Content-Encoding"), gz)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name          string
		code          int
		header        http.Header
		wantPermanent bool
		wantDelay     time.Duration // -1: no Retry-After
	}{
		{name: "204 accepts", code: 204, wantDelay: -1},
		{name: "429 with seconds", code: 429, header: http.Header{"Retry-After": {"7"}}, wantDelay: 7 * time.Second},
		{name: "503 with an HTTP date", code: 503, header: http.Header{"Retry-After": {date}}, wantDelay: 90 * time.Second},
		{name: "503 with a day-long delay is capped", code: 503, header: http.Header{"Retry-After": {"86400"}}, wantDelay: sinks.MaxRetryAfter},
		{name: "500 without a delay", code: 500, wantDelay: -1},
		{name: "408 is retried", code: 408, header: http.Header{"Retry-After": {"garbage"}}, wantDelay: -1},
		{name: "400 is refused for good", code: 400, wantPermanent: true, wantDelay: -1},
		{name: "401 is refused for good", code: 401, wantPermanent: true, wantDelay: -1},
		{name: "a redirect is not followed", code: 302, header: http.Header{"Location": {"http://elsewhere.invalid/"}}, wantPermanent: true, wantDelay: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &server{t: t, answer: func(int) (int, http.Header) { return tc.code, tc.header }}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			err := newSink(t, sinkConfig(ts.URL+"/in?token=q-secret")).Write(context.Background(), reqs(2))
			if tc.code/100 == 2 {
				if err != nil {
					t.Fatalf("Write = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("status %d: Write = nil, want an error", tc.code)
			}
			if sinks.IsPermanent(err) != tc.wantPermanent {
				t.Errorf("status %d: permanent = %v, want %v (%v)", tc.code, sinks.IsPermanent(err), tc.wantPermanent, err)
			}
			d, ok := sinks.RetryAfterDelay(err)
			switch {
			case tc.wantDelay < 0 && ok:
				t.Errorf("status %d: delay %v, want none", tc.code, d)
			case tc.wantDelay >= 0 && (!ok || d > tc.wantDelay || d < tc.wantDelay-2*time.Second):
				t.Errorf("status %d: delay %v (%v), want about %v", tc.code, d, ok, tc.wantDelay)
			}
			if msg := err.Error(); strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "q-secret") {
				t.Errorf("error %q shows a header value or the query", msg)
			}
		})
	}
}

func TestUnencodableRecordsAreLeftOut(t *testing.T) {
	t.Parallel()
	srv := &server{t: t}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	batch := reqs(3)
	batch[1].(*record.Request).DurationMS = math.NaN()
	err := newSink(t, sinkConfig(ts.URL)).Write(context.Background(), batch)
	pe, ok := errors.AsType[*sinks.PartialError](err)
	if !ok || pe.Failed != 1 || !sinks.IsPermanent(err) {
		t.Fatalf("Write = %v, want a permanent partial error for 1 record", err)
	}
	if got := srv.ids(); !slices.Equal(got, []string{"0", "2"}) {
		t.Errorf("server received %v, want the 2 encodable records", got)
	}
}

func TestTLSWithOwnCA(t *testing.T) {
	t.Parallel()
	srv := &server{t: t}
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tls     sinks.TLS
		wantErr bool
	}{
		{name: "the server's CA from ca_file", tls: sinks.TLS{CAFile: ca}},
		{name: "system roots do not know the server", tls: sinks.TLS{}, wantErr: true},
		{name: "verification off", tls: sinks.TLS{InsecureSkipVerify: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := sinkConfig(ts.URL)
			options(c).TLS = tc.tls
			err := newSink(t, c).Write(context.Background(), reqs(1))
			if (err != nil) != tc.wantErr {
				t.Errorf("Write = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && sinks.IsPermanent(err) {
				t.Errorf("a TLS failure is permanent: %v; want it retried (the certificate may be fixed)", err)
			}
		})
	}
	c := sinkConfig(ts.URL)
	options(c).TLS = sinks.TLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	if _, err := webhook.New(c, *options(c), sinks.Settings{}); err == nil {
		t.Error("New with a missing ca_file succeeded, want an error at start")
	}
}

// TestThroughThePipeline runs the sink behind a pipeline with a spool against a server that is
// unavailable for its first requests, then refuses one batch: nothing is lost, order is kept
// and the refused batch lands in the rejects file.
func TestThroughThePipeline(t *testing.T) {
	t.Parallel()
	const n = 200
	srv := &server{t: t, total: make(chan int, 1000)}
	srv.answer = func(i int) (int, http.Header) {
		switch {
		case i < 5:
			return 503, http.Header{"Retry-After": {"0"}}
		case i == 5:
			return 429, nil
		}
		return 200, nil
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	c := sinkConfig(ts.URL)
	c.BatchSize, c.FlushInterval = 20, config.Duration(time.Millisecond)
	c.Retry = config.Retry{InitialInterval: config.Duration(time.Millisecond), MaxInterval: config.Duration(5 * time.Millisecond)}
	out, err := sinks.NewOutput(c, dir, newSink(t, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := sinks.NewPipeline(nil, []sinks.Output{out})
	for _, r := range reqs(n) {
		p.Emit(r)
	}
	for total := range srv.total {
		if total == n {
			break
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	if got := srv.ids(); !slices.Equal(got, want) {
		t.Errorf("server received %d records, want the %d in order", len(got), n)
	}
	if st := p.Stats()[0]; st.Delivered != n || st.Retried < 6 || st.SpoolRecords != 0 {
		t.Errorf("stats = %+v, want all delivered after at least 6 retries", st)
	}

	// A refused batch goes to the rejects file.
	srv.answer = func(int) (int, http.Header) { return 400, nil }
	out, err = sinks.NewOutput(c, dir, newSink(t, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	p = sinks.NewPipeline(nil, []sinks.Output{out})
	for _, r := range reqs(3) {
		p.Emit(r)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(sinks.SpoolDir(c, dir), "rejected", spool.RejectsFile))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 3 || !strings.Contains(lines[0], "status 400") || strings.Contains(string(b), "s3cr3t") {
		t.Errorf("rejects file = %s, want the 3 records with the status and no header value", b)
	}
	if st := p.Stats()[0]; st.Rejected != 3 || st.Failed != 3 {
		t.Errorf("stats = %+v, want 3 rejected", st)
	}
}
