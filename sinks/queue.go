package sinks

import (
	"errors"
	"sync"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// A queue holds the records waiting for one sink, oldest first. Emit offers records to it and
// never waits; the sink's worker reads them a batch at a time and calls the batch's done once it
// has dealt with them. The records done does not finish stay at the head of the queue and are the
// next batch read, alone: a retry is simply the next read.
//
// There are two: memQueue keeps everything in memory; spoolQueue has the same in-memory front
// and, from the first record its sink could not take, keeps the head of the queue in the on-disk
// spool. The worker does not know which it reads from.
type queue interface {
	// offer adds rec at the tail without blocking or doing I/O, and reports false when the
	// queue is full. It must not be called once close was.
	offer(rec record.Record) bool
	// read waits for the next batch. It returns errDrained once the queue is closed and nothing
	// more is to be written, or was abandoned; any other error is a failed read of the spool,
	// worth trying again after a while.
	read() (batch, error)
	// close ends offers. From then on read no longer waits for a batch to fill, and a spool is
	// no longer read, only filled: what it holds waits for the next start.
	close()
	// abandon gives up at the shutdown deadline, after close: the records held in memory (those
	// queued and the batch being written, unless the spool has it) go to the spool, or are
	// dropped without one. It returns how many went each way; done reports false from then on.
	abandon() (spooled, dropped int)
	// release stops what the queue runs in the background and closes its spool, once the
	// worker has returned.
	release()
	// queued is the number of records waiting in memory.
	queued() int
	// backlog is what waits in the spool: records and bytes on disk (zero without one).
	backlog() (records int, bytes int64)
	// durable reports whether records left in the queue at shutdown wait for the next start.
	durable() bool
}

// A batch is what queue.read hands out.
type batch struct {
	recs []record.Record
	// replayed says the records were read back from the spool.
	replayed bool
	// done reports that the first n records were dealt with (delivered or given up); the
	// queue keeps the others at its head, to be read again. It returns false when the queue was
	// abandoned meanwhile: abandon has accounted for the batch, and the worker must stop.
	done func(n int) bool
}

// errDrained is what queue.read returns when there is nothing more to write.
var errDrained = errors.New("queue drained")

// intake is the in-memory front every queue has: a buffered channel. A non-blocking send costs
// tens of nanoseconds and needs no allocation. A mutex-guarded ring drained a batch at a time
// lets the worker take records several times faster, but both take over a million records a
// second, far beyond what any sink writes, so the simpler channel stays.
type intake struct {
	ch            chan record.Record
	batchSize     int
	flushInterval time.Duration
	timer         *time.Timer
	buf           []record.Record // the last batch taken
}

func newIntake(size, batchSize int, flushInterval time.Duration) intake {
	timer := time.NewTimer(flushInterval)
	timer.Stop()
	return intake{
		ch:            make(chan record.Record, size),
		batchSize:     batchSize,
		flushInterval: flushInterval,
		timer:         timer,
	}
}

func (in *intake) offer(rec record.Record) bool {
	select {
	case in.ch <- rec:
		return true
	default:
		return false
	}
}

func (in *intake) queued() int { return len(in.ch) }

// take waits for a record, then adds what arrives until the batch holds batchSize records or
// flushInterval has passed; once the intake is closed it waits for nothing. It reports false
// when the intake is closed and empty. The batch reuses the array of the previous one, whose
// records must be dealt with by then.
func (in *intake) take() ([]record.Record, bool) {
	clear(in.buf) // let the previous batch's records go before waiting
	b := in.buf[:0]
	rec, ok := <-in.ch
	if !ok {
		in.buf = b
		return nil, false
	}
	b = append(b, rec)
	if len(b) < in.batchSize {
		b = in.fill(b)
	}
	in.buf = b
	return b, true
}

func (in *intake) fill(b []record.Record) []record.Record {
	in.timer.Reset(in.flushInterval)
	defer in.timer.Stop()
	for len(b) < in.batchSize {
		select {
		case rec, ok := <-in.ch:
			if !ok {
				return b
			}
			b = append(b, rec)
		case <-in.timer.C:
			return b
		}
	}
	return b
}

// memQueue is the queue of a sink without a spool. A batch being retried stays in memory, and
// while it waits nothing else is written: the intake fills and Emit drops, which the drop
// counter and log report.
type memQueue struct {
	intake
	t      *tally
	doneFn func(int) bool

	mu        sync.Mutex
	out       []record.Record // the batch read last, until done
	rest      []record.Record // what done did not finish: the next batch
	abandoned bool
}

func newMemQueue(in intake, t *tally) *memQueue {
	q := &memQueue{intake: in, t: t}
	q.doneFn = q.done
	return q
}

func (q *memQueue) read() (batch, error) {
	q.mu.Lock()
	if rest := q.rest; rest != nil {
		q.out, q.rest = rest, nil
		q.mu.Unlock()
		return batch{recs: rest, done: q.doneFn}, nil
	}
	q.mu.Unlock()
	recs, ok := q.take()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		// Taken after abandon emptied the intake.
		q.t.drop(len(recs))
		return batch{}, errDrained
	}
	if !ok {
		return batch{}, errDrained
	}
	q.out = recs
	return batch{recs: recs, done: q.doneFn}, nil
}

func (q *memQueue) done(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		return false
	}
	if n < len(q.out) {
		q.rest = q.out[n:]
	}
	q.out = nil
	return true
}

func (q *memQueue) close() { close(q.ch) }

func (q *memQueue) abandon() (spooled, dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = true
	n := len(q.out) + len(q.rest)
	q.out, q.rest = nil, nil
	// The intake is closed, so this ends once it is empty.
	for range q.ch {
		n++
	}
	q.t.drop(n)
	return 0, n
}

func (q *memQueue) release() {}

func (q *memQueue) backlog() (int, int64) { return 0, 0 }

func (q *memQueue) durable() bool { return false }
