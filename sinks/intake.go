package sinks

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// A record's class decides what a full queue gives up first: plain records, then the final
// records of session parts, never records of an attack while it holds anything else. Final and
// attack records are the evidence.
type class uint8

const (
	// plain: a request record that is not malicious, a snapshot of a part without attack.
	plain class = iota
	// final: the final record of a session part without attack.
	final
	// attack: the record of a malicious request, or a session record of a part that had one.
	// A flood of new session keys ends a part per key, so final records alone do not single
	// out the part of the attack it may hide.
	attack
	numClasses
)

// evidence is 1 for evidence, 0 for a plain record: what the drop counters add.
func (c class) evidence() int {
	if c >= final {
		return 1
	}
	return 0
}

// classOf ranks a record; it costs a type switch.
func classOf(rec record.Record) class {
	switch r := rec.(type) {
	case *record.Request:
		if r != nil && r.Malicious {
			return attack
		}
	case *record.Session:
		switch {
		case r == nil:
		case r.Malicious > 0:
			return attack
		case r.Final:
			return final
		}
	}
	return plain
}

// offered is what became of a record offered to an intake.
type offered uint8

const (
	offerTaken   offered = iota // queued
	offerEvicted                // queued in place of the oldest record of a lower class, dropped
	offerFull                   // dropped: the queue is full (of records of its class or higher)
	offerFlood                  // dropped: its session key is over its budget (floodBudget)
)

// intake is the in-memory front every queue has: a lane per class, bounded together by the queue
// size. Records come out in the order they were offered, whatever their lane (each carries a
// sequence number; the reader merges the heads). A full intake refuses a plain record and makes
// room for evidence by dropping the oldest record of the lowest class below it, so the heads of
// the lanes are all that eviction ever touches. While the sink is behind (the intake half full,
// or spilling to a spool), floodBudget refuses the plain records of a session key that adds far
// more than the others.
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
	lanes  [numClasses]lane
	seq    uint64 // of the last record queued
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

// offer queues rec, of class cl, without waiting. When it evicts a record to make room, victim
// is that record's class.
func (in *intake) offer(rec record.Record, cl class) (res offered, victim class) {
	if cl == plain && in.full.Load() {
		return offerFull, 0
	}
	in.mu.Lock()
	n := in.lenLocked()
	full := n >= in.size
	if full {
		for victim = plain; victim < cl && in.lanes[victim].n == 0; victim++ {
		}
		if victim == cl {
			in.mu.Unlock()
			return offerFull, 0
		}
	}
	if (2*n >= in.size || in.spilling.Load()) && in.budget.over(rec.SessionID(), cl, time.Now()) {
		in.mu.Unlock()
		return offerFlood, 0
	}
	res = offerTaken
	if full {
		in.lanes[victim].pop()
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
	return res, victim
}

func (in *intake) lenLocked() int {
	n := 0
	for i := range in.lanes {
		n += in.lanes[i].n
	}
	return n
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
	return in.lenLocked()
}

// close ends offers and wakes the reader.
func (in *intake) close() {
	in.mu.Lock()
	in.closed = true
	in.want = 0
	in.mu.Unlock()
	in.wake()
}

// popLocked appends up to max records to b, oldest first across the lanes. in.mu is held.
func (in *intake) popLocked(b []record.Record, max int) []record.Record {
	for range max {
		var l *lane
		for i := range in.lanes {
			c := &in.lanes[i]
			if c.n > 0 && (l == nil || c.ring[c.head].seq < l.ring[l.head].seq) {
				l = c
			}
		}
		if l == nil {
			break
		}
		b = append(b, l.pop())
	}
	if in.full.Load() && in.lenLocked() < in.size {
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
		if in.lenLocked() > 0 {
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
	return in.popLocked(b, in.lenLocked())
}
