package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
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
}

// OutputStats are the counters of one output. Accepted records end up delivered, failed or
// (when the shutdown deadline passes before they are written) dropped; Dropped also counts the
// records that were never accepted because the queue was full or the pipeline shut down.
type OutputStats struct {
	Name string
	// Queued is the number of records waiting in the queue now.
	Queued int
	// Accepted counts records that entered the queue.
	Accepted uint64
	// Delivered counts records the sink wrote.
	Delivered uint64
	// Dropped counts records lost without a write: queue full, emitted after shutdown, or still
	// undelivered at the shutdown deadline.
	Dropped uint64
	// Failed counts records whose write failed.
	Failed uint64
}

// Pipeline fans records out to its outputs. Emit never blocks; each output has its own bounded
// queue and worker, so one slow sink delays and loses only its own records.
type Pipeline struct {
	logger *slog.Logger
	outs   []*output

	// mu orders Emit against Shutdown: Emit sends under the read lock and Shutdown closes the
	// queues under the write lock, so no record is ever sent on a closed queue and every record
	// accepted is either drained by the worker or counted by Shutdown.
	mu     sync.RWMutex
	closed bool

	shutdownOnce sync.Once
	shutdownErr  error
}

// output is one sink's queue, worker and counters.
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

	// ctx bounds the worker's writes; cancel aborts a write in flight at the shutdown deadline.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the worker returns.
	done    chan struct{}
	running atomic.Bool
	// stopped is set when the pipeline shuts down; it only words the drop log line.
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

	delivered atomic.Uint64
	failed    atomic.Uint64

	dropLogMu    sync.Mutex
	dropReported uint64 // guarded by dropLogMu: dropped as of the last line

	// mu guards the records the worker has taken off the queue (held) against Shutdown
	// abandoning the output at its deadline: whoever holds records when abandoned flips counts
	// them as dropped, exactly once.
	mu        sync.Mutex
	held      int
	abandoned bool

	// Failed-write logging, touched by the worker only.
	failLogLast time.Time
	failBatches int // failed batches not yet logged
	failRecords int // records of those batches that failed
}

// NewPipeline starts one worker per output. The logger should already name the component.
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
			done:          make(chan struct{}),
		}
		o.ctx, o.cancel = context.WithCancel(context.Background())
		o.running.Store(true)
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
	return OutputStats{
		Name:      o.name,
		Queued:    len(o.queue),
		Accepted:  o.accepted.Load(),
		Delivered: o.delivered.Load(),
		Dropped:   o.dropped.Load(),
		Failed:    o.failed.Load(),
	}
}

// Ready reports nil while every output's worker runs, ErrShutdown once Shutdown has begun.
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

// Shutdown stops accepting records, lets every worker drain its queue and flush, then closes
// every sink. When ctx ends first, what is still undelivered is counted as dropped, writes in
// flight are cancelled and Shutdown returns ctx's error; a sink that outlives the deadline is
// closed as soon as its last write returns. Shutdown is idempotent: later calls wait for the
// first and return its result.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() { p.shutdownErr = p.shutdown(ctx) })
	return p.shutdownErr
}

func (p *Pipeline) shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	for _, o := range p.outs {
		o.stopped.Store(true)
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

// finish waits for the worker to drain the (closed) queue, then closes the sink.
func (o *output) finish(ctx context.Context) error {
	select {
	case <-o.done:
	case <-ctx.Done():
		select {
		case <-o.done:
		default:
			n := o.abandon()
			go o.closeLate()
			o.logger.Warn("sink not drained before the shutdown deadline",
				"dropped", n, "delivered_total", o.delivered.Load(),
				"failed_total", o.failed.Load(), "dropped_total", o.dropped.Load())
			return fmt.Errorf("drain sink %q: %w", o.name, ctx.Err())
		}
	}
	err := o.close(ctx)
	o.logger.Info("sink stopped",
		"delivered_total", o.delivered.Load(), "failed_total", o.failed.Load(),
		"dropped_total", o.dropped.Load())
	return err
}

// abandon gives up on the output at the shutdown deadline: records the worker holds and records
// still queued are counted as dropped, and the write in flight is cancelled.
func (o *output) abandon() uint64 {
	o.cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.abandoned = true
	n := uint64(o.held)
	o.held = 0
	// The queue is closed, so this ends once it is empty; records the worker receives
	// meanwhile it counts itself when it finds the output abandoned.
	for range o.queue {
		n++
	}
	o.drop(n)
	return n
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
}

func (o *output) safeClose(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(v)
		}
	}()
	return o.sink.Close(ctx)
}

// run is the output's worker: it batches what the queue holds and delivers it until the queue
// is closed and empty.
func (o *output) run() {
	defer close(o.done)
	defer o.running.Store(false)
	batch := make([]record.Record, 0, o.batchSize)
	timer := time.NewTimer(o.flushInterval)
	timer.Stop()
	for {
		rec, ok := <-o.queue
		if !ok {
			return
		}
		batch = append(batch, rec)
		var open bool
		batch, open = o.fill(batch, timer)
		if !o.take(len(batch)) {
			return
		}
		failed, err := o.deliver(batch)
		o.settle(len(batch), failed, err)
		clear(batch) // let the records go before the next batch arrives
		batch = batch[:0]
		if !open {
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

// take registers n records taken off the queue as held by the worker; it reports false, and
// counts them as dropped, when the output was abandoned.
func (o *output) take(n int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.abandoned {
		o.drop(uint64(n))
		return false
	}
	o.held += n
	return true
}

// settle accounts for a delivered batch of n records of which failed failed.
func (o *output) settle(n, failed int, err error) {
	o.mu.Lock()
	if o.abandoned {
		// abandon already counted these records as dropped.
		o.mu.Unlock()
		return
	}
	o.held -= n
	o.delivered.Add(uint64(n - failed))
	o.failed.Add(uint64(failed))
	o.mu.Unlock()
	if err != nil {
		o.logFailure(failed, err)
	}
}

// deliver writes one batch with the output's timeout and returns how many of its records
// failed. It is the one place a retry policy (backoff, giving up on permanent errors) wraps.
func (o *output) deliver(batch []record.Record) (failed int, err error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.writeTimeout)
	defer cancel()
	err = o.write(ctx, batch)
	if err == nil {
		return 0, nil
	}
	if pe, ok := errors.AsType[*PartialError](err); ok {
		return min(max(pe.Failed, 0), len(batch)), err
	}
	return len(batch), err
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

// logFailure logs failed writes at most once per failLogInterval, with the batches and records
// that failed since the previous line.
func (o *output) logFailure(failed int, err error) {
	o.failBatches++
	o.failRecords += failed
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
		o.logger.Warn(msg, "dropped", n, "dropped_total", total, "queue_size", cap(o.queue))
	}
	o.dropLogPending.Store(false)
	// A drop counted after the Load above found the flag still set and scheduled nothing.
	if o.dropped.Load() != o.dropReported && o.dropLogPending.CompareAndSwap(false, true) {
		o.scheduleDropLog()
	}
}
