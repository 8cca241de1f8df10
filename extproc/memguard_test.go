package extproc

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// TestMemoryGuardLevels: each sample sets the level from the marks (80 % and 90 % of the
// limit) and a lower sample brings it back at once; a rise is logged at most once a minute per
// level, a failed sample leaves the level as it was and is logged once; no limit, no guard.
func TestMemoryGuardLevels(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := New(Settings{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	var rss atomic.Int64
	var failing atomic.Bool
	g := newMemoryGuard(srv, 1000, func() (int64, error) {
		if failing.Load() {
			return 0, errors.New("statm gone")
		}
		return rss.Load(), nil
	})
	g.reserve = 100
	now := t0
	g.now = func() time.Time { return now }
	lines := func() int { return strings.Count(logs.String(), "\n") }

	for i, step := range []struct {
		rss       int64
		open      int64 // streams open, each counted for 100 bytes toward the high mark
		fail      bool
		advance   time.Duration
		wantLevel int
		wantLines int
	}{
		{rss: 100, wantLevel: 0, wantLines: 0},
		{rss: 799, wantLevel: 0, wantLines: 0},
		{rss: 800, wantLevel: 1, wantLines: 1},   // bodies not kept
		{rss: 899, wantLevel: 1, wantLines: 1},   // no rise
		{rss: 900, wantLevel: 3, wantLines: 2},   // new streams refused too
		{rss: 100, wantLevel: 0, wantLines: 2},   // recovery is not logged
		{rss: 950, wantLevel: 3, wantLines: 2},   // within the minute: not logged again
		{fail: true, wantLevel: 3, wantLines: 3}, // a failed sample changes nothing, logged
		{fail: true, wantLevel: 3, wantLines: 3}, // once
		{rss: 850, wantLevel: 1, wantLines: 3},
		{rss: 500, open: 3, wantLevel: 0, wantLines: 3},
		{rss: 500, open: 4, wantLevel: 2, wantLines: 3}, // open streams count toward refusal only
		{rss: 100, advance: time.Minute, wantLevel: 0, wantLines: 3},
		{rss: 2000, wantLevel: 3, wantLines: 4}, // a minute later: logged again
	} {
		srv.stats.streamsOpen.Store(step.open)
		now = now.Add(step.advance)
		failing.Store(step.fail)
		rss.Store(step.rss)
		g.check()
		if got := srv.Stats().MemoryLevel; got != step.wantLevel {
			t.Errorf("step %d (resident %d, failed %v): level %d, want %d", i, step.rss, step.fail, got, step.wantLevel)
		}
		if got := lines(); got != step.wantLines {
			t.Errorf("step %d (resident %d, failed %v): %d log lines, want %d:\n%s", i, step.rss, step.fail, got, step.wantLines, logs.String())
		}
	}
	for _, want := range []string{`"msg":"memory guard: bodies not kept"`, `"msg":"memory guard: new streams refused"`,
		`"resident_bytes":900,"limit_bytes":1000`, `"msg":"memory guard: resident memory not read","component":"extproc","error":"statm gone"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no %s:\n%s", want, logs.String())
		}
	}
	g.end()
	if got := srv.Stats().MemoryLevel; got != 0 {
		t.Errorf("level %d after the guard ended, want 0", got)
	}

	if g := newMemoryGuard(srv, 0, nil); g != nil {
		t.Errorf("no limit: guard %v, want none", g)
	}
	var none *memoryGuard
	none.start() // a nil guard does nothing
	none.end()
}

// TestMemoryGuardOverGRPC: with GRPCOptions.MemoryLimitBytes, between the marks a body is not
// kept, its request still recorded and the body counted by its reason; above the high mark a
// new stream is refused at once with ResourceExhausted and counted apart from max_streams,
// while open streams go on; once memory is back under the marks, streams and bodies are
// taken again.
func TestMemoryGuardOverGRPC(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.needs.RequestBody = true
	srv := New(Settings{Processor: fake, Now: fixedNow, BodyBudgetBytes: 1 << 20})
	var rss atomic.Int64
	// In MiB, so that the 64 KiB each open stream counts toward refusal does not matter here.
	client, _ := startServer(t, srv, GRPCOptions{MaxStreams: 100, MemoryLimitBytes: 1000 << 20,
		sampleMemory: func() (int64, error) { return rss.Load() << 20, nil }})
	ctx := testContext(t)
	post := protomsg.RequestHeaders(pairs(":authority", "api.example", ":method", "POST"), false)
	chunk := func(s string, eos bool) *extprocv3.ProcessingRequest { return protomsg.RequestBody([]byte(s), eos) }
	// at sets the resident memory (MiB) and waits for the guard's next samples to publish level.
	at := func(resident int64, level int) {
		t.Helper()
		rss.Store(resident)
		for deadline := time.Now().Add(10 * time.Second); srv.Stats().MemoryLevel != level; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("resident %d: level %d, want %d", resident, srv.Stats().MemoryLevel, level)
			}
		}
	}

	at(100, 0)
	a := openStream(ctx, t, client, post, chunk("kept ", false))
	if got := srv.Stats().BodyBytesHeld; got != 5 {
		t.Fatalf("a body under the marks: %d bytes held, want 5", got)
	}

	at(850, 1)
	b := openStream(ctx, t, client, post, chunk("not kept", true))
	closeStream(t, b)
	if x := fake.next(t); x.RequestBody != nil || !x.RequestBodyTruncated || x.RequestBytes != 8 {
		t.Errorf("a body between the marks: body %q, truncated %v, %d bytes counted; want none kept, truncated, 8",
			x.RequestBody, x.RequestBodyTruncated, x.RequestBytes)
	}

	at(950, 3)
	refused, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = refused.Send(post)
	if _, err := refused.Recv(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "server.memory_limit_bytes") {
		t.Errorf("a new stream above the high mark: %v, want ResourceExhausted naming server.memory_limit_bytes", err)
	}
	// The stream opened before goes on; its body's next bytes are not kept, nor what it held.
	if err := a.Send(chunk("more", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Recv(); err != nil {
		t.Fatal(err)
	}
	closeStream(t, a)
	if x := fake.next(t); x.RequestBody != nil || !x.RequestBodyTruncated || x.RequestBytes != 9 {
		t.Errorf("an open body that grows above the marks: body %q, truncated %v, %d bytes counted; want none kept, truncated, 9",
			x.RequestBody, x.RequestBodyTruncated, x.RequestBytes)
	}
	s := srv.Stats()
	if s.StreamsRefusedMemory != 1 || s.StreamsRefused != 0 || s.BodiesOverMemory != 2 || s.BodiesOverBudget != 0 || s.BodyBytesHeld != 0 || s.Streams != 2 {
		t.Errorf("refused for memory %d, past max_streams %d, bodies not kept for memory %d, over the budget %d, held %d, accepted %d; want 1, 0, 2, 0, 0, 2",
			s.StreamsRefusedMemory, s.StreamsRefused, s.BodiesOverMemory, s.BodiesOverBudget, s.BodyBytesHeld, s.Streams)
	}

	at(100, 0)
	c := openStream(ctx, t, client, post, chunk("kept again", true))
	closeStream(t, c)
	if x := fake.next(t); string(x.RequestBody) != "kept again" || x.RequestBodyTruncated {
		t.Errorf("a body after memory came back: %q, truncated %v; want it all", x.RequestBody, x.RequestBodyTruncated)
	}
}

// TestResidentMemory: the process's own reading is its resident set, a positive number of
// whole pages, and statm lines are read by their second field.
func TestResidentMemory(t *testing.T) {
	t.Parallel()
	n, err := residentMemory()()
	if err != nil || n <= 0 || n%int64(4096) != 0 {
		t.Errorf("resident memory %d, %v; want a positive number of pages", n, err)
	}
	if n, err := goMemory(); err != nil || n <= 0 {
		t.Errorf("Go's memory %d, %v; want a positive number", n, err)
	}
	for _, tc := range []struct {
		line string
		want int64
		ok   bool
	}{
		{"123456 7890 1234 300 0 40000 0\n", 7890 * 4096, true},
		{"1 2", 2 * 4096, true},
		{"123456\n", 0, false},
		{"1 x 3", 0, false},
		{"1 -2 3", 0, false},
		{"", 0, false},
	} {
		got, err := statmResident([]byte(tc.line), 4096)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("statm %q: %d, %v; want %d, ok %v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}

// BenchmarkMemorySample is the guard's own cost per sample, off the stream path.
func BenchmarkMemorySample(b *testing.B) {
	sample := residentMemory()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sample(); err != nil {
			b.Fatal(err)
		}
	}
}
