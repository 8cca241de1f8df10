package sinks

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// tally counts what becomes of one output's records (the counters OutputStats reports) and
// writes the log lines about records lost. Emit, the queue and the worker all add to it.
type tally struct {
	logger    *slog.Logger
	queueSize int  // quoted by the drop line
	withSpool bool // the drop line quotes the spool's losses too
	// stopped is set when the pipeline shuts down.
	stopped atomic.Bool

	// Written by Emit on every record; kept apart from what the worker writes (below) so that
	// producers and the worker do not share a cache line.
	_        [64]byte
	accepted atomic.Uint64
	dropped  atomic.Uint64
	// Drop logging, rate-limited: dropLogPending is set by the first drop after a line was
	// scheduled, so Emit schedules at most one timer per line; dropLogLast is the time of the
	// last line in Unix nanoseconds (0 = none yet).
	dropLogPending atomic.Bool
	dropLogLast    atomic.Int64
	_              [64]byte

	delivered    atomic.Uint64
	failed       atomic.Uint64
	retried      atomic.Uint64
	spooled      atomic.Uint64
	replayed     atomic.Uint64
	spoolDropped atomic.Uint64
	rejected     atomic.Uint64

	dropLogMu    sync.Mutex
	dropReported uint64 // guarded by dropLogMu: dropped as of the last line
}

// drop counts n dropped records and makes sure a log line will report them.
func (t *tally) drop(n int) {
	if n <= 0 {
		return
	}
	t.dropped.Add(uint64(n))
	// The plain load keeps a flood of drops from contending on the flag's cache line.
	if !t.dropLogPending.Load() && t.dropLogPending.CompareAndSwap(false, true) {
		t.scheduleDropLog()
	}
}

// scheduleDropLog arranges for logDrops to run as soon as dropLogInterval has passed since the
// last line. The line is written from a timer goroutine: Emit never does I/O.
func (t *tally) scheduleDropLog() {
	var delay time.Duration
	if last := t.dropLogLast.Load(); last != 0 {
		delay = time.Duration(last + int64(dropLogInterval) - time.Now().UnixNano())
	}
	time.AfterFunc(max(delay, 0), t.logDrops)
}

// logDrops writes one line with the records dropped since the previous line.
func (t *tally) logDrops() {
	t.dropLogMu.Lock()
	defer t.dropLogMu.Unlock()
	total := t.dropped.Load()
	if n := total - t.dropReported; n > 0 {
		t.dropReported = total
		t.dropLogLast.Store(time.Now().UnixNano())
		msg := "sink queue full, records dropped"
		if t.stopped.Load() {
			msg = "sinks shut down, records dropped"
		}
		attrs := []any{"dropped", n, "dropped_total", total, "queue_size", t.queueSize}
		if t.withSpool {
			attrs = append(attrs, "spool_dropped_total", t.spoolDropped.Load())
		}
		t.logger.Warn(msg, attrs...)
	}
	t.dropLogPending.Store(false)
	// A drop counted after the Load above found the flag still set and scheduled nothing.
	if t.dropped.Load() != t.dropReported && t.dropLogPending.CompareAndSwap(false, true) {
		t.scheduleDropLog()
	}
}

// lostInSpool counts records the spool lost and says so; this happens at most once per segment,
// so it needs no rate limit.
func (t *tally) lostInSpool(n int, msg string) {
	if n <= 0 {
		return
	}
	t.dropped.Add(uint64(n))
	t.spoolDropped.Add(uint64(n))
	t.logger.Warn(msg, "dropped", n, "spool_dropped_total", t.spoolDropped.Load())
}
