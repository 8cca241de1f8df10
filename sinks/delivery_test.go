package sinks_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/spool"
)

// switchSink fails every Write with err while down is set, and records what it takes. When err
// is a *sinks.PartialError, the head of the batch is written first, as a real sink would.
type switchSink struct {
	down     atomic.Bool
	err      error
	attempts atomic.Int64
	fakeSink
}

func (s *switchSink) Write(ctx context.Context, batch []record.Record) error {
	s.attempts.Add(1)
	if s.down.Load() {
		if pe, ok := s.err.(*sinks.PartialError); ok && pe.Failed < len(batch) {
			s.fakeSink.Write(ctx, batch[:len(batch)-pe.Failed])
			return s.err
		}
		return s.err
	}
	return s.fakeSink.Write(ctx, batch)
}

func openSpool(t *testing.T, dir string, maxBytes int64) *spool.Spool {
	t.Helper()
	sp, _, err := spool.Open(dir, spool.Options{MaxBytes: maxBytes, NoSync: true})
	if err != nil {
		t.Fatalf("open spool: %v", err)
	}
	return sp
}

// sessionRecords builds n request records spread over sessions s0…s(k-1), ids in emit order.
func sessionRecords(n, k int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = &record.Request{Kind: record.KindRequest, Session: "s_" + strconv.Itoa(i%k), RequestID: strconv.Itoa(i)}
	}
	return out
}

// perSession groups delivered ids by session, in delivery order.
func perSession(batches [][]record.Record) map[string][]int {
	out := map[string][]int{}
	for _, b := range batches {
		for _, r := range b {
			id, _ := strconv.Atoi(r.(*record.Request).RequestID)
			out[r.SessionID()] = append(out[r.SessionID()], id)
		}
	}
	return out
}

func TestSinkDownThenBackLosesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{name: "connection refused", err: errors.New("connection refused")},
		{name: "asked to wait", err: sinks.RetryAfter(errors.New("status 429"), 3*time.Second)},
		{name: "part of each batch fails", err: &sinks.PartialError{Failed: 2, Err: errors.New("broker not available")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				sk := &switchSink{err: tc.err}
				sk.down.Store(true)
				logs := &logBuffer{}
				p := sinks.NewPipeline(logs.logger(), []sinks.Output{{
					Name: "s", Sink: sk, QueueSize: 50, BatchSize: 10, FlushInterval: 100 * time.Millisecond,
					Retry: sinks.RetryPolicy{InitialInterval: time.Second, MaxInterval: 8 * time.Second},
					Spool: openSpool(t, dir, 1<<20),
				}})
				recs := sessionRecords(600, 7)
				// 600 records over a minute of outage: 12 times the queue, none may be dropped.
				for i, r := range recs[:500] {
					p.Emit(r)
					if i%10 == 9 {
						time.Sleep(time.Second / 10)
					}
				}
				synctest.Wait()
				st := p.Stats()[0]
				if st.Dropped != 0 || st.Delivered > 10 || st.Spooled < 400 {
					t.Errorf("during the outage stats = %+v, want nothing dropped and the records spooled", st)
				}
				sk.down.Store(false)
				for i, r := range recs[500:] {
					p.Emit(r)
					if i%10 == 9 {
						time.Sleep(time.Second / 10)
					}
				}
				time.Sleep(time.Minute) // past the longest backoff
				synctest.Wait()
				st = p.Stats()[0]
				if st.Delivered != 600 || st.SpoolRecords != 0 || st.Dropped != 0 || st.Failed != 0 {
					t.Errorf("after recovery stats = %+v, want all 600 delivered and the spool empty", st)
				}
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				sk.mu.Lock()
				got := perSession(sk.batches)
				sk.mu.Unlock()
				for i := range 7 {
					s := "s_" + strconv.Itoa(i)
					var want []int
					for j := i; j < 600; j += 7 {
						want = append(want, j)
					}
					// A partial failure delivers the head of a batch before its tail is retried, so
					// records may arrive twice; the first arrival of each must be in order.
					if first := firstArrivals(got[s]); !slices.Equal(first, want) {
						t.Errorf("session %s received %v, want %v in order", s, first, want)
					}
				}
				if len(logs.lines(t, "sink down, spooling records")) != 1 || len(logs.lines(t, "sink recovered, spool replayed")) != 1 {
					t.Errorf("want one line when the sink went down and one when it recovered")
				}
			})
		})
	}
}

// firstArrivals keeps the first occurrence of each id.
func firstArrivals(ids []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sk := &switchSink{err: sinks.RetryAfter(errors.New("status 503"), 20*time.Second)}
		sk.down.Store(true)
		p := sinks.NewPipeline(nil, []sinks.Output{{
			Name: "s", Sink: sk, BatchSize: 1,
			Retry: sinks.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
		}})
		p.Emit(requests(1)[0])
		synctest.Wait()
		if n := sk.attempts.Load(); n != 1 {
			t.Fatalf("%d attempts at once, want 1", n)
		}
		time.Sleep(20*time.Second - time.Millisecond)
		synctest.Wait()
		if n := sk.attempts.Load(); n != 1 {
			t.Errorf("%d attempts before the 20s the destination asked for, want 1", n)
		}
		sk.down.Store(false)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if st := p.Stats()[0]; st.Delivered != 1 || st.Retried != 1 {
			t.Errorf("stats = %+v, want the record delivered on the one retry", st)
		}
		p.Shutdown(context.Background())
	})
}

func TestGivingUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		retry      sinks.RetryPolicy
		withSpool  bool
		wantFailed uint64
		wantReject uint64
	}{
		{
			name: "retries stop after max_elapsed", err: errors.New("timeout"),
			retry:      sinks.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsed: time.Minute},
			wantFailed: 4,
		},
		{
			name: "spooled records too", err: errors.New("timeout"), withSpool: true,
			retry:      sinks.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsed: time.Minute},
			wantFailed: 4,
		},
		{
			name: "a refused batch goes to the rejects file", err: sinks.Permanent(errors.New("webhook: status 400")), withSpool: true,
			retry:      sinks.DefaultRetryPolicy(),
			wantFailed: 4, wantReject: 4,
		},
		{
			name: "a refused batch without rejects file is dropped", err: sinks.Permanent(errors.New("webhook: status 400")),
			retry:      sinks.DefaultRetryPolicy(),
			wantFailed: 4,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				sk := &switchSink{err: tc.err}
				sk.down.Store(true)
				out := sinks.Output{Name: "s", Sink: sk, BatchSize: 4, Retry: tc.retry}
				if tc.withSpool {
					out.Spool = openSpool(t, filepath.Join(dir, "spool"), 1<<20)
					rj, err := spool.OpenRejects(filepath.Join(dir, "spool"), 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					out.Rejects = rj
				}
				p := sinks.NewPipeline(nil, []sinks.Output{out})
				for _, r := range requests(4) {
					p.Emit(r)
				}
				time.Sleep(2 * time.Minute)
				synctest.Wait()
				st := p.Stats()[0]
				if st.Failed != tc.wantFailed || st.Rejected != tc.wantReject || st.Delivered != 0 || st.SpoolRecords != 0 {
					t.Errorf("stats = %+v, want %d failed, %d rejected, nothing waiting", st, tc.wantFailed, tc.wantReject)
				}
				if n := sk.attempts.Load(); IsPermanentErr(tc.err) && n != 1 {
					t.Errorf("a permanent error was tried %d times, want once", n)
				}
				p.Shutdown(context.Background())
				if tc.wantReject > 0 {
					b, err := os.ReadFile(filepath.Join(dir, "spool", spool.RejectsFile))
					if err != nil || strings.Count(string(b), `"reason":"webhook: status 400"`) != 4 {
						t.Errorf("rejects file = %q (%v), want the 4 refused records with the reason", b, err)
					}
				}
			})
		})
	}
}

func IsPermanentErr(err error) bool { return sinks.IsPermanent(err) }

// TestSlowSinkDoesNotDelayEmit runs Emit against sinks that take a minute per write or never
// answer. Inside the synctest bubble the clock only moves when every goroutine waits, so an
// Emit that waited for a sink would show as elapsed time.
func TestSlowSinkDoesNotDelayEmit(t *testing.T) {
	t.Parallel()
	for _, withSpool := range []bool{false, true} {
		t.Run("spool="+strconv.FormatBool(withSpool), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				slow := &fakeSink{gate: make(chan struct{}), honourCtx: true}
				healthy := &fakeSink{}
				outs := []sinks.Output{
					{Name: "slow", Sink: slow, QueueSize: 100, BatchSize: 10, WriteTimeout: time.Minute, Retry: sinks.DefaultRetryPolicy()},
					{Name: "healthy", Sink: healthy, QueueSize: 100, BatchSize: 10},
				}
				if withSpool {
					outs[0].Spool = openSpool(t, dir, 64<<20)
				}
				p := sinks.NewPipeline(nil, outs)
				recs := requests(2000)
				var worst time.Duration
				for i, r := range recs {
					start := time.Now()
					p.Emit(r)
					worst = max(worst, time.Since(start))
					if i%50 == 49 {
						time.Sleep(time.Second) // let the workers run between bursts
					}
				}
				if worst != 0 {
					t.Errorf("an Emit took %v of the fake clock, want none: Emit waited for a sink", worst)
				}
				synctest.Wait()
				st := p.Stats()
				if st[1].Delivered != 2000 {
					t.Errorf("healthy sink delivered %d of 2000 beside a slow one", st[1].Delivered)
				}
				if withSpool && st[0].Dropped != 0 {
					t.Errorf("slow sink with a spool dropped %d records, want 0: its queue must keep flowing", st[0].Dropped)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				p.Shutdown(ctx)
			})
		})
	}
}

// slowSink takes a minute of the bubble's clock for each of its first slow writes, then
// delivers at once.
type slowSink struct {
	slow atomic.Int64
	fakeSink
}

func (s *slowSink) Write(ctx context.Context, batch []record.Record) error {
	if s.slow.Add(-1) >= 0 {
		time.Sleep(time.Minute)
	}
	return s.fakeSink.Write(ctx, batch)
}

// TestSlowWriteThatSucceeds makes the queue spill behind a batch whose write is slow but
// succeeds: the batch's copy in the spool must be discarded, so that every record arrives once,
// in order.
func TestSlowWriteThatSucceeds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sk := &slowSink{}
		sk.slow.Store(3)
		p := sinks.NewPipeline(nil, []sinks.Output{{
			Name: "slow", Sink: sk, QueueSize: 100, BatchSize: 10, FlushInterval: time.Second,
			WriteTimeout: time.Hour, Retry: sinks.DefaultRetryPolicy(), Spool: openSpool(t, dir, 64<<20),
		}})
		for i, r := range requests(600) {
			p.Emit(r)
			if i%50 == 49 {
				time.Sleep(10 * time.Second)
			}
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		st := p.Stats()[0]
		if st.Dropped != 0 || st.Delivered != 600 || st.Spooled == 0 || st.SpoolRecords != 0 || st.Retried != 0 {
			t.Errorf("stats = %+v, want all 600 delivered without a retry, some through the spool, none dropped", st)
		}
		if got := sk.ids(); !slices.Equal(got, idStrings(600)) {
			t.Errorf("sink received %d records, want the 600 once each, in order", len(got))
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestShutdownSpoolsWhatADeadSinkCannotTake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sink func() sinks.Sink
		// records is how many are emitted: fewer than half the queue leave the batch in flight
		// in memory until the deadline, more make the queue spill behind it first.
		records int
	}{
		{name: "the sink refuses connections", records: 1000, sink: func() sinks.Sink {
			s := &switchSink{err: errors.New("connection refused")}
			s.down.Store(true)
			return s
		}},
		{name: "the sink hangs and ignores its context", records: 1000, sink: func() sinks.Sink {
			return &fakeSink{gate: make(chan struct{})}
		}},
		{name: "the sink hangs until its context ends", records: 1000, sink: func() sinks.Sink {
			return &fakeSink{gate: make(chan struct{}), honourCtx: true}
		}},
		{name: "the sink hangs with a few records", records: 120, sink: func() sinks.Sink {
			return &fakeSink{gate: make(chan struct{})}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				sk := tc.sink()
				defer func() {
					if f, ok := sk.(*fakeSink); ok {
						close(f.gate)
						synctest.Wait()
					}
				}()
				p := sinks.NewPipeline(nil, []sinks.Output{{
					Name: "dead", Sink: sk, QueueSize: 1000, BatchSize: 50, FlushInterval: time.Hour,
					WriteTimeout: time.Hour, Retry: sinks.DefaultRetryPolicy(), Spool: openSpool(t, dir, 64<<20),
				}})
				recs := sessionRecords(tc.records, 13)
				for _, r := range recs {
					p.Emit(r)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				p.Shutdown(ctx)
				synctest.Wait()
				st := p.Stats()[0]
				n := uint64(tc.records)
				if st.Accepted != n || st.Delivered != 0 || st.Dropped != 0 || st.Spooled != n || st.SpoolRecords != tc.records {
					t.Errorf("after shutdown stats = %+v, want all %d accepted records in the spool", st, n)
				}
			})
			// A later start replays them to a working sink, in order.
			replayInto(t, dir, tc.records)
		})
	}
}

func TestSpoolFullDropsOldestAndCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sk := &switchSink{err: errors.New("down")}
		sk.down.Store(true)
		sp, _, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		p := sinks.NewPipeline(nil, []sinks.Output{{Name: "s", Sink: sk, BatchSize: 100, Retry: sinks.DefaultRetryPolicy(), Spool: sp}})
		for _, r := range requests(5000) {
			p.Emit(r)
			if p.Stats()[0].Queued > 5000 {
				t.Fatal("queue overflow")
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		st := p.Stats()[0]
		if st.SpoolDropped == 0 || st.SpoolBytes > 64<<10 {
			t.Errorf("stats = %+v, want drops from a spool kept within 64 KiB", st)
		}
		// Between two tries the worker holds no records: a batch it is retrying waits in the
		// spool, and is counted as dropped if the spool deletes it to make room.
		if waiting := st.SpoolDropped + uint64(st.SpoolRecords) + uint64(st.Queued); st.Dropped != st.SpoolDropped || waiting != 5000 {
			t.Errorf("stats = %+v, want every record waiting or counted as dropped by the spool", st)
		}
		sk.down.Store(false)
		time.Sleep(time.Minute)
		synctest.Wait()
		ids := sk.ids()
		if len(ids) == 0 || ids[len(ids)-1] != "4999" {
			t.Errorf("after recovery the sink got %d records ending %v, want the newest ones", len(ids), ids[max(len(ids)-1, 0):])
		}
		// No record is lost without a count: each was delivered or dropped by the spool.
		if st := p.Stats()[0]; st.Delivered+st.SpoolDropped != 5000 || st.Failed != 0 {
			t.Errorf("after recovery stats = %+v, want delivered + dropped by the spool = 5000", st)
		}
		p.Shutdown(context.Background())
	})
}

// TestSpoolFullUnderABatchBeingRetried fills a small spool while each failing write takes ten
// seconds, so that the spool deletes the segment of the very batch being written: once the sink
// is back, every record is delivered or counted as dropped by the spool, and the delivered ones
// are in order.
func TestSpoolFullUnderABatchBeingRetried(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		sk := &slowSwitchSink{switchSink: switchSink{err: errors.New("down")}}
		sk.down.Store(true)
		sp, _, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		p := sinks.NewPipeline(nil, []sinks.Output{{
			Name: "s", Sink: sk, QueueSize: 1000, BatchSize: 100, WriteTimeout: time.Minute,
			Retry: sinks.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second}, Spool: sp,
		}})
		for i, r := range requests(3000) {
			p.Emit(r)
			if i%100 == 99 {
				time.Sleep(time.Second)
			}
		}
		sk.down.Store(false)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		st := p.Stats()[0]
		if st.Accepted != 3000 || st.SpoolDropped == 0 || st.Delivered+st.SpoolDropped != 3000 ||
			st.Dropped != st.SpoolDropped || st.Failed != 0 || st.SpoolRecords != 0 {
			t.Errorf("stats = %+v, want the 3000 records delivered or counted as dropped by the spool", st)
		}
		ids := sk.ids()
		if !slices.IsSortedFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y }) {
			t.Errorf("delivered ids are out of order: %v", ids)
		}
		p.Shutdown(context.Background())
	})
}

// slowSwitchSink is a switchSink whose every write takes ten seconds.
type slowSwitchSink struct{ switchSink }

func (s *slowSwitchSink) Write(ctx context.Context, batch []record.Record) error {
	time.Sleep(10 * time.Second)
	return s.switchSink.Write(ctx, batch)
}

// TestKilledProcessReplaysSpool runs a helper process (this test binary) that spools records
// for a dead sink, kills it with SIGKILL once they are on disk, and replays them here.
func TestKilledProcessReplaysSpool(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a helper process")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestSpoolHelperProcess$")
	cmd.Env = append(os.Environ(), "APISESSIONS_SPOOL_HELPER="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "spooled" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper never reported its records spooled; stderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	replayInto(t, dir, helperRecords)
}

// replayInto starts a pipeline on the spool in dir with a working sink and checks that it
// delivers the n records ids 0…n-1 in order, before any new one.
func replayInto(t *testing.T, dir string, n int) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		sp, rec, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 20, NoSync: true})
		if err != nil || rec.Entries != n || rec.CorruptEntries != 0 {
			t.Fatalf("reopen spool: %+v, %v; want %d entries, none damaged", rec, err, n)
		}
		good := &fakeSink{}
		p := sinks.NewPipeline(nil, []sinks.Output{{Name: "s", Sink: good, Spool: sp, FlushInterval: time.Millisecond}})
		late := &record.Request{Kind: record.KindRequest, Session: "s_x", RequestID: strconv.Itoa(n)}
		p.Emit(late)
		synctest.Wait()
		time.Sleep(time.Second)
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := good.ids(); !slices.Equal(got, idStrings(n+1)) {
			t.Errorf("replay delivered %d records, want the %d spooled in order, then the new one", len(got), n)
		}
		if st := p.Stats()[0]; st.Replayed != uint64(n+1) || st.SpoolRecords != 0 {
			t.Errorf("stats after replay = %+v, want %d replayed (the new record joined the spool behind them) and the spool empty", st, n+1)
		}
	})
}

const helperRecords = 3000

// TestSpoolHelperProcess is the process TestKilledProcessReplaysSpool kills; it does nothing
// in a normal run.
func TestSpoolHelperProcess(t *testing.T) {
	dir := os.Getenv("APISESSIONS_SPOOL_HELPER")
	if dir == "" {
		t.Skip("helper process only")
	}
	sk := &switchSink{err: errors.New("connection refused")}
	sk.down.Store(true)
	sp, _, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := sinks.NewPipeline(nil, []sinks.Output{{
		Name: "s", Sink: sk, QueueSize: helperRecords, BatchSize: 100,
		Retry: sinks.RetryPolicy{InitialInterval: time.Hour}, Spool: sp,
	}})
	for _, r := range requests(helperRecords) {
		p.Emit(r)
	}
	// Wait (on the real clock: this is a separate process) until every record is on disk.
	var once sync.Once
	for {
		if st := p.Stats()[0]; st.Spooled == helperRecords {
			once.Do(func() { fmt.Println("spooled") })
			select {} // wait for SIGKILL
		}
		time.Sleep(time.Millisecond)
	}
}
