package sinks

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DropReason says why a record was dropped: lost without a write.
type DropReason uint8

// Why records are dropped. Each is counted apart (OutputStats.Drops).
const (
	// DropQueueFull: offered to a full in-memory queue (for an evidence record: full of
	// evidence, so no plain record could make room).
	DropQueueFull DropReason = iota
	// DropFloodKey: a plain record of a session key that added far more records than the
	// others while the sink was behind (see docs/reliability.md).
	DropFloodKey
	// DropEvictedForEvidence: a plain record taken out of a full queue to make room for an
	// evidence record.
	DropEvictedForEvidence
	// DropSpoolFull: deleted from a full spool to make room (plain records only), or refused by
	// a spool full of evidence.
	DropSpoolFull
	// DropSpoolDamaged: found damaged in the spool when read back.
	DropSpoolDamaged
	// DropSpoolError: the spool could not be written.
	DropSpoolError
	// DropShutdown: emitted after shutdown began, or left in memory at the shutdown deadline
	// without a spool.
	DropShutdown
	// NumDropReasons is the number of reasons.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	"queue_full", "flood_key", "evicted_for_evidence", "spool_full", "spool_damaged", "spool_error", "shutdown",
}

// String is the reason's metric label value, e.g. "queue_full".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DropCounts counts dropped records by reason.
type DropCounts [NumDropReasons]uint64

// Total is the sum over every reason.
func (d DropCounts) Total() uint64 {
	var n uint64
	for _, v := range d {
		n += v
	}
	return n
}

// spoolReasons are the reasons of records the spool lost.
var spoolReasons = [...]DropReason{DropSpoolFull, DropSpoolDamaged, DropSpoolError}

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
	drops    [NumDropReasons]atomic.Uint64
	// evidenceDropped counts the evidence records among the drops.
	evidenceDropped atomic.Uint64
	// Drop logging, rate-limited: dropLogPending is set by the first drop after a line was
	// scheduled, so Emit schedules at most one timer per line; dropLogLast is the time of the
	// last line in Unix nanoseconds (0 = none yet).
	dropLogPending atomic.Bool
	dropLogLast    atomic.Int64
	_              [64]byte

	delivered atomic.Uint64
	failed    atomic.Uint64
	retried   atomic.Uint64
	spooled   atomic.Uint64
	replayed  atomic.Uint64
	rejected  atomic.Uint64

	dropLogMu    sync.Mutex
	dropReported uint64 // guarded by dropLogMu: dropped as of the last line
}

// dropCounts reads the drop counters.
func (t *tally) dropCounts() DropCounts {
	var d DropCounts
	for i := range t.drops {
		d[i] = t.drops[i].Load()
	}
	return d
}

// dropped is the number of records dropped for any reason.
func (t *tally) dropped() uint64 { return t.dropCounts().Total() }

// spoolDropped is the number of records the spool lost.
func (t *tally) spoolDropped() uint64 {
	var n uint64
	for _, r := range spoolReasons {
		n += t.drops[r].Load()
	}
	return n
}

// drop counts n dropped records, evidence of them evidence records, and makes sure a log line
// will report them.
func (t *tally) drop(r DropReason, n, evidence int) {
	if n <= 0 {
		return
	}
	t.drops[r].Add(uint64(n))
	if evidence > 0 {
		t.evidenceDropped.Add(uint64(evidence))
	}
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
	counts := t.dropCounts()
	total := counts.Total()
	if n := total - t.dropReported; n > 0 {
		t.dropReported = total
		t.dropLogLast.Store(time.Now().UnixNano())
		msg := "sink queue full, records dropped"
		if t.stopped.Load() {
			msg = "sinks shut down, records dropped"
		}
		var reasons []any
		for r, v := range counts {
			if v > 0 {
				reasons = append(reasons, DropReason(r).String(), v)
			}
		}
		attrs := []any{"dropped", n, "dropped_total", total, "queue_size", t.queueSize,
			"evidence_dropped_total", t.evidenceDropped.Load(), slog.Group("dropped_by_reason", reasons...)}
		if t.withSpool {
			attrs = append(attrs, "spool_dropped_total", t.spoolDropped())
		}
		t.logger.Warn(msg, attrs...)
	}
	t.dropLogPending.Store(false)
	// A drop counted after the Load above found the flag still set and scheduled nothing.
	if t.dropped() != t.dropReported && t.dropLogPending.CompareAndSwap(false, true) {
		t.scheduleDropLog()
	}
}

// lostInSpool counts records the spool lost to damage or a failed write and says so at once:
// both are rare, and worth a line each. A full spool's drops go through drop, rate-limited.
func (t *tally) lostInSpool(r DropReason, n, evidence int, msg string, attrs ...any) {
	if n <= 0 {
		return
	}
	t.drops[r].Add(uint64(n))
	if evidence > 0 {
		t.evidenceDropped.Add(uint64(evidence))
	}
	attrs = append([]any{"dropped", n, "evidence_dropped", evidence, "spool_dropped_total", t.spoolDropped()}, attrs...)
	t.logger.Warn(msg, attrs...)
}
