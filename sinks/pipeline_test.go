package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

func TestFanOutToEveryOutput(t *testing.T) {
	t.Parallel()
	a, b := &fakeSink{}, &fakeSink{}
	p := sinks.NewPipeline(nil, []sinks.Output{
		{Name: "a", Sink: a, QueueSize: 100, BatchSize: 7},
		{Name: "b", Sink: b, QueueSize: 100, BatchSize: 50},
	})
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready of a running pipeline = %v, want nil", err)
	}
	for _, r := range requests(60) {
		p.Emit(r)
	}
	p.Emit(nil) // ignored
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, tc := range []struct {
		name string
		sink *fakeSink
	}{{"a", a}, {"b", b}} {
		if got := tc.sink.ids(); !slices.Equal(got, idStrings(60)) {
			t.Errorf("output %s received %v, want the 60 records in order", tc.name, got)
		}
		if tc.sink.closeCount() != 1 {
			t.Errorf("output %s sink closed %d times, want 1", tc.name, tc.sink.closeCount())
		}
	}
	for _, st := range p.Stats() {
		want := sinks.OutputStats{Name: st.Name, Accepted: 60, Delivered: 60}
		if st != want {
			t.Errorf("stats of %s = %+v, want %+v", st.Name, st, want)
		}
	}
}

func TestBlockedOutputDelaysNobody(t *testing.T) {
	t.Parallel()
	blocked := &fakeSink{gate: make(chan struct{}), started: make(chan int, 1)}
	healthy := &fakeSink{wrote: make(chan int, 15)}
	p := sinks.NewPipeline(nil, []sinks.Output{
		{Name: "blocked", Sink: blocked, QueueSize: 4, BatchSize: 1},
		{Name: "healthy", Sink: healthy, QueueSize: 100, BatchSize: 1},
	})
	recs := requests(15)
	p.Emit(recs[0])
	<-blocked.started // the blocked worker holds record 0 inside Write
	// The next 4 fill the blocked queue, the last 10 are dropped there; none of these calls
	// may wait.
	for _, r := range recs[1:] {
		p.Emit(r)
	}
	st := p.Stats()[0]
	if want := (sinks.OutputStats{Name: "blocked", Queued: 4, Accepted: 5, Dropped: 10, Drops: drops(sinks.DropQueueFull, 10)}); st != want {
		t.Errorf("blocked output stats = %+v, want %+v", st, want)
	}
	// The healthy output delivers everything while the other is still stuck.
	for range 15 {
		<-healthy.wrote
	}
	if got := healthy.ids(); !slices.Equal(got, idStrings(15)) {
		t.Errorf("healthy output received %v while the other was blocked, want all 15", got)
	}
	close(blocked.gate)
	go func() {
		for range blocked.started {
		}
	}()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	close(blocked.started)
	if got := blocked.ids(); !slices.Equal(got, idStrings(5)) {
		t.Errorf("blocked output delivered %v after release, want the 5 it accepted", got)
	}
	st = p.Stats()[0]
	if want := (sinks.OutputStats{Name: "blocked", Accepted: 5, Delivered: 5, Dropped: 10, Drops: drops(sinks.DropQueueFull, 10)}); st != want {
		t.Errorf("blocked output stats after shutdown = %+v, want %+v", st, want)
	}
}

func TestBatching(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		batch    int
		interval time.Duration
		emit     int
		// steps advance the fake clock and say which batch sizes must have been written by then.
		steps []step
	}{
		{
			name: "full batches go at once, the rest after the interval", batch: 3, interval: time.Hour, emit: 7,
			steps: []step{{0, []int{3, 3}}, {time.Hour - time.Nanosecond, []int{3, 3}}, {time.Nanosecond, []int{3, 3, 1}}},
		},
		{
			name: "a partial batch waits for the interval", batch: 100, interval: time.Second, emit: 2,
			steps: []step{{0, nil}, {999 * time.Millisecond, nil}, {time.Millisecond, []int{2}}},
		},
		{
			name: "a batch of exactly the size does not wait", batch: 4, interval: time.Minute, emit: 4,
			steps: []step{{0, []int{4}}},
		},
		{
			name: "defaults apply to zero settings", batch: 0, interval: 0, emit: 3,
			steps: []step{{0, nil}, {sinks.DefaultFlushInterval, []int{3}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := &fakeSink{}
				p := sinks.NewPipeline(nil, []sinks.Output{{Name: "s", Sink: s, QueueSize: 100, BatchSize: tc.batch, FlushInterval: tc.interval}})
				for _, r := range requests(tc.emit) {
					p.Emit(r)
				}
				for i, st := range tc.steps {
					time.Sleep(st.advance)
					synctest.Wait()
					if got := s.sizes(); !slices.Equal(got, st.want) {
						t.Errorf("step %d (+%v): batch sizes %v, want %v", i, st.advance, got, st.want)
					}
				}
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			})
		})
	}
}

type step struct {
	advance time.Duration
	want    []int
}

func TestShutdownDeliversEverythingAccepted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a, b := &fakeSink{}, &fakeSink{}
		p := sinks.NewPipeline(nil, []sinks.Output{
			{Name: "a", Sink: a, QueueSize: 1000, BatchSize: 7, FlushInterval: time.Hour},
			{Name: "b", Sink: b, QueueSize: 1000, BatchSize: 1000, FlushInterval: time.Hour},
		})
		for _, r := range requests(100) {
			p.Emit(r)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown took %v of fake time, want no wait for flush intervals", d)
		}
		for _, s := range []*fakeSink{a, b} {
			if got := s.ids(); !slices.Equal(got, idStrings(100)) {
				t.Errorf("sink received %d records, want all 100 in order", len(got))
			}
			if s.closeCount() != 1 {
				t.Errorf("sink closed %d times, want 1", s.closeCount())
			}
		}
		for _, st := range p.Stats() {
			if st.Delivered != 100 || st.Dropped != 0 || st.Failed != 0 {
				t.Errorf("stats of %s = %+v, want 100 delivered, none dropped or failed", st.Name, st)
			}
		}
		if err := p.Ready(); !errors.Is(err, sinks.ErrShutdown) {
			t.Errorf("Ready after Shutdown = %v, want ErrShutdown", err)
		}
	})
}

func TestShutdownDeadlineWithHungSink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		honourCtx bool
		// closesAtDeadline is how often the sink is closed before its gate opens: a sink that
		// honours the cancelled context returns, so it is closed at once.
		closesAtDeadline int
	}{
		{name: "sink ignores its context", honourCtx: false, closesAtDeadline: 0},
		{name: "sink returns when its context ends", honourCtx: true, closesAtDeadline: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				hung := &fakeSink{gate: make(chan struct{}), honourCtx: tc.honourCtx, started: make(chan int, 10)}
				healthy := &fakeSink{}
				logs := &logBuffer{}
				p := sinks.NewPipeline(logs.logger(), []sinks.Output{
					{Name: "hung", Sink: hung, QueueSize: 10, BatchSize: 2, FlushInterval: time.Hour, WriteTimeout: time.Hour},
					{Name: "healthy", Sink: healthy, QueueSize: 10, BatchSize: 2, FlushInterval: time.Hour},
				})
				recs := requests(7)
				p.Emit(recs[0])
				p.Emit(recs[1])
				<-hung.started // records 0 and 1 are in the hung Write
				for _, r := range recs[2:] {
					p.Emit(r)
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := p.Shutdown(ctx)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown = %v, want a deadline error", err)
				}
				if d := time.Since(start); d != 5*time.Second {
					t.Errorf("Shutdown returned after %v, want at the 5s deadline", d)
				}
				if again := p.Shutdown(context.Background()); !errors.Is(again, context.DeadlineExceeded) {
					t.Errorf("second Shutdown = %v, want the first call's result", again)
				}
				st := p.Stats()
				if want := (sinks.OutputStats{Name: "hung", Accepted: 7, Dropped: 7, Drops: drops(sinks.DropShutdown, 7)}); st[0] != want {
					t.Errorf("hung output stats = %+v, want %+v", st[0], want)
				}
				if want := (sinks.OutputStats{Name: "healthy", Accepted: 7, Delivered: 7}); st[1] != want {
					t.Errorf("healthy output stats = %+v, want %+v", st[1], want)
				}
				if got := logs.lines(t, "sink not drained before the shutdown deadline"); len(got) != 1 || got[0]["dropped"] != float64(7) || got[0]["sink"] != "hung" {
					t.Errorf("deadline log lines = %v, want one for sink hung with dropped 7", got)
				}
				// The hung sink is closed only once its last Write has returned.
				synctest.Wait()
				if n := hung.closeCount(); n != tc.closesAtDeadline {
					t.Errorf("hung sink closed %d times at the deadline, want %d", n, tc.closesAtDeadline)
				}
				close(hung.gate)
				synctest.Wait()
				if n := hung.closeCount(); n != 1 {
					t.Errorf("hung sink closed %d times after its Write returned, want 1", n)
				}
				if st := p.Stats()[0]; st.Delivered != 0 || st.Failed != 0 || st.Dropped != 7 {
					t.Errorf("hung output stats after the late Write = %+v, want the 7 counted as dropped only", st)
				}
			})
		})
	}
}

func TestEmitAfterShutdown(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSink{}
		logs := &logBuffer{}
		p := sinks.NewPipeline(logs.logger(), []sinks.Output{{Name: "s", Sink: s}})
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		for _, r := range requests(3) {
			p.Emit(r)
		}
		// The first drop's line is written at once, from a timer goroutine that may run between
		// two of the Emits; drops after it wait for the rate limit. A minute of the bubble's
		// clock lets every line out.
		time.Sleep(time.Minute)
		synctest.Wait()
		if want := (sinks.OutputStats{Name: "s", Dropped: 3, Drops: drops(sinks.DropShutdown, 3)}); p.Stats()[0] != want {
			t.Errorf("stats = %+v, want %+v", p.Stats()[0], want)
		}
		if len(s.ids()) != 0 || s.writes != 0 {
			t.Errorf("sink was written after shutdown")
		}
		got := logs.lines(t, "sinks shut down, records dropped")
		var sum float64
		for _, l := range got {
			sum += l["dropped"].(float64)
		}
		if len(got) == 0 || len(got) > 2 || sum != 3 {
			t.Errorf("drop log lines = %v, want one or two lines with 3 dropped in all", got)
		}
	})
}

func TestDropLogIsRateLimited(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		blocked := &fakeSink{gate: make(chan struct{}), started: make(chan int, 100)}
		logs := &logBuffer{}
		p := sinks.NewPipeline(logs.logger(), []sinks.Output{{Name: "blocked", Sink: blocked, QueueSize: 1, BatchSize: 1}})
		recs := requests(100)
		p.Emit(recs[0])
		<-blocked.started
		p.Emit(recs[1]) // fills the queue
		next := recs[2:]
		drop := func(n int) {
			for _, r := range next[:n] {
				p.Emit(r)
			}
			next = next[n:]
		}
		const msg = "sink queue full, records dropped"
		// The first line is written from a timer goroutine as soon as the first drop is
		// counted; the scheduler may run it after any of the drops of that instant, so the
		// checks count the lines and the drops they report in all, not how the first ones split.
		reported := func() (lines int, total float64) {
			synctest.Wait()
			for _, l := range logs.lines(t, msg) {
				lines++
				total += l["dropped"].(float64)
			}
			return lines, total
		}
		check := func(step string, wantLines int, wantTotal float64) {
			t.Helper()
			if lines, total := reported(); lines != wantLines || total != wantTotal {
				t.Errorf("%s: %d drop lines reporting %v, want %d reporting %v", step, lines, total, wantLines, wantTotal)
			}
		}
		drop(5)
		lines, first := reported()
		if lines != 1 || first < 1 || first > 5 {
			t.Errorf("first drops are logged at once: %d lines reporting %v, want 1 line reporting some of the 5", lines, first)
		}
		drop(3)
		check("more drops within 10s wait", 1, first)
		time.Sleep(9 * time.Second)
		check("still within 10s", 1, first)
		time.Sleep(time.Second)
		check("10s after the first line", 2, 8)
		time.Sleep(time.Minute)
		check("no drops, no line", 2, 8)
		drop(1)
		check("a drop after a quiet spell is logged at once", 3, 9)
		if st := p.Stats()[0]; st.Dropped != 9 {
			t.Errorf("dropped = %d, want 9", st.Dropped)
		}
		close(blocked.gate)
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

func TestWriteFailures(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	tests := []struct {
		name          string
		sink          *fakeSink
		wantDelivered uint64
		wantFailed    uint64
		wantPermanent bool
	}{
		{
			name:       "every batch fails",
			sink:       &fakeSink{errFor: func([]record.Record) error { return boom }},
			wantFailed: 10,
		},
		{
			name: "part of each batch fails",
			sink: &fakeSink{errFor: func([]record.Record) error {
				return &sinks.PartialError{Failed: 1, Err: sinks.Permanent(boom)}
			}},
			wantDelivered: 5, wantFailed: 5, wantPermanent: true,
		},
		{
			name: "a partial error wrapped by the sink",
			sink: &fakeSink{errFor: func([]record.Record) error {
				return fmt.Errorf("post: %w", &sinks.PartialError{Failed: 99, Err: boom})
			}},
			wantFailed: 10,
		},
		{
			name:       "the sink panics",
			sink:       &fakeSink{panicWith: "secret record content"},
			wantFailed: 10,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				logs := &logBuffer{}
				p := sinks.NewPipeline(logs.logger(), []sinks.Output{{Name: "s", Sink: tc.sink, QueueSize: 100, BatchSize: 2}})
				// Five batches of two, one batch per second: the failure log allows one line per 10s.
				recs := requests(10)
				for i := 0; i < 10; i += 2 {
					p.Emit(recs[i])
					p.Emit(recs[i+1])
					synctest.Wait()
					time.Sleep(time.Second)
				}
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				st := p.Stats()[0]
				if st.Delivered != tc.wantDelivered || st.Failed != tc.wantFailed {
					t.Errorf("stats = %+v, want %d delivered and %d failed", st, tc.wantDelivered, tc.wantFailed)
				}
				lines := logs.lines(t, "sink write failed")
				if len(lines) != 1 {
					t.Fatalf("%d failure log lines for 5 failures in 5s, want 1", len(lines))
				}
				if lines[0]["permanent"] != tc.wantPermanent {
					t.Errorf("failure line says permanent=%v, want %v", lines[0]["permanent"], tc.wantPermanent)
				}
				if b := logs.buf.String(); tc.sink.panicWith != nil && strings.Contains(b, "secret") {
					t.Errorf("logs quote the panic value: %s", b)
				}
			})
		})
	}
}

func TestConcurrentEmit(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 500
	a, b := &fakeSink{}, &fakeSink{}
	p := sinks.NewPipeline(nil, []sinks.Output{
		{Name: "a", Sink: a, QueueSize: goroutines * each, BatchSize: 64},
		{Name: "b", Sink: b, QueueSize: 16, BatchSize: 4},
	})
	recs := requests(goroutines * each)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for _, r := range recs[g*each : (g+1)*each] {
				p.Emit(r)
			}
		})
	}
	// Readers of the counters run alongside, as /metrics and /readyz would.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = p.Stats()
				_ = p.Ready()
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got := a.ids()
	slices.Sort(got)
	want := idStrings(goroutines * each)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("output a received %d records, want each of the %d exactly once", len(got), len(want))
	}
	st := p.Stats()
	if st[0].Accepted != goroutines*each || st[0].Delivered != goroutines*each {
		t.Errorf("output a stats = %+v, want all %d accepted and delivered", st[0], goroutines*each)
	}
	// The small queue drops some; every record is either delivered or dropped, exactly once.
	if st[1].Delivered+st[1].Dropped != goroutines*each || st[1].Accepted != st[1].Delivered {
		t.Errorf("output b stats = %+v, want delivered+dropped = %d and accepted = delivered", st[1], goroutines*each)
	}
	if uint64(len(b.ids())) != st[1].Delivered {
		t.Errorf("output b sink holds %d records, stats say %d delivered", len(b.ids()), st[1].Delivered)
	}
	for _, s := range st {
		checkBalance(t, s)
	}
}

func TestNamesDefault(t *testing.T) {
	t.Parallel()
	p := sinks.NewPipeline(nil, []sinks.Output{{Sink: &fakeSink{}}, {Name: "x", Sink: &fakeSink{}}})
	defer p.Shutdown(context.Background())
	var names []string
	for _, st := range p.Stats() {
		names = append(names, st.Name)
	}
	if want := []string{"sink0", "x"}; !slices.Equal(names, want) {
		t.Errorf("output names = %v, want %v", names, want)
	}
}

// fakeOptions are the options of the "fake" sink type of these tests.
type fakeOptions struct {
	Size int `yaml:"size"`
}

func (*fakeOptions) Validate(*config.SinkCheck) {}

func defaultFakeOptions() *fakeOptions { return &fakeOptions{Size: 3} }

// A factory whose constructor fails gives no sink at all, not an interface holding a nil
// pointer that would pass a nil check.
func TestFactoryOfFailure(t *testing.T) {
	t.Parallel()
	f := sinks.FactoryOf("fake", defaultFakeOptions, func(config.Sink, *fakeOptions, sinks.Settings) (*fakeSink, error) {
		return nil, errors.New("cannot open")
	})
	sk, err := f.Create(config.Sink{}, sinks.Settings{})
	if err == nil || sk != nil {
		t.Fatalf("Create = %v, %v; want nil and the error", sk, err)
	}
	ok := sinks.FactoryOf("fake", defaultFakeOptions, func(config.Sink, *fakeOptions, sinks.Settings) (*fakeSink, error) { return &fakeSink{}, nil })
	if sk, err := ok.Create(config.Sink{}, sinks.Settings{}); err != nil || sk == nil || ok.Type != "fake" {
		t.Fatalf("Create = %v, %v (type %q); want the sink", sk, err, ok.Type)
	}
}

// FactoryOf hands the constructor the options decoded from the file, the type's defaults for
// a sink built in code, and refuses options of another type.
func TestFactoryOfOptions(t *testing.T) {
	t.Parallel()
	var got *fakeOptions
	f := sinks.FactoryOf("fake", defaultFakeOptions, func(_ config.Sink, o *fakeOptions, _ sinks.Settings) (*fakeSink, error) {
		got = o
		return &fakeSink{}, nil
	})
	if _, err := f.Create(config.Sink{Options: &fakeOptions{Size: 9}}, sinks.Settings{}); err != nil || got.Size != 9 {
		t.Errorf("decoded options: Create = %v, constructor saw %+v; want size 9", err, got)
	}
	if _, err := f.Create(config.Sink{}, sinks.Settings{}); err != nil || got.Size != 3 {
		t.Errorf("no options: Create = %v, constructor saw %+v; want the default size 3", err, got)
	}
	if sk, err := f.Create(config.Sink{Options: otherOptions{}}, sinks.Settings{}); err == nil || sk != nil {
		t.Errorf("options of another type: Create = %v, %v; want an error", sk, err)
	}
	ct := f.ConfigType()
	if o, ok := ct.Options().(*fakeOptions); ct.Name != "fake" || !ok || o.Size != 3 {
		t.Errorf("ConfigType() = %q with options %#v; want fake and the defaults", ct.Name, ct.Options())
	}
}

type otherOptions struct{}

func (otherOptions) Validate(*config.SinkCheck) {}
