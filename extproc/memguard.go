package extproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The memory guard (GRPCOptions.MemoryLimitBytes) keeps the process's resident memory under
// its limit when streams flood in: one goroutine samples the resident memory and publishes
// what streams may do in one atomic, which the stream path reads with one atomic load, in the
// interceptor and where a body reservation is made.
//
//   - From memoryLowMark of the limit, bodies are not kept: a body's next bytes are refused as
//     the body budget refuses them, and the request is recorded without its body.
//   - From memoryHighMark, counting memoryStreamReserve for every open stream, new ext_proc
//     streams are refused at once with RESOURCE_EXHAUSTED, as past max_streams; Envoy applies
//     failure_mode_allow.
//
// Each sample sets both anew, so they end as soon as memory is back under the marks.

// What the memory guard asks of streams, in bodyBudget.pressure: bits.
const (
	memoryShed   int32 = 1 << iota // bodies are not kept
	memoryRefuse                   // new streams are refused
)

// The marks, as fractions of the limit; see docs/security.md for how they were measured. The
// room above the high mark is for what admitted streams still receive between two samples and
// for the collector's lag; between the marks, streams still come in but keep no body.
const (
	memoryLowMark  = 0.80
	memoryHighMark = 0.90
)

// memoryStreamReserve is what the guard counts, beside the resident memory, for each open
// stream when it decides whether to admit more: gRPC's initial window per stream (64 KiB),
// what a stream's peer may send before the server reads any of it. A flood's streams are
// admitted at their request headers and their bodies arrive after: without the reserve, ten
// thousand streams are in while the process is still small, and then bring 600 MB.
const memoryStreamReserve = 64 << 10

// memorySampleEvery is the guard's sampling period: reading /proc/self/statm costs about 2 µs
// (BenchmarkMemorySample), and what a flood admits between two samples fits in the room above
// the high mark.
const memorySampleEvery = 50 * time.Millisecond

// memoryLogEvery is the least time between two warnings of the same kind.
const memoryLogEvery = time.Minute

// errMemoryFull refuses a stream while the process is near its memory limit.
var errMemoryFull = status.Error(codes.ResourceExhausted, "ext_proc stream refused: the process is near server.memory_limit_bytes")

// memoryGuard samples the process's resident memory and sets what srv's streams may do.
type memoryGuard struct {
	srv       *Server
	limit     int64
	low, high int64 // the marks in bytes
	reserve   int64 // per open stream, toward the high mark
	sample    func() (int64, error)
	now       func() time.Time

	// The sampler goroutine's own state.
	pressure int32
	warned   [3]time.Time // when the last warning of each kind went out (see warn)
	sampleOK bool         // the last sample succeeded

	stop    chan struct{}
	stopped sync.WaitGroup
	once    sync.Once
}

// Kinds of warnings, each logged at most once per memoryLogEvery.
const (
	warnSample = iota
	warnShed
	warnRefuse
)

// newMemoryGuard returns a guard of srv's streams for limit bytes of resident memory; nil when
// limit is not positive (no limit: nothing is guarded and streams pay nothing). sample reads
// the resident memory; nil reads the process's own (see residentMemory).
func newMemoryGuard(srv *Server, limit int64, sample func() (int64, error)) *memoryGuard {
	if limit <= 0 {
		return nil
	}
	if sample == nil {
		sample = residentMemory()
	}
	return &memoryGuard{
		srv:      srv,
		limit:    limit,
		low:      int64(float64(limit) * memoryLowMark),
		high:     int64(float64(limit) * memoryHighMark),
		reserve:  memoryStreamReserve,
		sample:   sample,
		now:      time.Now,
		sampleOK: true,
		stop:     make(chan struct{}),
	}
}

// start takes a first sample and runs the sampler until end.
func (g *memoryGuard) start() {
	if g == nil {
		return
	}
	g.check()
	g.stopped.Add(1)
	go func() {
		defer g.stopped.Done()
		t := time.NewTicker(memorySampleEvery)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				g.check()
			}
		}
	}()
}

// end stops the sampler and lifts what it asked of streams.
func (g *memoryGuard) end() {
	if g == nil {
		return
	}
	g.once.Do(func() { close(g.stop) })
	g.stopped.Wait()
	g.srv.budget.pressure.Store(0)
}

// check takes one sample and publishes what it asks of streams. A failed sample changes
// nothing: the guard neither refuses nor admits on a reading it does not have.
func (g *memoryGuard) check() {
	rss, err := g.sample()
	if err != nil {
		if g.sampleOK {
			g.warn(warnSample, "memory guard: resident memory not read", slog.String("error", err.Error()))
		}
		g.sampleOK = false
		return
	}
	g.sampleOK = true
	open := g.srv.stats.streamsOpen.Load()
	var p int32
	if rss >= g.low {
		p |= memoryShed
	}
	if rss+open*g.reserve >= g.high {
		p |= memoryRefuse
	}
	g.srv.budget.pressure.Store(p)
	rose := p &^ g.pressure
	g.pressure = p
	if rose == 0 {
		return
	}
	kind, msg := warnShed, "memory guard: bodies not kept"
	if rose&memoryRefuse != 0 {
		kind, msg = warnRefuse, "memory guard: new streams refused"
	}
	g.warn(kind, msg, func() []slog.Attr {
		s := g.srv.Stats()
		return []slog.Attr{
			slog.Int64("resident_bytes", rss),
			slog.Int64("limit_bytes", g.limit),
			slog.Int64("streams_open", open),
			slog.Uint64("streams_refused_total", s.StreamsRefusedMemory),
			slog.Uint64("bodies_not_kept_total", s.BodiesOverMemory),
		}
	}()...)
}

// warn logs msg unless a warning of the same kind went out less than memoryLogEvery ago.
func (g *memoryGuard) warn(kind int, msg string, attrs ...slog.Attr) {
	now := g.now()
	if last := g.warned[kind]; !last.IsZero() && now.Sub(last) < memoryLogEvery {
		return
	}
	g.warned[kind] = now
	g.srv.settings.Load().log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// residentMemory returns a reader of the process's resident memory: on Linux the resident
// pages of /proc/self/statm, which count everything mapped and touched (Go's heap and stacks,
// the binary, SQLite's own allocations); elsewhere what the Go runtime holds from the system
// and has not given back.
func residentMemory() func() (int64, error) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return goMemory
	}
	page := int64(os.Getpagesize())
	var buf [128]byte
	return func() (int64, error) {
		n, err := f.ReadAt(buf[:], 0)
		if n == 0 && err != nil {
			return 0, fmt.Errorf("read /proc/self/statm: %w", err)
		}
		return statmResident(buf[:n], page)
	}
}

// statmResident reads the second field of a statm line (resident pages) as bytes.
func statmResident(line []byte, page int64) (int64, error) {
	fields := bytes.Fields(line)
	if len(fields) < 2 {
		return 0, errors.New("/proc/self/statm: no resident field")
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil || pages < 0 {
		return 0, fmt.Errorf("/proc/self/statm: resident field %q", fields[1])
	}
	return pages * page, nil
}

// goMemory is the memory the Go runtime holds from the system, less what it gave back.
func goMemory() (int64, error) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0, errors.New("runtime/metrics: no memory classes")
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64()), nil
}
