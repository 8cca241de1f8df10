package replay

import (
	"bytes"
	"context"
	"flag"
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
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
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
	xs, format, err := ReadFile(demoHAR, ReadOptions{MaxBodyBytes: cfg.Traffic.MaxBodyBytes, AttackHeader: cfg.Attacks.ResponseHeader})
	if err != nil || format != FormatHAR {
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
		{"carol", 5, "param:login_token", []string{"account_management", "auth"}},
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
	xs, _, err := ReadFile(demoHAR, ReadOptions{MaxBodyBytes: cfg.Traffic.MaxBodyBytes})
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
	remote, err := Remote(ctx, ln.Addr().String(), xs)
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
	rids, rtotal := summary(remote.Sessions)
	if diff := cmp.Diff(lids, rids); diff != "" {
		t.Errorf("parts over ext_proc differ from in process (-local +remote):\n%s", diff)
	}
	if ltotal != rtotal || rtotal != len(xs) {
		t.Errorf("requests: %d in process, %d over ext_proc; want %d each", ltotal, rtotal, len(xs))
	}
}

func TestReadHAR(t *testing.T) {
	t.Parallel()
	const har = `{"log":{"entries":[
	 {"startedDateTime":"2026-11-22T10:00:00.000+01:00","time":25.5,
	  "request":{"method":"post","url":"https://Shop.example.com:8443/api/login?next=%2Fhome","headers":[
	    {"name":":authority","value":"evil"},{"name":"Host","value":"x"},{"name":"Content-Type","value":"application/x-www-form-urlencoded"}],
	   "cookies":[{"name":"sid","value":"abc"},{"name":"theme","value":"dark"}],
	   "postData":{"mimeType":"application/x-www-form-urlencoded","params":[{"name":"user","value":"zoë"}]}},
	  "response":{"status":200,"headers":[{"name":"X-Request-Id","value":"resp"}],"cookies":[{"name":"sid","value":"new"}],
	   "content":{"text":"eyJvayI6dHJ1ZX0=","encoding":"base64"}},
	  "_clientIP":"2001:db8::7"},
	 {"startedDateTime":"2026-11-22T10:00:01Z","request":{"method":"GET","url":"/relative"},"response":{"status":0}},
	 {"startedDateTime":"2026-11-22T10:00:02Z","request":{"method":"GET","url":"http://a.example/"},"response":{"status":0}}
	]}}`
	xs, err := ReadHAR(strings.NewReader(har), ReadOptions{ClientIP: "192.0.2.9", MaxBodyBytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 2 {
		t.Fatalf("read %d exchanges; want 2 (the relative URL is skipped)", len(xs))
	}
	x := xs[0]
	want := traffic.Exchange{
		RequestID: "har-1",
		Start:     time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
		End:       time.Date(2026, 11, 22, 9, 0, 0, 25500000, time.UTC),
		Method:    "POST", Scheme: "https", Host: "Shop.example.com:8443", Path: "/api/login?next=%2Fhome",
		SourceAddress: "[2001:db8::7]:0",
		RequestHeaders: []traffic.Header{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: "Shop.example.com:8443"},
			{Name: ":path", Value: "/api/login?next=%2Fhome"}, {Name: "content-type", Value: "application/x-www-form-urlencoded"},
			{Name: "cookie", Value: "sid=abc; theme=dark"},
		},
		RequestBody: []byte("user"), RequestBodyTruncated: true, RequestBytes: int64(len("user=zo%C3%AB")),
		ResponseSeen: true, Status: 200,
		ResponseHeaders: []traffic.Header{{Name: ":status", Value: "200"}, {Name: "x-request-id", Value: "resp"}, {Name: "set-cookie", Value: "sid=new"}},
		ResponseBody:    []byte(`{"ok"`), ResponseBodyTruncated: true, ResponseBytes: 11,
	}
	want.ResponseBody = want.ResponseBody[:4]
	if diff := cmp.Diff(want, x, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("HAR entry differs (-want +got):\n%s", diff)
	}
	if xs[1].SourceAddress != "192.0.2.9:0" || !xs[1].Partial || xs[1].ResponseSeen {
		t.Errorf("entry without client or response: %+v", xs[1])
	}
	for _, bad := range []string{"", "[]", `{"log":{"entries":[{"request":{"url":"x"}}]}}`} {
		if _, err := ReadHAR(strings.NewReader(bad), ReadOptions{}); err == nil {
			t.Errorf("ReadHAR(%q): no error", bad)
		}
	}
}

func TestReadJSONL(t *testing.T) {
	t.Parallel()
	in := `{"kind":"request","session":"s_1","part":"2026-11-22","request_id":"r1","time":"2026-11-22T10:00:00.000Z","method":"GET","host":"a.example","path":"/x","status":403,"duration_ms":5,"client_ip":"203.0.113.7","user_agent":"curl/8","ja3":"j3","malicious":true,"attack":{"source":"header","types":["sqli","xss"]}}

{"kind":"session","session":"s_1","part":"2026-11-22"}
{"kind":"request","time":"2026-11-22T10:00:01.000Z","status":0}
`
	xs, err := ReadJSONL(strings.NewReader(in), ReadOptions{JA3Header: "x-ja3", AttackHeader: "x-waf"})
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 2 {
		t.Fatalf("read %d exchanges; want the 2 request records", len(xs))
	}
	x := xs[0]
	if x.SourceAddress != "203.0.113.7:0" || x.Status != 403 || x.RequestID != "r1" || x.End.Sub(x.Start) != 5*time.Millisecond {
		t.Errorf("exchange from record = %+v", x)
	}
	if v, _ := x.RequestHeader("x-ja3"); v != "j3" {
		t.Errorf("ja3 header %q; want j3", v)
	}
	if v, _ := x.ResponseHeader("x-waf"); v != "sqli,xss" {
		t.Errorf("attack header %q; want sqli,xss so the verdict survives", v)
	}
	if xs[1].RequestID != "jsonl-4" || xs[1].ResponseSeen || xs[1].Path != "/" {
		t.Errorf("minimal record = %+v", xs[1])
	}
	if _, err := ReadJSONL(strings.NewReader("{not json\n"), ReadOptions{}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: err = %v; want one naming line 1", err)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	cfg := demoConfig(t)
	load := func(string) (*config.Config, error) { return cfg, nil }
	key := func(*config.Config) ([]byte, error) { return demoKey, nil }
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrIn string
	}{
		{"table", []string{demoHAR}, ExitOK, "SESSION", "requests"},
		{"jsonl", []string{"--output", "jsonl", demoHAR}, ExitOK, `"kind":"session"`, ""},
		{"no file", nil, ExitUsage, "", "exactly one file"},
		{"bad output", []string{"--output", "xml", demoHAR}, ExitUsage, "", "table or jsonl"},
		{"bad client ip", []string{"--client-ip", "nope", demoHAR}, ExitUsage, "", "not an IP"},
		{"sinks and to", []string{"--sinks", "--to", "127.0.0.1:1", demoHAR}, ExitUsage, "", "drop one"},
		{"sinks unavailable", []string{"--sinks", demoHAR}, ExitUsage, "", "not available"},
		{"missing file", []string{"nope.har"}, ExitFailure, "", "nope.har"},
		{"help", []string{"--help"}, ExitOK, "", "usage: apisessions replay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := Run(context.Background(), tc.args, &out, &errb, Deps{LoadConfig: load, HashKey: key})
			if code != tc.code {
				t.Errorf("%s: exit %d; want %d (stderr %q)", tc.name, code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("%s: stdout %q lacks %q", tc.name, out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderrIn) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errb.String(), tc.stderrIn)
			}
		})
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

func TestShiftToNowKeepsGaps(t *testing.T) {
	t.Parallel()
	base := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	xs := []traffic.Exchange{
		{Start: base, End: base.Add(time.Second)},
		{Start: base.Add(time.Hour), End: base.Add(time.Hour + 2*time.Second)},
		{}, // no times: left alone
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ShiftToNow(xs, now)
	if !xs[1].Start.Equal(now) {
		t.Errorf("the latest request starts at %v, want now %v", xs[1].Start, now)
	}
	if got := xs[1].Start.Sub(xs[0].Start); got != time.Hour {
		t.Errorf("gap between requests %v after the shift, want 1h", got)
	}
	if got := xs[1].End.Sub(xs[1].Start); got != 2*time.Second {
		t.Errorf("duration %v after the shift, want 2s", got)
	}
	if !xs[2].Start.IsZero() || !xs[2].End.IsZero() {
		t.Errorf("an exchange without times got %v..%v", xs[2].Start, xs[2].End)
	}
}
