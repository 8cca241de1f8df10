package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks/spool"
)

// output is one sink as the pipeline runs it: its queue, its worker and its counters.
//
// The worker is a chain: read a batch from the queue → write it to the sink with a timeout →
// account for what happened → tell the queue with done → wait before a retry. A retry needs no
// state of its own in the worker: what done did not finish is the queue's next batch (on disk,
// with a spool). Shutdown stops the retries, lets the worker drain the closed queue, and closes.
type output struct {
	name    string
	sink    Sink
	logger  *slog.Logger
	queue   queue
	rejects *spool.Rejects // nil: refused batches are dropped

	writeTimeout time.Duration
	retry        retrier
	now          func() time.Time

	// ctx bounds the worker's writes; cancel aborts a write in flight at the shutdown deadline.
	ctx    context.Context
	cancel context.CancelFunc
	// stop is closed when Shutdown begins: retry waits end.
	stop chan struct{}
	// done is closed when the worker returns.
	done    chan struct{}
	running atomic.Bool

	tally

	// Touched by the worker only.
	down        bool // the sink failed and the spool holds records for it
	failLogLast time.Time
	failBatches int // failed batches not yet logged
	failRecords int // records of those batches that failed
}

// newOutput builds the output of oc and starts its worker.
func newOutput(oc Output, name string, logger *slog.Logger) *output {
	o := &output{
		name:         name,
		sink:         oc.Sink,
		logger:       logger.With("sink", name),
		rejects:      oc.Rejects,
		writeTimeout: orDefault(oc.WriteTimeout, DefaultWriteTimeout),
		retry:        retrier{RetryPolicy: oc.Retry},
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
		now:          time.Now,
	}
	o.tally.logger = o.logger
	o.queueSize = orDefault(oc.QueueSize, DefaultQueueSize)
	in := newIntake(o.queueSize, orDefault(oc.BatchSize, DefaultBatchSize),
		orDefault(oc.FlushInterval, DefaultFlushInterval))
	if oc.Spool == nil {
		o.queue = newMemQueue(in, &o.tally)
	} else {
		if !o.retry.enabled() {
			// A spool only makes sense with retries: its records wait for the next try.
			o.retry.RetryPolicy = DefaultRetryPolicy()
		}
		if n := oc.Spool.Len(); n > 0 {
			o.logger.Info("replaying spooled records", "records", n, "spool_bytes", oc.Spool.Bytes())
			o.down = true
		}
		o.withSpool = true
		o.queue = newSpoolQueue(in, oc.Spool, &o.tally)
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.running.Store(true)
	go o.run()
	return o
}

// run is the output's worker.
func (o *output) run() {
	defer close(o.done)
	defer o.running.Store(false)
	for {
		b, err := o.queue.read()
		if errors.Is(err, errDrained) {
			return
		}
		if err != nil {
			o.logger.Warn("read spool", "error", err.Error())
			o.pause(o.retry.backoff(0, nil))
			continue
		}
		if !o.deliver(b) {
			return
		}
	}
}

// deliver takes one batch through the chain. It reports false when the queue was abandoned.
func (o *output) deliver(b batch) bool {
	err := o.write(b.recs)
	res := outcomeOf(err, len(b.recs))
	var wait time.Duration
	if res.rest > 0 {
		var expired bool
		wait, expired = o.retry.failed(o.now(), err)
		if expired || !o.queue.durable() && (!o.retry.enabled() || o.stopped.Load()) {
			res.given, res.rest = res.rest, 0
		}
	}
	if !b.done(len(b.recs) - res.rest) {
		return false
	}
	o.account(b, res, err)
	if res.rest > 0 {
		// Without a spool nothing can take the queue's records meanwhile: it fills and Emit
		// drops, which the drop counter and log report.
		o.pause(wait)
	}
	return true
}

// outcome is what became of a batch written once.
type outcome struct {
	delivered int
	refused   int  // failed for good: the destination refused them (a permanent error)
	whole     bool // the destination refused the whole batch: it goes to the rejects file
	rest      int  // the tail of the batch to try again
	given     int  // the tail of the batch that was worth trying again, given up
}

// outcomeOf reads the error of writing n records.
func outcomeOf(err error, n int) outcome {
	if err == nil {
		return outcome{delivered: n}
	}
	failed := n
	pe, partial := errors.AsType[*PartialError](err)
	if partial {
		failed = min(max(pe.Failed, 0), n)
	}
	if IsPermanent(err) {
		return outcome{delivered: n - failed, refused: failed, whole: !partial}
	}
	// A sink that writes in order fails from the first record it could not write on.
	return outcome{delivered: n - failed, rest: failed}
}

// account counts what became of a batch and logs failures.
func (o *output) account(b batch, res outcome, err error) {
	o.delivered.Add(uint64(res.delivered))
	if b.replayed {
		o.replayed.Add(uint64(res.delivered))
	}
	o.failed.Add(uint64(res.refused + res.given))
	if err != nil {
		o.noteFailure(res.refused+res.rest+res.given, err)
	}
	if res.whole {
		o.reject(b.recs, err)
	}
	if res.rest > 0 {
		o.retried.Add(1)
		if o.queue.durable() {
			o.enterDown(err)
		}
		return
	}
	o.retry.reset()
	if o.down {
		if n, _ := o.queue.backlog(); n == 0 {
			o.down = false
			o.logger.Info("sink recovered, spool replayed", "replayed_total", o.replayed.Load())
		}
	}
}

// write calls the sink with the write timeout, turning a panic into an error so one bad sink
// cannot end the process.
func (o *output) write(batch []record.Record) (err error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.writeTimeout)
	defer cancel()
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

// pause waits d before the next try, or less when Shutdown begins: retries stop then.
func (o *output) pause(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-o.stop:
	}
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

// noteFailure logs failed writes at most once per failLogInterval, with the batches and
// records that failed since the previous line.
func (o *output) noteFailure(records int, err error) {
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

func (o *output) stats() OutputStats {
	st := OutputStats{
		Name:            o.name,
		Queued:          o.queue.queued(),
		Accepted:        o.accepted.Load(),
		Delivered:       o.delivered.Load(),
		Drops:           o.dropCounts(),
		EvidenceDropped: o.evidenceDropped.Load(),
		Failed:          o.failed.Load(),
		Retried:         o.retried.Load(),
		Spooled:         o.spooled.Load(),
		Replayed:        o.replayed.Load(),
		SpoolDropped:    o.spoolDropped(),
		Rejected:        o.rejected.Load(),
	}
	st.Dropped = st.Drops.Total()
	st.SpoolRecords, st.SpoolBytes = o.queue.backlog()
	return st
}

// beginShutdown stops the retries and closes the queue, which the worker then drains. The
// pipeline holds its lock, so that no Emit offers to the closed queue.
func (o *output) beginShutdown() {
	o.stopped.Store(true)
	close(o.stop)
	o.queue.close()
}

// finish waits for the worker to drain the (closed) queue, then closes the sink and the spool.
// At ctx's deadline it abandons the queue instead and cancels the write in flight.
func (o *output) finish(ctx context.Context) error {
	select {
	case <-o.done:
	case <-ctx.Done():
		select {
		case <-o.done:
		default:
			// Abandon before cancelling, so that the cancelled write is not counted.
			spooled, dropped := o.queue.abandon()
			o.cancel()
			go o.closeLate()
			o.logger.Warn("sink not drained before the shutdown deadline",
				"spooled", spooled, "dropped", dropped, "delivered_total", o.delivered.Load(),
				"failed_total", o.failed.Load(), "dropped_total", o.dropped())
			return fmt.Errorf("drain sink %q: %w", o.name, ctx.Err())
		}
	}
	err := o.close(ctx)
	o.closeStores()
	attrs := []any{"delivered_total", o.delivered.Load(), "failed_total", o.failed.Load(),
		"dropped_total", o.dropped(), "evidence_dropped_total", o.evidenceDropped.Load()}
	if o.withSpool {
		n, _ := o.queue.backlog()
		attrs = append(attrs, "spooled_total", o.spooled.Load(), "spool_records", n)
	}
	o.logger.Info("sink stopped", attrs...)
	return err
}

// close calls the sink's Close without waiting past ctx's deadline.
func (o *output) close(ctx context.Context) error {
	res := make(chan error, 1)
	go func() { res <- o.safeClose(ctx) }()
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("close sink %q: %w", o.name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close sink %q: %w", o.name, ctx.Err())
	}
}

// closeLate closes the sink of an abandoned output once its worker's last write has returned,
// since Close must never run concurrently with Write.
func (o *output) closeLate() {
	<-o.done
	ctx, cancel := context.WithTimeout(context.Background(), lateCloseTimeout)
	defer cancel()
	if err := o.safeClose(ctx); err != nil {
		o.logger.Warn("close sink after the shutdown deadline", "error", err.Error())
	}
	o.closeStores()
}

// closeStores closes the queue's spool and the rejects file; the worker has returned.
func (o *output) closeStores() {
	o.queue.release()
	if o.rejects != nil {
		if err := o.rejects.Close(); err != nil {
			o.logger.Warn("close rejects file", "error", err.Error())
		}
	}
}

func (o *output) safeClose(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(v)
		}
	}()
	return o.sink.Close(ctx)
}
