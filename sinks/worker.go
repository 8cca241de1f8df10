package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks/spool"
)

// output is one sink's queue, worker, spool and counters.
type output struct {
	name   string
	sink   Sink
	logger *slog.Logger
	// queue is a buffered channel: a non-blocking send costs tens of nanoseconds and needs no
	// allocation. A mutex-guarded ring drained a batch at a time lets the worker take records
	// several times faster, but both take over a million records a second, far beyond what
	// any sink writes, so the simpler channel stays.
	queue         chan record.Record
	batchSize     int
	flushInterval time.Duration
	writeTimeout  time.Duration
	retry         RetryPolicy
	spool         *spool.Spool   // nil: failed batches are retried in memory
	rejects       *spool.Rejects // nil: refused batches are dropped
	now           func() time.Time

	// ctx bounds the worker's writes; cancel aborts a write in flight at the shutdown deadline.
	ctx    context.Context
	cancel context.CancelFunc
	// stop is closed when Shutdown begins: retry waits end and no batch is tried twice.
	stop chan struct{}
	// done is closed when the worker returns.
	done    chan struct{}
	running atomic.Bool
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

	// mu guards the records the worker holds (taken off the queue or read from the spool)
	// against Shutdown abandoning the output at its deadline, and orders every move of records
	// from the queue into the spool, so that records keep their order even when the worker and
	// abandon both move some.
	mu            sync.Mutex
	held          []record.Record
	heldFromSpool bool // the held records are still in the spool (not yet committed)
	abandoned     bool
	// prespooled counts the records of a fresh batch in flight that were copied to the spool's
	// head because the write was slow (fewer when a full spool pushed some out).
	prespooled int

	// Touched by the worker only.
	down        bool // the sink failed and the spool holds records for it
	failLogLast time.Time
	failBatches int // failed batches not yet logged
	failRecords int // records of those batches that failed
	chunk       []record.Record
}

// run is the output's worker. While the spool is empty it batches what the queue holds and
// delivers it; once a batch could not be delivered, it goes to the spool, and from then on
// every record does, behind it, until the spool has been replayed to the sink: the order of
// records is kept across outages.
func (o *output) run() {
	defer close(o.done)
	defer o.running.Store(false)
	batch := make([]record.Record, 0, o.batchSize)
	timer := time.NewTimer(o.flushInterval)
	timer.Stop()
	for {
		if o.spool != nil && o.spool.Len() > 0 {
			if o.stopped.Load() {
				// Nothing is replayed during a shutdown; the queue joins the spool's tail.
				o.moveToSpool(true)
				return
			}
			if !o.replay() {
				return
			}
			continue
		}
		if o.down {
			o.down = false
			o.logger.Info("sink recovered, spool replayed", "replayed_total", o.replayed.Load())
		}
		rec, ok := <-o.queue
		if !ok {
			return
		}
		batch = append(batch, rec)
		var open bool
		batch, open = o.fill(batch, timer)
		if !o.deliverFresh(batch) {
			return
		}
		clear(batch) // let the records go before the next batch arrives
		batch = batch[:0]
		if !open && (o.spool == nil || o.spool.Len() == 0) {
			return
		}
	}
}

// fill adds queued records to batch until it holds batchSize records or flushInterval has
// passed since it was called. It reports false when the queue is closed and empty, in which
// case the batch is written at once: shutdown does not wait for intervals.
func (o *output) fill(batch []record.Record, timer *time.Timer) ([]record.Record, bool) {
	if len(batch) >= o.batchSize {
		return batch, true
	}
	timer.Reset(o.flushInterval)
	defer timer.Stop()
	for len(batch) < o.batchSize {
		select {
		case rec, ok := <-o.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, rec)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// deliverFresh delivers a batch taken off the queue. What the sink could not take goes to the
// spool, or without one is retried in memory. It reports false when the output was abandoned.
func (o *output) deliverFresh(batch []record.Record) bool {
	start := o.now()
	for n := 0; ; n++ {
		rest, err, alive := o.attempt(batch, false)
		if !alive {
			return false
		}
		if len(rest) == 0 {
			return true
		}
		if o.spool != nil {
			o.noteFailure(len(rest), err)
			o.retried.Add(1) // from the spool
			o.enterDown(err)
			return o.toSpool(rest)
		}
		if !o.retry.enabled() || o.stopped.Load() || o.retry.expired(start, o.now()) {
			o.giveUp(rest, err)
			return true
		}
		o.noteFailure(len(rest), err)
		o.retried.Add(1)
		// Without a spool nothing can take the queue's records meanwhile: it fills and Emit
		// drops, which the drop counter and log report.
		o.wait(o.retry.backoff(n, err), false)
		batch = rest
	}
}

// replay delivers one batch from the spool's head, retrying until it is delivered, given up or
// the pipeline stops, while new records keep moving from the queue to the spool's tail. It
// reports false when the output was abandoned.
func (o *output) replay() bool {
	if !o.moveToSpool(false) {
		return false
	}
	entries, next, skipped, err := o.spool.Read(o.batchSize, replayBatchBytes)
	if skipped > 0 {
		o.lostInSpool(skipped, "damaged records skipped in the spool")
	}
	if err != nil {
		o.logger.Warn("read spool", "error", err.Error())
		o.spool.Rewind()
		o.wait(o.retry.backoff(0, nil), true)
		return true
	}
	if len(entries) == 0 {
		if o.spool.Len() > 0 {
			// Records wait that Read did not hand out (a failed commit): read them again later.
			o.spool.Rewind()
			o.wait(o.retry.backoff(0, nil), true)
		}
		return true
	}
	recs := make([]record.Record, 0, len(entries))
	pos := make([]spool.Pos, 0, len(entries))
	undecodable := 0
	for i, e := range entries {
		rec, err := decodeEntry(e)
		if err != nil {
			undecodable++
			continue
		}
		recs = append(recs, rec)
		pos = append(pos, next[i])
	}
	last := next[len(next)-1]
	if undecodable > 0 {
		o.failed.Add(uint64(undecodable))
		o.logger.Warn("spooled records could not be decoded, dropped", "records", undecodable)
	}
	start := o.now()
	for n := 0; len(recs) > 0; n++ {
		rest, err, alive := o.attempt(recs, true)
		if !alive {
			return false
		}
		if len(rest) == 0 {
			break
		}
		if done := len(recs) - len(rest); done > 0 {
			o.commit(pos[done-1])
			pos = pos[done:]
		}
		if o.retry.expired(start, o.now()) {
			o.giveUp(rest, err)
			break
		}
		o.noteFailure(len(rest), err)
		o.retried.Add(1)
		if !o.wait(o.retry.backoff(n, err), true) {
			// Stopping: the batch stays in the spool for the next start.
			o.spool.Rewind()
			o.release()
			return true
		}
		recs = rest
	}
	o.commit(last)
	o.release()
	return true
}

func (o *output) commit(p spool.Pos) {
	if err := o.spool.Commit(p); err != nil {
		o.logger.Warn("commit spool position", "error", err.Error())
	}
}

// attempt writes batch once, accounts for what was delivered or given up, and returns the
// records worth retrying (a tail of batch) with the error. alive is false when the output was
// abandoned meanwhile: the caller must then let the batch go.
func (o *output) attempt(batch []record.Record, fromSpool bool) (rest []record.Record, err error, alive bool) {
	o.mu.Lock()
	if o.abandoned {
		if !fromSpool {
			o.lateRecords(batch)
		}
		o.mu.Unlock()
		return nil, nil, false
	}
	o.held, o.heldFromSpool = batch, fromSpool
	o.prespooled = 0
	o.mu.Unlock()

	err = o.writeWatching(batch, fromSpool)

	o.mu.Lock()
	if o.abandoned {
		o.mu.Unlock()
		return nil, nil, false
	}
	failed := 0
	var reject []record.Record
	switch {
	case err == nil:
	case IsPermanent(err):
		if pe, ok := errors.AsType[*PartialError](err); ok {
			failed = min(max(pe.Failed, 0), len(batch))
		} else {
			failed = len(batch)
			reject = batch
		}
		o.failed.Add(uint64(failed))
	default:
		if pe, ok := errors.AsType[*PartialError](err); ok {
			failed = min(max(pe.Failed, 0), len(batch))
		} else {
			failed = len(batch)
		}
		// A sink that writes in order fails from the first record it could not write on.
		rest = batch[len(batch)-failed:]
	}
	ok := uint64(len(batch) - failed)
	o.delivered.Add(ok)
	if fromSpool {
		o.replayed.Add(ok)
	}
	o.held = rest
	if pre := o.prespooled; pre > 0 {
		// The batch went to the spool's head while its write was slow: take out of the spool
		// what needs no retry; the rest stays there, first in line.
		o.prespooled = 0
		if _, derr := o.spool.Discard(min(pre, len(batch)-len(rest))); derr != nil {
			o.logger.Warn("discard delivered records from the spool", "error", derr.Error())
		}
		if len(rest) > 0 {
			o.held, o.heldFromSpool = nil, false
			rest = nil
			o.retried.Add(1) // from the spool
			o.mu.Unlock()
			o.noteFailure(failed, err)
			o.enterDown(err)
			return nil, err, true
		}
	}
	o.mu.Unlock()

	if err != nil && IsPermanent(err) {
		o.noteFailure(failed, err)
		if reject != nil {
			o.reject(reject, err)
		}
	}
	return rest, err, true
}

// spillCheck is how often a worker whose write is in flight looks at its queue.
const spillCheck = 10 * time.Millisecond

// writeWatching writes batch. With a spool, the write runs in its own goroutine while the worker
// keeps the queue flowing: once the queue is half full, the batch in flight is copied to the
// spool (unless it came from there) and every record that arrives goes behind it, so a slow sink
// never makes Emit drop. Close never runs before this returns.
func (o *output) writeWatching(batch []record.Record, fromSpool bool) error {
	ctx, cancel := context.WithTimeout(o.ctx, o.writeTimeout)
	defer cancel()
	if o.spool == nil {
		return o.write(ctx, batch)
	}
	res := make(chan error, 1)
	go func() { res <- o.write(ctx, batch) }()
	tick := time.NewTicker(spillCheck)
	defer tick.Stop()
	for spilling := false; ; {
		if spilling {
			// Keep moving records until the write returns.
			select {
			case err := <-res:
				return err
			case rec, ok := <-o.queue:
				if !ok {
					return <-res
				}
				if _, _, alive := o.spoolChunk(rec); !alive {
					return <-res
				}
			}
			continue
		}
		select {
		case err := <-res:
			return err
		case <-tick.C:
		}
		if 2*len(o.queue) < cap(o.queue) {
			continue
		}
		o.mu.Lock()
		if o.abandoned {
			o.mu.Unlock()
			return <-res
		}
		if !fromSpool {
			before := o.spooled.Load()
			o.spoolLocked(batch)
			o.prespooled = int(o.spooled.Load() - before)
			o.heldFromSpool = true
		}
		o.mu.Unlock()
		spilling = true
		if !o.moveToSpool(false) {
			return <-res
		}
	}
}

// write calls the sink, turning a panic into an error so one bad sink cannot end the process.
func (o *output) write(ctx context.Context, batch []record.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(v)
		}
	}()
	return o.sink.Write(ctx, batch)
}

// panicError describes a recovered panic. Only runtime errors are quoted: any other value a
// sink panics with might carry record content.
func panicError(v any) error {
	if re, ok := v.(runtime.Error); ok {
		return fmt.Errorf("sink panicked: %w", re)
	}
	return fmt.Errorf("sink panicked with a %T", v)
}

// giveUp counts records that will not be tried again.
func (o *output) giveUp(recs []record.Record, err error) {
	o.failed.Add(uint64(len(recs)))
	o.noteFailure(len(recs), err)
	o.release()
}

// release forgets the held records once they are accounted for.
func (o *output) release() {
	o.mu.Lock()
	o.held, o.heldFromSpool = nil, false
	o.mu.Unlock()
}

// reject keeps a refused batch in the rejects file, when there is one.
func (o *output) reject(batch []record.Record, cause error) {
	if o.rejects == nil {
		return
	}
	lines := make([][]byte, 0, len(batch))
	for _, rec := range batch {
		e, err := encodeEntry(rec)
		if err != nil {
			continue
		}
		lines = append(lines, e[1:])
	}
	dropped, err := o.rejects.Add(cause.Error(), lines)
	if err != nil {
		o.logger.Warn("write rejects file", "error", err.Error())
		return
	}
	o.rejected.Add(uint64(len(lines) - dropped))
}

// enterDown logs the start of an outage once.
func (o *output) enterDown(err error) {
	if o.down {
		return
	}
	o.down = true
	o.logger.Warn("sink down, spooling records", "error", err.Error())
}

// toSpool appends records the worker holds to the spool. It reports false when the output was
// abandoned meanwhile (abandon then spooled them itself).
func (o *output) toSpool(recs []record.Record) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.abandoned {
		return false
	}
	o.spoolLocked(recs)
	o.held, o.heldFromSpool = nil, false
	return true
}

// moveToSpool moves what the queue holds to the spool's tail, a chunk at a time; with untilClosed
// it waits for records until the queue is closed. It reports false when the output was
// abandoned.
func (o *output) moveToSpool(untilClosed bool) bool {
	for {
		closed, full, alive := o.spoolChunk(nil)
		switch {
		case !alive:
			return false
		case closed:
			return true
		case full:
			continue
		case !untilClosed:
			return true
		}
		// Wait for the next record (or the close) without holding mu.
		rec, ok := <-o.queue
		if !ok {
			return true
		}
		if _, _, alive := o.spoolChunk(rec); !alive {
			return false
		}
	}
}

// spoolChunk appends first (when not nil) and up to a batch of queued records to the spool
// with one write. It reports whether it found the queue closed or took a full batch, and false
// for alive when the output was abandoned (first, if any, is then spooled or dropped anyway).
func (o *output) spoolChunk(first record.Record) (closed, full, alive bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.abandoned {
		if first != nil {
			o.lateRecords([]record.Record{first})
		}
		return false, false, false
	}
	chunk := o.chunk[:0]
	if first != nil {
		chunk = append(chunk, first)
	}
take:
	for len(chunk) < o.batchSize {
		select {
		case rec, ok := <-o.queue:
			if !ok {
				closed = true
				break take
			}
			chunk = append(chunk, rec)
		default:
			break take
		}
	}
	if len(chunk) > 0 {
		o.spoolLocked(chunk)
	}
	full = len(chunk) == o.batchSize
	clear(chunk)
	o.chunk = chunk[:0]
	return closed, full, true
}

// lateRecords handles records the worker took off the queue after abandon had emptied it: they
// join the spool (slightly out of order, at the very end of a shutdown) or are dropped. o.mu is
// held.
func (o *output) lateRecords(recs []record.Record) {
	if o.spool != nil {
		o.spoolLocked(recs)
		return
	}
	o.drop(uint64(len(recs)))
}

// spoolLocked appends recs to the spool; o.mu is held. Records that cannot be encoded are
// failed, records the spool pushes out or cannot write are dropped.
func (o *output) spoolLocked(recs []record.Record) {
	entries := make([][]byte, 0, len(recs))
	bad := 0
	for _, rec := range recs {
		e, err := encodeEntry(rec)
		if err != nil {
			bad++
			continue
		}
		entries = append(entries, e)
	}
	if bad > 0 {
		o.failed.Add(uint64(bad))
		o.logger.Warn("records could not be encoded for the spool, dropped", "records", bad)
	}
	if len(entries) == 0 {
		return
	}
	pushed, err := o.spool.Append(entries)
	o.prespooled = max(o.prespooled-pushed, 0)
	if pushed > 0 {
		o.lostInSpool(pushed, "spool full, oldest records dropped")
	}
	if err != nil {
		// Nothing of this call is known to be on disk beyond what was counted: treat the batch
		// as lost rather than risk counting it twice.
		o.dropped.Add(uint64(len(entries)))
		o.spoolDropped.Add(uint64(len(entries)))
		o.logger.Warn("write spool, records dropped", "records", len(entries), "error", err.Error())
		return
	}
	o.spooled.Add(uint64(len(entries)))
}

// lostInSpool counts records the spool lost and says so; this happens at most once per segment,
// so it needs no rate limit.
func (o *output) lostInSpool(n int, msg string) {
	o.dropped.Add(uint64(n))
	o.spoolDropped.Add(uint64(n))
	o.logger.Warn(msg, "dropped", n, "spool_dropped_total", o.spoolDropped.Load())
}

func (o *output) spoolLen() int {
	if o.spool == nil {
		return 0
	}
	return o.spool.Len()
}

// wait sleeps for d, or until Shutdown begins (then it reports false). With drain, records that
// arrive meanwhile move to the spool, so the queue never fills because the sink is down.
func (o *output) wait(d time.Duration, drain bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var queue chan record.Record
	if drain {
		queue = o.queue
	}
	for {
		select {
		case <-timer.C:
			return true
		case <-o.stop:
			return false
		case rec, ok := <-queue:
			if !ok {
				return false
			}
			if _, _, alive := o.spoolChunk(rec); !alive {
				return false
			}
		}
	}
}

// noteFailure logs failed writes at most once per failLogInterval, with the batches and
// records that failed since the previous line.
func (o *output) noteFailure(records int, err error) {
	if err == nil {
		return
	}
	o.failBatches++
	o.failRecords += records
	now := time.Now()
	if !o.failLogLast.IsZero() && now.Sub(o.failLogLast) < failLogInterval {
		return
	}
	o.logger.Warn("sink write failed",
		"batches", o.failBatches, "records", o.failRecords,
		"permanent", IsPermanent(err), "error", err.Error())
	o.failLogLast = now
	o.failBatches, o.failRecords = 0, 0
}
