package sinks

import (
	"errors"
	"sync"

	"github.com/apisessions/apisessions/sessions/record"
)

// A queue holds the records waiting for one sink, oldest first. Emit offers records to it and
// never waits; the sink's worker reads them a batch at a time and calls the batch's done once it
// has dealt with them. The records done does not finish stay at the head of the queue and are the
// next batch read, alone: a retry is simply the next read.
//
// There are two: memQueue keeps everything in memory; spoolQueue has the same in-memory front
// (intake) and, from the first record its sink could not take, keeps the head of the queue in
// the on-disk spool. The worker does not know which it reads from. Both keep evidence before
// plain records when they must drop (intake.go, and spool.SetRank for the spool).
type queue interface {
	// offer adds rec, of class cl, at the tail without blocking or doing I/O, and says what
	// became of it and, for offerEvicted, the class of the record it dropped (see
	// intake.offer). It must not be called once close was.
	offer(rec record.Record, cl class) (offered, class)
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

// memQueue is the queue of a sink without a spool. A batch being retried stays in memory, and
// while it waits nothing else is written: the intake fills and Emit drops plain records first
// (evidence takes their place), which the drop counters and log report.
type memQueue struct {
	*intake
	t      *tally
	doneFn func(int) bool

	mu        sync.Mutex
	out       []record.Record // the batch read last, until done
	rest      []record.Record // what done did not finish: the next batch
	abandoned bool
}

func newMemQueue(in *intake, t *tally) *memQueue {
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
		q.t.drop(DropShutdown, len(recs), countEvidence(recs))
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

func (q *memQueue) abandon() (spooled, dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = true
	lost := make([]record.Record, 0, len(q.out)+len(q.rest)+q.queued())
	lost = append(append(lost, q.out...), q.rest...)
	q.out, q.rest = nil, nil
	lost = q.drain(lost)
	q.t.drop(DropShutdown, len(lost), countEvidence(lost))
	return 0, len(lost)
}

// countEvidence is how many of recs are evidence.
func countEvidence(recs []record.Record) int {
	n := 0
	for _, r := range recs {
		n += classOf(r).evidence()
	}
	return n
}

func (q *memQueue) release() {}

func (q *memQueue) backlog() (int, int64) { return 0, 0 }

func (q *memQueue) durable() bool { return false }
