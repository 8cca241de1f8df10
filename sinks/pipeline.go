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
	// in order, before newer ones: from the first batch the sink could not take until it has
	// caught up, the spool is the head of the sink's queue (see docs/reliability.md). The
	// pipeline owns it from NewPipeline on and closes it at Shutdown. Nil keeps failed batches
	// in memory while they are retried, and the queue fills meanwhile.
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
// Every record offered is accepted or dropped at once (DropQueueFull, DropFloodKey, or
// DropShutdown once Shutdown has begun); every record accepted is, in the end, delivered,
// failed, dropped later (DropEvictedForEvidence, a spool's losses, DropShutdown at the deadline
// without a spool) or (with a spool) left in the spool for a later start. Records replayed
// from a spool written by an earlier process count as delivered (and replayed) without having
// been accepted by this one.
type OutputStats struct {
	Name string
	// Queued is the number of records waiting in the queue now.
	Queued int
	// Accepted counts records that entered the queue.
	Accepted uint64
	// Delivered counts records the sink wrote, replayed ones included.
	Delivered uint64
	// Dropped counts records lost without a write, for any reason (the sum of Drops).
	Dropped uint64
	// Drops counts the dropped records by reason.
	Drops DropCounts
	// EvidenceDropped counts the evidence records (records of malicious requests, session
	// records of parts that had one, final session records) among Dropped.
	EvidenceDropped uint64
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
	// SpoolDropped counts records the spool lost: deleted or refused when full, damaged, or not
	// written (part of Dropped).
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
	// accepted is either drained by the worker or handled by Shutdown. Every Emit writes its
	// reader count: the padding keeps it off cache lines that other goroutines write.
	_      [64]byte
	mu     sync.RWMutex
	closed bool
	_      [64]byte

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
		p.outs = append(p.outs, newOutput(oc, name, logger))
	}
	return p
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Emit offers rec to every output without blocking. An output whose queue is full drops a
// plain record, and makes room for evidence by dropping its oldest record of a lower class:
// plain records first, then final session records, to keep the records of an attack (a
// malicious request, a session record of a part that had one); while an output is behind, the
// plain records of a session key that floods it are dropped first; and every output drops
// everything once Shutdown has begun. Each drop is counted with its reason. A nil rec is ignored. Emit never allocates on
// its own account and is safe for concurrent use.
func (p *Pipeline) Emit(rec record.Record) {
	if rec == nil {
		return
	}
	cl := classOf(rec)
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		for _, o := range p.outs {
			o.drop(DropShutdown, 1, cl.evidence())
		}
		return
	}
	for _, o := range p.outs {
		switch res, victim := o.queue.offer(rec, cl); res {
		case offerTaken:
			o.accepted.Add(1)
		case offerEvicted:
			o.accepted.Add(1)
			o.drop(DropEvictedForEvidence, 1, victim.evidence())
		case offerFull:
			o.drop(DropQueueFull, 1, cl.evidence())
		case offerFlood:
			o.drop(DropFloodKey, 1, 0)
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
		o.beginShutdown()
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
