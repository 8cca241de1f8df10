package replay

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/extproc/remote"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
	"github.com/apisessions/apisessions/sessions/traffic/recorded"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const demoHAR = "../examples/demo.har"

// demoKey is the hash key of every replay test, so session ids are stable.
var demoKey = []byte("0123456789abcdef0123456789abcdef-demo-key")

// demoConfig loads the example configuration.
func demoConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.LoadAndValidate("../examples/apisessions.yaml")
	if err != nil {
		t.Fatalf("examples/apisessions.yaml: %v", err)
	}
	cfg.Server.DataDir = t.TempDir()
	return cfg
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); run go test -update if the change is intended:\n%s", path, diff)
	}
}

func TestReplayDemo(t *testing.T) {
	t.Parallel()
	cfg := demoConfig(t)
	xs, format, err := recorded.ReadFile(demoHAR, recorded.Options{MaxBodyBytes: cfg.Traffic.MaxBodyBytes, AttackHeader: cfg.Attacks.ResponseHeader})
	if err != nil || format != recorded.FormatHAR {
		t.Fatalf("read demo.har: %v (%s)", err, format)
	}
	var sink recorder
	res, err := Replay(context.Background(), xs, Options{Config: cfg, Emitter: &sink, HashKey: demoKey})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	var out bytes.Buffer
	if err := WriteTable(&out, res.Sessions); err != nil {
		t.Fatal(err)
	}
	golden(t, "demo.golden", out.Bytes())

	byUser := map[string]*record.Session{}
	for _, s := range res.Sessions {
		if !s.Final || s.EndReason != record.EndShutdown {
			t.Errorf("part %s/%s: final %v, end reason %q; replay ends every part at shutdown", s.Session, s.Part, s.Final, s.EndReason)
		}
		byUser[s.User] = s
	}
	tests := []struct {
		user     string
		requests int
		key      string
		flows    []string
	}{
		{"alice", 7, "builtin:cookie:sid", []string{"billing"}},
		{"bob", 7, "builtin:cookie:sid", []string{"billing"}},
		// Carol's first request, before her login, joins the session her login starts
		// (sessions.stitch.login): the part was formed by the fallback key.
		{"carol", 6, "fallback:ip+user_agent", []string{"account_management", "auth"}},
		{"svc-reporting", 5, "builtin:jwt:sub", []string{"ai_llm"}},
	}
	for _, tc := range tests {
		s := byUser[tc.user]
		if s == nil {
			t.Errorf("no session of %s; the demo must show one", tc.user)
			continue
		}
		if s.Requests != tc.requests || s.Key.String() != tc.key {
			t.Errorf("%s: %d requests by key %s; want %d by %s", tc.user, s.Requests, s.Key, tc.requests, tc.key)
		}
		for _, f := range tc.flows {
			if s.Flows[f] == 0 {
				t.Errorf("%s: flows %v lack %s", tc.user, s.Flows, f)
			}
		}
	}
	if got := byUser["svc-reporting"]; got != nil && got.Role != "reporter" {
		t.Errorf("svc-reporting: role %q; want reporter from the JWT", got.Role)
	}
	malicious := 0
	for _, s := range res.Sessions {
		malicious += s.Malicious
	}
	if malicious != 3 {
		t.Errorf("%d malicious requests; want the scanner's 3", malicious)
	}
	if n := sink.count(record.KindRequest); n != res.Requests || n != len(xs) {
		t.Errorf("%d request records passed on for %d exchanges", n, len(xs))
	}
}

// recorder is an Emitter that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	recs []record.Record
}

func (r *recorder) Emit(rec record.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.RecordKind() == kind {
			n++
		}
	}
	return n
}

func TestRemoteMatchesInProcess(t *testing.T) {
	t.Parallel()
	cfg := demoConfig(t)
	xs, _, err := recorded.ReadFile(demoHAR, recorded.Options{MaxBodyBytes: cfg.Traffic.MaxBodyBytes})
	if err != nil {
		t.Fatal(err)
	}
	local, err := Replay(context.Background(), xs, Options{Config: cfg, HashKey: demoKey})
	if err != nil {
		t.Fatal(err)
	}

	eng, err := sessions.New(cfg, sessions.Settings{Emitter: &recorder{}, HashKey: demoKey})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv := extproc.New(extproc.Settings{Processor: eng, DynamicMetadata: true})
	gs, err := extproc.NewGRPCServer(srv, extproc.GRPCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	srv.SetServing(true)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := remote.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	over, err := Remote(ctx, xs, conn, OrderTime)
	if err != nil {
		t.Fatalf("remote replay: %v", err)
	}
	// The answers name the part the request headers pointed to: a key found later in a
	// response body (the login's token) is not in them, so only the parts and the total agree.
	summary := func(ss []*record.Session) (ids []string, total int) {
		for _, s := range ss {
			ids = append(ids, s.Session+"/"+s.Part)
			total += s.Requests
		}
		return ids, total
	}
	lids, ltotal := summary(local.Sessions)
	rids, rtotal := summary(over.Sessions)
	if diff := cmp.Diff(lids, rids); diff != "" {
		t.Errorf("parts over ext_proc differ from in process (-local +remote):\n%s", diff)
	}
	if ltotal != rtotal || rtotal != len(xs) {
		t.Errorf("requests: %d in process, %d over ext_proc; want %d each", ltotal, rtotal, len(xs))
	}
}

// fakeServer names the session and part of each exchange's x-session header ("s/p"), or
// none; a request id "fail" fails.
type fakeServer struct{}

func (fakeServer) Send(_ context.Context, x *traffic.Exchange) (string, string, record.Key, error) {
	if x.RequestID == "fail" {
		return "", "", record.Key{}, errors.New("stream reset")
	}
	v, _ := x.RequestHeader("x-session")
	session, part, _ := strings.Cut(v, "/")
	return session, part, record.Key{Source: "header", Name: "x-session"}, nil
}

func TestRemoteCountsNamedParts(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(sec int, session string) traffic.Exchange {
		x := traffic.Exchange{RequestID: fmt.Sprintf("r%d", sec), Start: base.Add(time.Duration(sec) * time.Second)}
		if session != "" {
			x.RequestHeaders = []traffic.Header{{Name: "x-session", Value: session}}
		}
		return x
	}
	// Out of file order on purpose: Remote sends by time.
	xs := []traffic.Exchange{at(30, "s_b/1"), at(10, "s_a/1"), at(20, ""), at(5, "s_a/1"), at(40, "s_a/2")}
	res, err := Remote(context.Background(), xs, fakeServer{}, OrderTime)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range res.Sessions {
		got = append(got, fmt.Sprintf("%s/%s %d %s..%s %s", s.Session, s.Part, s.Requests,
			s.FirstSeen.Format("05"), s.LastSeen.Format("05"), s.Key))
	}
	want := []string{"s_a/1 2 05..10 header:x-session", "s_b/1 1 30..30 header:x-session", "s_a/2 1 40..40 header:x-session"}
	if diff := cmp.Diff(want, got); diff != "" || res.Requests != len(xs) {
		t.Errorf("parts differ (-want +got), %d requests for %d:\n%s", res.Requests, len(xs), diff)
	}
	xs = append(xs, traffic.Exchange{RequestID: "fail", Start: base})
	if _, err := Remote(context.Background(), xs, fakeServer{}, OrderTime); err == nil || !strings.Contains(err.Error(), "request 6 (fail): stream reset") {
		t.Errorf("a failed send: err = %v; want one naming the request", err)
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "alice", "alice"},
		{"escape sequence", "\x1b[31mred", "?[31mred"},
		{"tab and newline", "a\tb\nc", "a?b?c"},
		{"invalid utf-8", "a\xffb", "a?b"},
		{"cut", "abcdef", "abc…"},
	} {
		if got := clean(tc.in, 3+len(tc.in)*boolInt(tc.name != "cut")); got != tc.want {
			t.Errorf("%s: clean(%q) = %q; want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requestLog is an emitter that keeps the request ids in the order the engine saw them.
type requestLog struct {
	mu  sync.Mutex
	ids []string
}

func (l *requestLog) Emit(rec record.Record) {
	if r, ok := rec.(*record.Request); ok {
		l.mu.Lock()
		l.ids = append(l.ids, r.RequestID)
		l.mu.Unlock()
	}
}

func TestReplayOrder(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(id string, sec int) traffic.Exchange {
		x := traffic.Exchange{RequestID: id, Method: "GET", Host: "a.example", Path: "/" + id, SourceAddress: "192.0.2.1:0"}
		if sec >= 0 {
			x.Start = base.Add(time.Duration(sec) * time.Second)
			x.End = x.Start
		}
		return x
	}
	// A capture listed out of time order, with an entry that has no time: it stays after the
	// entry before it in the file instead of moving to the front.
	xs := []traffic.Exchange{at("b", 20), at("c", -1), at("a", 10), at("d", 30)}
	tests := []struct {
		name  string
		order Order
		want  []string
	}{
		{"time is the default", "", []string{"a", "b", "c", "d"}},
		{"time", OrderTime, []string{"a", "b", "c", "d"}},
		{"file", OrderFile, []string{"b", "c", "a", "d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := &requestLog{}
			cfg := config.Default()
			cfg.Server.DataDir = t.TempDir()
			if _, err := Replay(context.Background(), xs, Options{Config: cfg, HashKey: demoKey, Emitter: log, Order: tc.order}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, log.ids); diff != "" {
				t.Errorf("order %q: requests replayed in another order (-want +got):\n%s", tc.order, diff)
			}
		})
	}
	for _, s := range []string{"", "time", "file"} {
		if _, err := ParseOrder(s); err != nil {
			t.Errorf("ParseOrder(%q): %v", s, err)
		}
	}
	if _, err := ParseOrder("random"); err == nil || !strings.Contains(err.Error(), "not time or file") {
		t.Errorf("ParseOrder(random): %v; want an error naming the orders", err)
	}
}
