package sinks

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// A record's class decides what a full queue gives up first: evidence (the record of a
// malicious request, the final record of a session part) is kept before plain records.
type class uint8

const (
	plain class = iota
	evidence
)

// classOf tells evidence from plain records; it costs a type switch.
func classOf(rec record.Record) class {
	switch r := rec.(type) {
	case *record.Request:
		if r != nil && r.Malicious {
			return evidence
		}
	case *record.Session:
		if r != nil && r.Final {
			return evidence
		}
	}
	return plain
}

// offered is what became of a record offered to an intake.
type offered uint8

const (
	offerTaken   offered = iota // queued
	offerEvicted                // queued in place of the oldest plain record, which is dropped
	offerFull                   // dropped: the queue is full (of evidence, for an evidence record)
	offerFlood                  // dropped: its session key is over its budget (floodBudget)
)

// intake is the in-memory front every queue has: two lanes, evidence and plain, bounded together
// by the queue size. Records come out in the order they were offered, whatever their lane (each
// carries a sequence number; the reader merges the two heads). A full intake refuses a plain
// record and makes room for an evidence record by dropping the oldest plain one, so the head of
// the plain lane is all that eviction ever touches. While the sink is behind (the intake half
// full, or spilling to a spool), floodBudget refuses the plain records of a session key that adds
// far more than the others.
//
// Offer takes a mutex for a few field updates, allocates nothing and never waits for the
// reader; one reader at a time (the worker, or a spool queue's helper) takes records out. A
// record refused while the intake is full costs an atomic load and no lock.
type intake struct {
	size          int
	batchSize     int
	flushInterval time.Duration
	timer         *time.Timer
	buf           []record.Record // the last batch taken

	// full says the intake holds size records: written under mu when that changes, read
	// without it, so that refusing a plain record costs one load.
	full atomic.Bool
	// spilling says the queue's head is in a spool: the sink is behind.
	spilling atomic.Bool
	// ready wakes the reader waiting for records, once per wait.
	ready chan struct{}

	mu     sync.Mutex
	lanes  [2]lane // indexed by class
	seq    uint64  // of the last record queued
	closed bool
	// want is how many queued records the waiting reader waits for (0: none waits): a reader
	// filling a batch is woken once the batch can be completed, not for every record.
	want   int
	budget floodBudget
}

// entry is a queued record and its place in the order of offers.
type entry struct {
	rec record.Record
	seq uint64
}

// lane is a ring of entries with room for the whole queue.
type lane struct {
	ring []entry
	head int
	n    int
}

// push and pop wrap around without a division: they run under the intake's lock.
func (l *lane) push(e entry) {
	i := l.head + l.n
	if i >= len(l.ring) {
		i -= len(l.ring)
	}
	l.ring[i] = e
	l.n++
}

func (l *lane) pop() record.Record {
	e := &l.ring[l.head]
	rec := e.rec
	*e = entry{}
	if l.head++; l.head == len(l.ring) {
		l.head = 0
	}
	l.n--
	return rec
}

func newIntake(size, batchSize int, flushInterval time.Duration) *intake {
	timer := time.NewTimer(flushInterval)
	timer.Stop()
	in := &intake{
		size:          size,
		batchSize:     batchSize,
		flushInterval: flushInterval,
		timer:         timer,
		ready:         make(chan struct{}, 1),
	}
	for i := range in.lanes {
		in.lanes[i].ring = make([]entry, size)
	}
	in.budget.init()
	return in
}

// offer queues rec, of class cl, without waiting.
func (in *intake) offer(rec record.Record, cl class) offered {
	if cl == plain && in.full.Load() {
		return offerFull
	}
	in.mu.Lock()
	n := in.lanes[plain].n + in.lanes[evidence].n
	full := n >= in.size
	if full && (cl == plain || in.lanes[plain].n == 0) {
		in.mu.Unlock()
		return offerFull
	}
	if (2*n >= in.size || in.spilling.Load()) && in.budget.over(rec.SessionID(), cl, time.Now()) {
		in.mu.Unlock()
		return offerFlood
	}
	res := offerTaken
	if full {
		in.lanes[plain].pop()
		n--
		res = offerEvicted
	}
	in.seq++
	in.lanes[cl].push(entry{rec: rec, seq: in.seq})
	if n+1 >= in.size {
		in.full.Store(true)
	}
	wake := in.want > 0 && n+1 >= in.want
	if wake {
		in.want = 0
	}
	in.mu.Unlock()
	if wake {
		in.wake()
	}
	return res
}

// wake lets a waiting reader go on; a token left over from an earlier wait only makes the
// reader look once more.
func (in *intake) wake() {
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

func (in *intake) queued() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lanes[plain].n + in.lanes[evidence].n
}

// close ends offers and wakes the reader.
func (in *intake) close() {
	in.mu.Lock()
	in.closed = true
	in.want = 0
	in.mu.Unlock()
	in.wake()
}

// popLocked appends up to max records to b, oldest first across both lanes. in.mu is held.
func (in *intake) popLocked(b []record.Record, max int) []record.Record {
	ev, pl := &in.lanes[evidence], &in.lanes[plain]
	for k := 0; k < max && ev.n+pl.n > 0; k++ {
		l := pl
		if pl.n == 0 || ev.n > 0 && ev.ring[ev.head].seq < pl.ring[pl.head].seq {
			l = ev
		}
		b = append(b, l.pop())
	}
	if ev.n+pl.n < in.size && in.full.Load() {
		in.full.Store(false)
	}
	return b
}

// popChunk bounds the records taken under one hold of the lock, so that an offer never waits
// long for a reader taking a large batch.
const popChunk = 32

// takeNow appends up to max queued records to b without waiting.
func (in *intake) takeNow(b []record.Record, max int) []record.Record {
	for max > 0 {
		in.mu.Lock()
		n := len(b)
		b = in.popLocked(b, min(max, popChunk))
		in.mu.Unlock()
		if len(b)-n < popChunk {
			return b
		}
		max -= popChunk
	}
	return b
}

// wait waits until a record is queued (true), the intake is closed and empty (false), or stop
// is closed (false, stopped).
func (in *intake) wait(stop <-chan struct{}) (more, stopped bool) {
	for {
		in.mu.Lock()
		if in.lanes[plain].n+in.lanes[evidence].n > 0 {
			in.mu.Unlock()
			return true, false
		}
		if in.closed {
			in.mu.Unlock()
			return false, false
		}
		in.want = 1
		in.mu.Unlock()
		select {
		case <-in.ready:
		case <-stop:
			in.mu.Lock()
			in.want = 0
			in.mu.Unlock()
			return false, true
		}
	}
}

// take waits for a record, then adds what arrives until the batch holds batchSize records or
// flushInterval has passed; once the intake is closed it waits for nothing. It reports false
// when the intake is closed and empty. The batch reuses the array of the previous one, whose
// records must be dealt with by then.
func (in *intake) take() ([]record.Record, bool) {
	clear(in.buf) // let the previous batch's records go before waiting
	b := in.buf[:0]
	if more, _ := in.wait(nil); !more {
		in.buf = b
		return nil, false
	}
	b = in.takeNow(b, in.batchSize)
	if len(b) < in.batchSize {
		b = in.fill(b)
	}
	in.buf = b
	return b, true
}

// fill adds to b what arrives within flushInterval, up to batchSize records.
func (in *intake) fill(b []record.Record) []record.Record {
	in.timer.Reset(in.flushInterval)
	defer in.timer.Stop()
	for {
		b = in.takeNow(b, in.batchSize-len(b))
		in.mu.Lock()
		b = in.popLocked(b, in.batchSize-len(b)) // what came meanwhile: want must count from none
		if len(b) >= in.batchSize || in.closed {
			in.mu.Unlock()
			return b
		}
		in.want = in.batchSize - len(b)
		in.mu.Unlock()
		select {
		case <-in.ready:
		case <-in.timer.C:
			in.mu.Lock()
			in.want = 0
			in.mu.Unlock()
			return in.takeNow(b, in.batchSize-len(b))
		}
	}
}

// drain takes every queued record, for a queue abandoned at the shutdown deadline (the intake
// is closed by then).
func (in *intake) drain(b []record.Record) []record.Record {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.popLocked(b, in.lanes[plain].n+in.lanes[evidence].n)
}
