package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks/spool"
)

// Defaults for Output fields left zero (or negative); the delivery defaults are the
// configuration's.
const (
	DefaultQueueSize     = config.DefaultQueueSize
	DefaultBatchSize     = config.DefaultBatchSize
	DefaultFlushInterval = time.Duration(config.DefaultFlushInterval)
	DefaultWriteTimeout  = 30 * time.Second
)

const (
	// dropLogInterval bounds how often one output logs the records it dropped.
	dropLogInterval = 10 * time.Second
	// failLogInterval bounds how often one output logs failed writes.
	failLogInterval = 10 * time.Second
	// lateCloseTimeout bounds the Close of a sink whose worker outlived the shutdown deadline.
	lateCloseTimeout = 5 * time.Second
	// replayBatchBytes bounds the payload of one batch read back from the spool.
	replayBatchBytes = 8 << 20
)

// ErrShutdown is what Ready reports once Shutdown has begun.
var ErrShutdown = errors.New("sinks are shut down")

// Output is one sink as the pipeline runs it.
type Output struct {
	// Name identifies the sink in logs and Stats; empty names become "sink<index>".
	Name string
	// Sink receives the batches; it must not be nil.
	Sink Sink
	// QueueSize bounds the records waiting for this sink; beyond it Emit drops.
	QueueSize int
	// BatchSize is the most records handed to one Write.
	BatchSize int
	// FlushInterval is how long a batch waits for more records after its first one.
	FlushInterval time.Duration
	// WriteTimeout bounds one Write (DefaultWriteTimeout when zero).
	WriteTimeout time.Duration
	// Retry says how failed writes are retried; the zero policy does not retry (see
	// RetryPolicy).
	Retry RetryPolicy
	// Spool, when set, keeps the records the sink could not take yet on disk and replays them,
	// in order, before newer ones (see docs/reliability.md). The pipeline owns it from
	// NewPipeline on and closes it at Shutdown. Nil keeps failed batches in memory while they
	// are retried, and the queue fills meanwhile.
	Spool *spool.Spool
	// Rejects, when set, keeps the batches the destination refused (a permanent error for the
	// whole batch, such as an HTTP 4xx) for inspection; without it they are dropped. Counted as
	// failed either way. The pipeline closes it at Shutdown.
	Rejects *spool.Rejects
}

// Close releases what o holds (sink, spool, rejects) when it will not be given to NewPipeline,
// e.g. because another sink failed to start.
func (o *Output) Close(ctx context.Context) error {
	var errs []error
	if o.Sink != nil {
		errs = append(errs, o.Sink.Close(ctx))
	}
	if o.Spool != nil {
		errs = append(errs, o.Spool.Close())
	}
	if o.Rejects != nil {
		errs = append(errs, o.Rejects.Close())
	}
	return errors.Join(errs...)
}

// OutputStats are the counters of one output.
//
// Every record accepted is, in the end, delivered, failed, dropped or (with a spool) left in
// the spool for a later start. Records replayed from a spool written by an earlier process
// count as delivered (and replayed) without having been accepted by this one.
type OutputStats struct {
	Name string
	// Queued is the number of records waiting in the queue now.
	Queued int
	// Accepted counts records that entered the queue.
	Accepted uint64
	// Delivered counts records the sink wrote, replayed ones included.
	Delivered uint64
	// Dropped counts records lost without a write: queue full, emitted after shutdown,
	// undelivered at the shutdown deadline without a spool, pushed out of a full spool, or
	// damaged in it.
	Dropped uint64
	// Failed counts records given up on: refused by the destination (permanent errors), retried
	// past the policy's MaxElapsed, failed without retries, or impossible to encode for the
	// spool.
	Failed uint64
	// Retried counts writes that failed and were tried again.
	Retried uint64
	// Spooled counts records written to the spool.
	Spooled uint64
	// Replayed counts records delivered from the spool (part of Delivered).
	Replayed uint64
	// SpoolDropped counts records the spool lost: pushed out when full, or damaged (part of
	// Dropped).
	SpoolDropped uint64
	// Rejected counts records kept in the rejects file for inspection (part of Failed).
	Rejected uint64
	// SpoolRecords is the number of records waiting in the spool now.
	SpoolRecords int
	// SpoolBytes is the size of the spool on disk now.
	SpoolBytes int64
}

// Pipeline fans records out to its outputs. Emit never blocks; each output has its own bounded
// queue and worker, so one slow sink delays and loses only its own records.
type Pipeline struct {
	logger *slog.Logger
	outs   []*output

	// mu orders Emit against Shutdown: Emit sends under the read lock and Shutdown closes the
	// queues under the write lock, so no record is ever sent on a closed queue and every record
	// accepted is either drained by the worker or handled by Shutdown.
	mu     sync.RWMutex
	closed bool

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewPipeline starts one worker per output, each of which first replays what its spool holds.
// The logger should already name the component.
func NewPipeline(logger *slog.Logger, outs []Output) *Pipeline {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{logger: logger, outs: make([]*output, 0, len(outs))}
	for i, oc := range outs {
		if oc.Sink == nil {
			panic(fmt.Sprintf("sinks: output %d (%q) has no sink", i, oc.Name))
		}
		name := oc.Name
		if name == "" {
			name = "sink" + strconv.Itoa(i)
		}
		o := &output{
			name:          name,
			sink:          oc.Sink,
			logger:        logger.With("sink", name),
			queue:         make(chan record.Record, orDefault(oc.QueueSize, DefaultQueueSize)),
			batchSize:     orDefault(oc.BatchSize, DefaultBatchSize),
			flushInterval: orDefault(oc.FlushInterval, DefaultFlushInterval),
			writeTimeout:  orDefault(oc.WriteTimeout, DefaultWriteTimeout),
			retry:         oc.Retry,
			spool:         oc.Spool,
			rejects:       oc.Rejects,
			stop:          make(chan struct{}),
			done:          make(chan struct{}),
			now:           time.Now,
		}
		if o.spool != nil && !o.retry.enabled() {
			// A spool only makes sense with retries: its records wait for the next try.
			o.retry = DefaultRetryPolicy()
		}
		o.ctx, o.cancel = context.WithCancel(context.Background())
		o.running.Store(true)
		if o.spool != nil {
			if n := o.spool.Len(); n > 0 {
				o.logger.Info("replaying spooled records", "records", n, "spool_bytes", o.spool.Bytes())
				o.down = true
			}
		}
		p.outs = append(p.outs, o)
		go o.run()
	}
	return p
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Emit offers rec to every output without blocking: an output whose queue is full drops it and
// counts the drop, and so does every output once Shutdown has begun. A nil rec is ignored.
// Emit never allocates on its own account and is safe for concurrent use.
func (p *Pipeline) Emit(rec record.Record) {
	if rec == nil {
		return
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		for _, o := range p.outs {
			o.drop(1)
		}
		return
	}
	for _, o := range p.outs {
		select {
		case o.queue <- rec:
			o.accepted.Add(1)
		default:
			o.drop(1)
		}
	}
	p.mu.RUnlock()
}

// Stats returns the counters of every output, in the order the outputs were given.
func (p *Pipeline) Stats() []OutputStats {
	st := make([]OutputStats, len(p.outs))
	for i, o := range p.outs {
		st[i] = o.stats()
	}
	return st
}

func (o *output) stats() OutputStats {
	st := OutputStats{
		Name:         o.name,
		Queued:       len(o.queue),
		Accepted:     o.accepted.Load(),
		Delivered:    o.delivered.Load(),
		Dropped:      o.dropped.Load(),
		Failed:       o.failed.Load(),
		Retried:      o.retried.Load(),
		Spooled:      o.spooled.Load(),
		Replayed:     o.replayed.Load(),
		SpoolDropped: o.spoolDropped.Load(),
		Rejected:     o.rejected.Load(),
	}
	if o.spool != nil {
		st.SpoolRecords = o.spool.Len()
		st.SpoolBytes = o.spool.Bytes()
	}
	return st
}

// Ready reports nil while every output's worker runs, ErrShutdown once Shutdown has begun. A
// sink that is down is still ready: its records wait in its spool.
func (p *Pipeline) Ready() error {
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return ErrShutdown
	}
	var errs []error
	for _, o := range p.outs {
		if !o.running.Load() {
			errs = append(errs, fmt.Errorf("sink %q is not running", o.name))
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops accepting records and lets every worker deliver what its queue holds, each
// batch tried once: retries stop, and a batch that fails goes to the spool together with
// everything queued behind it. When ctx ends first, writes in flight are cancelled, what is
// still undelivered is spooled (or, without a spool, counted as dropped) and Shutdown returns
// ctx's error; a sink that outlives the deadline is closed as soon as its last write returns.
// Records left in a spool are replayed by the next pipeline that opens it. Shutdown is
// idempotent: later calls wait for the first and return its result.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() { p.shutdownErr = p.shutdown(ctx) })
	return p.shutdownErr
}

func (p *Pipeline) shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	for _, o := range p.outs {
		o.stopped.Store(true)
		close(o.stop)
		close(o.queue)
	}
	p.mu.Unlock()

	errs := make([]error, len(p.outs))
	var wg sync.WaitGroup
	for i, o := range p.outs {
		wg.Go(func() { errs[i] = o.finish(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// finish waits for the worker to drain the (closed) queue, then closes the sink and the spool.
func (o *output) finish(ctx context.Context) error {
	select {
	case <-o.done:
	case <-ctx.Done():
		select {
		case <-o.done:
		default:
			spooled, dropped := o.abandon()
			go o.closeLate()
			o.logger.Warn("sink not drained before the shutdown deadline",
				"spooled", spooled, "dropped", dropped, "delivered_total", o.delivered.Load(),
				"failed_total", o.failed.Load(), "dropped_total", o.dropped.Load())
			return fmt.Errorf("drain sink %q: %w", o.name, ctx.Err())
		}
	}
	err := o.close(ctx)
	o.closeStores()
	attrs := []any{"delivered_total", o.delivered.Load(), "failed_total", o.failed.Load(),
		"dropped_total", o.dropped.Load()}
	if o.spool != nil {
		attrs = append(attrs, "spooled_total", o.spooled.Load(), "spool_records", o.spoolLen())
	}
	o.logger.Info("sink stopped", attrs...)
	return err
}

// abandon gives up on the output at the shutdown deadline: the write in flight is cancelled,
// and the records the worker holds from the queue and those still queued go to the spool, in
// order, or are counted as dropped when there is none (or it fails).
func (o *output) abandon() (spooled, dropped uint64) {
	o.cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.abandoned = true
	var recs []record.Record
	if !o.heldFromSpool {
		recs = append(recs, o.held...)
	}
	o.held = nil
	// The queue is closed, so this ends once it is empty.
	for rec := range o.queue {
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return 0, 0
	}
	if o.spool == nil {
		o.drop(uint64(len(recs)))
		return 0, uint64(len(recs))
	}
	before, lostBefore := o.spooled.Load(), o.dropped.Load()
	o.spoolLocked(recs)
	return o.spooled.Load() - before, o.dropped.Load() - lostBefore
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

// closeStores closes the spool and the rejects file; the worker has returned.
func (o *output) closeStores() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spool != nil {
		if err := o.spool.Close(); err != nil {
			o.logger.Warn("close spool", "error", err.Error())
		}
	}
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

// drop counts n dropped records and makes sure a log line will report them.
func (o *output) drop(n uint64) {
	if n == 0 {
		return
	}
	o.dropped.Add(n)
	// The plain load keeps a flood of drops from contending on the flag's cache line.
	if !o.dropLogPending.Load() && o.dropLogPending.CompareAndSwap(false, true) {
		o.scheduleDropLog()
	}
}

// scheduleDropLog arranges for logDrops to run as soon as dropLogInterval has passed since the
// last line. The line is written from a timer goroutine: Emit never does I/O.
func (o *output) scheduleDropLog() {
	var delay time.Duration
	if last := o.dropLogLast.Load(); last != 0 {
		delay = time.Duration(last + int64(dropLogInterval) - time.Now().UnixNano())
	}
	time.AfterFunc(max(delay, 0), o.logDrops)
}

// logDrops writes one line with the records dropped since the previous line.
func (o *output) logDrops() {
	o.dropLogMu.Lock()
	defer o.dropLogMu.Unlock()
	total := o.dropped.Load()
	if n := total - o.dropReported; n > 0 {
		o.dropReported = total
		o.dropLogLast.Store(time.Now().UnixNano())
		msg := "sink queue full, records dropped"
		if o.stopped.Load() {
			msg = "sinks shut down, records dropped"
		}
		attrs := []any{"dropped", n, "dropped_total", total, "queue_size", cap(o.queue)}
		if o.spool != nil {
			attrs = append(attrs, "spool_dropped_total", o.spoolDropped.Load())
		}
		o.logger.Warn(msg, attrs...)
	}
	o.dropLogPending.Store(false)
	// A drop counted after the Load above found the flag still set and scheduled nothing.
	if o.dropped.Load() != o.dropReported && o.dropLogPending.CompareAndSwap(false, true) {
		o.scheduleDropLog()
	}
}
