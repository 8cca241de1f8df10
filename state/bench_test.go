package state

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// concurrency is the number of requests in flight in the parallel runs, as the load tool's
// default and the target of the performance page: 64.
const concurrency = 64

// latencies collects per-call durations from many goroutines and reports p50 and p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// warm runs f from conc goroutines for a moment, so that the connections are open before
// the timing starts (as in a server that has been running).
func warm(conc int, f func(i int)) {
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := range 50 {
				f(g*50 + i)
			}
		})
	}
	wg.Wait()
}

// run calls f b.N times, serially (conc 1) or from conc goroutines, timing each call.
func run(b *testing.B, conc int, f func(i int)) {
	var lat latencies
	warm(conc, f)
	b.ReportAllocs()
	b.ResetTimer()
	if conc == 1 {
		d := make([]time.Duration, 0, b.N)
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			f(i)
			d = append(d, time.Since(start))
		}
		lat.add(d)
	} else {
		b.SetParallelism(max(1, conc/max(1, testingProcs())))
		var next sync.Mutex
		n := 0
		b.RunParallel(func(pb *testing.PB) {
			var d []time.Duration
			for pb.Next() {
				next.Lock()
				i := n
				n++
				next.Unlock()
				start := time.Now()
				f(i)
				d = append(d, time.Since(start))
			}
			lat.add(d)
		})
	}
	b.StopTimer()
	lat.report(b)
}

// paced calls f n times from conc goroutines at rate calls a second in all (open loop: a
// call that waits does not delay the next one's start), and reports p50 and p99 of a call.
func paced(b *testing.B, conc, rate int, f func(i int)) {
	warm(conc, f)
	var lat latencies
	var wg sync.WaitGroup
	per := b.N / conc
	every := time.Duration(conc) * time.Second / time.Duration(rate)
	b.ReportAllocs()
	b.ResetTimer()
	for g := range conc {
		wg.Go(func() {
			d := make([]time.Duration, 0, per)
			// Staggered, so that the goroutines' calls spread over each period.
			time.Sleep(every * time.Duration(g) / time.Duration(conc))
			tk := time.NewTicker(every)
			defer tk.Stop()
			for i := range per {
				<-tk.C
				start := time.Now()
				f(g*per + i)
				d = append(d, time.Since(start))
			}
			lat.add(d)
		})
	}
	wg.Wait()
	b.StopTimer()
	lat.report(b)
}

// BenchmarkRoundTrip is one round trip to the test Redis as the engine makes it: peek (one
// GET) and observe (the part script), one at a time and 64 at once, with p50 and p99 of each
// call. go test -run '^$' -bench RoundTrip -benchtime 20000x ./state
func BenchmarkRoundTrip(b *testing.B) {
	c, _ := newTestClient(b, testRedis(b), nil)
	p := c.Parts()
	ctx := context.Background()
	at := time.Now()
	day := at.UTC().Format(time.DateOnly)
	end := time.Date(at.Year(), at.Month(), at.Day()+1, 0, 0, 0, 0, time.UTC).Unix()
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = fmt.Sprintf("s_%016x", i)
	}
	for _, conc := range []int{1, concurrency} {
		b.Run(fmt.Sprintf("peek/conc=%d", conc), func(b *testing.B) {
			run(b, conc, func(i int) {
				if _, _, ok := p.PeekPart(ctx, ids[i%len(ids)]); !ok {
					b.Error("peek unknown")
				}
			})
		})
		b.Run(fmt.Sprintf("observe/conc=%d", conc), func(b *testing.B) {
			run(b, conc, func(i int) {
				q := sessions.PartQuery{T: at.Add(time.Duration(i) * time.Millisecond), Day: day, DayEnd: end, Idle: 30 * time.Minute}
				if _, ok := p.ObservePart(ctx, ids[i%len(ids)], q); !ok {
					b.Error("observe unknown")
				}
			})
		})
	}
}

// BenchmarkEnginePeek is the engine's Peek (the inline answer's session and part) without and
// with the shared state, 64 at once: the difference is what Redis adds to an inline answer.
// "redis" peeks sessions the engine served (its own live parts answer); "redis-remote" peeks
// sessions that only another replica served, so every Peek reads Redis.
func BenchmarkEnginePeek(b *testing.B) {
	c, _ := newTestClient(b, testRedis(b), nil)
	xs := make([]*traffic.Exchange, 4096)
	at := time.Now()
	for i := range xs {
		xs[i] = request(fmt.Sprint("user-", i), at)
	}
	for _, mode := range []string{"local", "redis", "redis-remote"} {
		var shared sessions.SharedParts
		if mode != "local" {
			shared = c.Parts()
		}
		e, _ := newTestEngine(b, 30*time.Minute, shared)
		served := e
		if mode == "redis-remote" {
			served, _ = newTestEngine(b, 30*time.Minute, shared)
		}
		for _, x := range xs {
			served.Observe(x)
		}
		served.Flush()
		for _, conc := range []int{1, concurrency} {
			b.Run(fmt.Sprintf("%s/conc=%d", mode, conc), func(b *testing.B) {
				run(b, conc, func(i int) { e.Peek(xs[i%len(xs)]) })
			})
		}
		// 64 streams at 4000 requests a second in all: what the load tool's inline run sees
		// on this machine, without the load tool's own CPU use.
		b.Run(fmt.Sprintf("%s/conc=%d/rate=4000", mode, concurrency), func(b *testing.B) {
			paced(b, concurrency, 4000, func(i int) { e.Peek(xs[i%len(xs)]) })
		})
		// PeekSession: what an answer without dynamic metadata asks (the default).
		b.Run(fmt.Sprintf("%s/session/conc=%d/rate=4000", mode, concurrency), func(b *testing.B) {
			paced(b, concurrency, 4000, func(i int) { e.PeekSession(xs[i%len(xs)]) })
		})
	}
	if st := c.Stats(); st.Errors[OpPeek]+st.Skipped[OpPeek] > 0 {
		b.Errorf("peeks decided locally: %+v", st)
	}
}

// BenchmarkEngineObserve is what observing a request costs with shared state: 64 goroutines
// observe requests of 256 clients carrying session cookies (the load tool's clients; each
// request's time is later than the last) at 30,000 a second in all, about the load tool's
// rate, and the engine's part workers stitch and number them in Redis in batches; the run
// ends when every record is out. It reports the process's CPU time per request (cpu-µs/op:
// Observe, the workers, the Redis client) and Redis's own (redis-cpu-µs/op), which on one
// machine competes with Envoy's path. Local is the same engine without Redis.
// go test -run '^$' -bench EngineObserve -benchtime 200000x ./state
func BenchmarkEngineObserve(b *testing.B) {
	const rate = 30000
	for _, mode := range []string{"local", "redis"} {
		b.Run(mode, func(b *testing.B) {
			var c *Client
			if mode == "redis" {
				c, _ = newTestClient(b, testRedis(b), nil)
			}
			e, _ := newStitchEngine(b, c)
			at := time.Now()
			var n atomic.Int64
			observe := func() {
				i := n.Add(1)
				t := at.Add(time.Duration(i) * time.Microsecond)
				e.Observe(&traffic.Exchange{RequestID: "r", Start: t, End: t.Add(time.Millisecond), Method: "GET",
					Scheme: "https", Host: "api.example.com", Path: "/orders", SourceAddress: "203.0.113.7:5000",
					RequestHeaders: []traffic.Header{{Name: "cookie", Value: fmt.Sprintf("PHPSESSID=client-%03d-0f3c9b2d8e14a7c9", i%256)}},
					ResponseSeen:   true, Status: 200})
			}
			for range 1024 {
				observe()
			}
			e.Flush()
			var rcpu0 float64
			if c != nil {
				rcpu0 = redisCPU(b, c)
			}
			cpu0 := processCPU(b)
			per := max(1, b.N/concurrency)
			every := time.Duration(concurrency) * time.Second / rate
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range concurrency {
				wg.Go(func() {
					time.Sleep(every * time.Duration(g) / concurrency) // spread over each period
					tk := time.NewTicker(every)
					defer tk.Stop()
					for range per {
						<-tk.C
						observe()
					}
				})
			}
			wg.Wait()
			e.Flush()
			b.StopTimer()
			ops := float64(per * concurrency)
			b.ReportMetric((processCPU(b)-cpu0)*1e6/ops, "cpu-µs/op")
			if c != nil {
				b.ReportMetric((redisCPU(b, c)-rcpu0)*1e6/ops, "redis-cpu-µs/op")
				if st := c.Stats(); st.Errors[OpObserve]+st.Skipped[OpObserve] > 0 {
					b.Errorf("requests decided locally: %+v", st)
				}
			}
			if st := e.Stats(); st.SharedQueueFull+st.LinksFailOpen > 0 {
				b.Errorf("requests decided locally: %+v", st)
			}
		})
	}
}

// processCPU is the CPU time, in seconds, this process has used.
func processCPU(b *testing.B) float64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// redisCPU is the CPU time, in seconds, the Redis server of c has used since it started.
func redisCPU(b *testing.B, c *Client) float64 {
	b.Helper()
	s, err := c.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %q: %v", line, err)
			}
			sum += f
		}
	}
	return sum
}
