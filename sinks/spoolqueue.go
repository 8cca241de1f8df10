package sinks

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks/spool"
)

const (
	// spillCheck is how often a spoolQueue looks at its intake while a batch from memory is
	// being written.
	spillCheck = 10 * time.Millisecond
	// replayBatchBytes bounds the payload of one batch read back from the spool.
	replayBatchBytes = 8 << 20
)

// spoolQueue is the queue of a sink with a spool: the spool is the queue's head whenever it holds
// anything, the intake its tail.
//
// While the spool is empty the worker takes its batches from the intake, as from a memQueue. A
// batch the sink could not take (all of it, or the tail a partial error names) goes to the spool;
// from then on the queue is "spilling": a helper goroutine moves every record that arrives in the
// intake to the spool's tail, so the intake never fills because the sink is down, and the worker
// reads its batches back from the spool, oldest first, until the spool is empty again. Records
// thus reach the sink in the order they were offered, across outages and restarts.
//
// A slow sink spills too: while a batch from memory is being written, the helper watches the
// intake and, once it is half full, copies the batch to the spool and starts moving records
// behind it. When the slow write then succeeds, its copy is discarded from the spool's head.
type spoolQueue struct {
	*intake
	sp     *spool.Spool
	t      *tally
	doneFn func(int) bool

	// mu guards what follows, and orders every append to the spool, so that records keep their
	// order whoever moves them (the helper, the worker, abandon).
	mu        sync.Mutex
	spilling  bool    // the spool holds the head of the queue; the helper moves the intake behind it
	helper    *helper // the goroutine watching or moving the intake; nil when none runs
	closed    bool
	abandoned bool
	// The batch read last, until done.
	out       []record.Record
	fromSpool bool
	// For a batch from the spool: pos[i] is the position after record i, and entries[i] the
	// number of entries handed out up to pos[i], counting those that could not be decoded.
	pos     []spool.Pos
	entries []int
	replay  []record.Record // the array of batches from the spool
	// prespooled counts the records of a batch from memory copied to the spool's head because
	// its write was slow (fewer when a full spool pushed some out).
	prespooled int
	// again is the number of entries at the spool's head to read alone as the next batch: the
	// rest of a batch that is being retried. Zero reads a full batch.
	again int
	chunk []record.Record // the helper's
	// The spool's entries, and the class of each, being appended.
	encoded [][]byte
	classes []class
}

// helper is a goroutine of a spoolQueue: it watches the intake while a batch from memory is being
// written, and moves the intake to the spool while the queue spills.
type helper struct {
	stop    chan struct{} // closed to end it; only by whoever takes it out of spoolQueue.helper
	running sync.WaitGroup
}

// halt ends h, if any, and waits until it has returned.
func (h *helper) halt() {
	if h == nil {
		return
	}
	close(h.stop)
	h.running.Wait()
}

// newSpoolQueue returns the queue of in and sp; a spool that holds records from an earlier run
// is replayed before anything offered now. A full spool keeps evidence: to make room it deletes
// plain records, then final session records, and refuses new records once the records of
// attacks alone fill it.
func newSpoolQueue(in *intake, sp *spool.Spool, t *tally) *spoolQueue {
	q := &spoolQueue{intake: in, sp: sp, t: t}
	q.doneFn = q.done
	sp.SetRank(entryRank, int(attack))
	if sp.Len() > 0 {
		q.mu.Lock()
		q.setSpilling(true)
		q.startHelper(false)
		q.mu.Unlock()
	}
	return q
}

// setSpilling records whether the spool holds the head of the queue; the intake's flood budget
// counts the sink as behind meanwhile. q.mu is held.
func (q *spoolQueue) setSpilling(v bool) {
	q.spilling = v
	q.intake.spilling.Store(v)
}

// hold protects the n records at the spool's head from being deleted for room: copies of a
// batch being written, or the rest of a batch to write again. q.mu is held.
func (q *spoolQueue) hold(n int) {
	q.sp.Hold(n)
}

func (q *spoolQueue) read() (batch, error) {
	for {
		q.mu.Lock()
		if !q.spilling {
			q.mu.Unlock()
			return q.readMemory()
		}
		if q.closed || q.abandoned {
			// Nothing is replayed during a shutdown: the helper moves what the intake holds to
			// the spool's tail and returns once the intake is closed and empty.
			h := q.helper
			q.mu.Unlock()
			if h != nil {
				h.running.Wait()
			}
			return batch{}, errDrained
		}
		q.mu.Unlock()
		b, err := q.readSpool()
		if err != nil || b.recs != nil {
			return b, err
		}
		q.endSpill()
	}
}

// readMemory takes a batch from the intake and watches the intake while it is written.
func (q *spoolQueue) readMemory() (batch, error) {
	recs, ok := q.take()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		// Taken after abandon emptied the intake: they join the spool, at the very end of a
		// shutdown.
		q.appendLocked(recs, false)
		return batch{}, errDrained
	}
	if !ok {
		return batch{}, errDrained
	}
	q.out, q.fromSpool, q.prespooled = recs, false, 0
	q.startHelper(true)
	return batch{recs: recs, done: q.doneFn}, nil
}

// endSpill ends spilling once the spool is empty: the helper stops, and unless it spooled more
// records meanwhile, the next batch comes from the intake again.
func (q *spoolQueue) endSpill() {
	q.stopHelper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sp.Len() > 0 || q.abandoned {
		q.startHelper(false)
		return
	}
	q.setSpilling(false)
}

// readSpool reads the next batch from the spool's head; it returns no records when the spool is
// empty.
func (q *spoolQueue) readSpool() (batch, error) {
	q.mu.Lock()
	limit := q.batchSize
	if q.again > 0 {
		limit, q.again = q.again, 0
	}
	q.mu.Unlock()
	for {
		entries, next, skipped, err := q.sp.Read(limit, replayBatchBytes)
		q.t.lostInSpool(DropSpoolDamaged, skipped, 0, "damaged records skipped in the spool")
		if err != nil {
			q.sp.Rewind()
			return batch{}, err
		}
		if len(entries) == 0 {
			if n := q.sp.Len(); n > 0 {
				// Handed out and not committed: a commit failed. Read them again later.
				q.sp.Rewind()
				return batch{}, fmt.Errorf("spool: %d records wait that cannot be read yet", n)
			}
			return batch{}, nil
		}
		q.mu.Lock()
		recs := q.decodeLocked(entries, next)
		q.mu.Unlock()
		if len(recs) > 0 {
			return batch{recs: recs, replayed: true, done: q.doneFn}, nil
		}
	}
}

// decodeLocked makes the batch out of the entries the spool handed out. An entry that cannot be
// decoded is failed and goes with the record before it, so that committing that record commits
// it too; leading ones are committed at once. q.mu is held.
func (q *spoolQueue) decodeLocked(entries [][]byte, next []spool.Pos) []record.Record {
	clear(q.replay)
	recs, pos, counts := q.replay[:0], q.pos[:0], q.entries[:0]
	base, undecodable := 0, 0
	for i, e := range entries {
		rec, err := decodeEntry(e)
		switch {
		case err == nil:
			recs = append(recs, rec)
			pos = append(pos, next[i])
			counts = append(counts, i+1-base)
		case len(recs) == 0:
			undecodable++
			base = i + 1
			q.commit(next[i])
		default:
			undecodable++
			pos[len(pos)-1] = next[i]
			counts[len(counts)-1] = i + 1 - base
		}
	}
	q.replay, q.pos, q.entries = recs, pos, counts
	if undecodable > 0 {
		q.t.failed.Add(uint64(undecodable))
		q.t.logger.Warn("spooled records could not be decoded, dropped", "records", undecodable)
	}
	if len(recs) > 0 {
		q.out, q.fromSpool = recs, true
	}
	return recs
}

func (q *spoolQueue) done(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		return false
	}
	switch {
	case q.fromSpool:
		q.doneSpool(n)
	case q.spilling:
		q.donePrespooled(n)
	default:
		// Only watched so far: the watcher must not copy a batch that is done.
		q.stopWatcher()
		if n < len(q.out) {
			// The spool was empty: the rest is all it holds (less what did not fit).
			q.appendLocked(q.out[n:], false)
			q.again = q.sp.Len()
			q.hold(q.again)
			q.setSpilling(true)
			q.startHelper(false)
		}
	}
	q.out, q.fromSpool, q.prespooled = nil, false, 0
	return true
}

// doneSpool commits what is finished of a batch from the spool; the rest is read again.
func (q *spoolQueue) doneSpool(n int) {
	if n == len(q.out) {
		q.commit(q.pos[n-1])
		return
	}
	left := q.entries[len(q.entries)-1]
	if n > 0 {
		q.commit(q.pos[n-1])
		left -= q.entries[n-1]
	}
	if lost := q.sp.Rewind(); lost > 0 {
		// A full spool deleted the batch's segment while it was written (never when the spool
		// is ranked, as every spool of a pipeline is: it spares what is handed out).
		q.t.drop(DropSpoolFull, len(q.out)-n, countEvidence(q.out[n:]))
		return
	}
	q.again = left
	q.hold(left)
}

// donePrespooled handles a batch from memory that was copied to the spool's head while it was
// written: the copies of what is finished are discarded, the rest stays first in line.
func (q *spoolQueue) donePrespooled(n int) {
	// The spool's head holds copies of the batch's first records, held so that nothing deletes
	// them: all of them unless the spool was too small to take the whole batch.
	copies := q.prespooled
	discard := min(n, copies)
	if discard > 0 {
		if _, err := q.sp.Discard(discard); err != nil {
			q.t.logger.Warn("discard delivered records from the spool", "error", err.Error())
		}
	}
	if lost := q.out[max(n, copies):]; len(lost) > 0 {
		// Neither written nor copied: the spool refused them.
		q.t.drop(DropSpoolFull, len(lost), countEvidence(lost))
	}
	q.again = copies - discard
	q.hold(q.again)
}

func (q *spoolQueue) commit(p spool.Pos) {
	if err := q.sp.Commit(p); err != nil {
		q.t.logger.Warn("commit spool position", "error", err.Error())
	}
}

func (q *spoolQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.intake.close()
}

func (q *spoolQueue) abandon() (spooled, dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = true
	var recs []record.Record
	lostBefore := q.t.dropped()
	switch {
	case !q.fromSpool && !q.spilling:
		// The batch being written has no copy in the spool.
		recs = append(recs, q.out...)
		q.stopWatcher()
	case !q.fromSpool && q.prespooled < len(q.out):
		// Its copy in the spool is short of what the spool refused.
		lost := q.out[q.prespooled:]
		q.t.drop(DropSpoolFull, len(lost), countEvidence(lost))
	}
	q.out = nil
	recs = q.drain(recs)
	if len(recs) > 0 {
		spooled = q.appendLocked(recs, false)
	}
	return spooled, int(q.t.dropped() - lostBefore)
}

// stopHelper stops the helper that moves records from the intake to the spool, if one runs,
// and waits for it.
func (q *spoolQueue) stopHelper() {
	q.mu.Lock()
	h := q.helper
	q.helper = nil
	q.mu.Unlock()
	h.halt()
}

func (q *spoolQueue) release() {
	q.stopHelper()
	if err := q.sp.Close(); err != nil {
		q.t.logger.Warn("close spool", "error", err.Error())
	}
}

func (q *spoolQueue) backlog() (int, int64) { return q.sp.Len(), q.sp.Bytes() }

func (q *spoolQueue) durable() bool { return true }

// startHelper starts the helper: a watcher of the batch just read from memory, or a mover of the
// intake to the spool. q.mu is held.
func (q *spoolQueue) startHelper(watch bool) {
	h := &helper{stop: make(chan struct{})}
	q.helper = h
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		if watch && !q.watch(h) {
			return
		}
		q.move(h)
	}()
}

// stopWatcher tells the watcher to stop without waiting for it: holding q.mu, it can no longer
// copy the batch, and it never takes records from the intake. q.mu is held.
func (q *spoolQueue) stopWatcher() {
	if h := q.helper; h != nil {
		q.helper = nil
		close(h.stop)
	}
}

// watch looks at the intake while a batch from memory is being written. Once the intake is half
// full it copies the batch to the spool, the queue spills and watch reports true: the helper
// moves the intake from then on. It reports false when the batch was done first.
func (q *spoolQueue) watch(h *helper) bool {
	tick := time.NewTicker(spillCheck)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return false
		case <-tick.C:
		}
		if 2*q.queued() >= q.size {
			return q.prespool(h)
		}
	}
}

// prespool copies the batch being written to the spool and makes the queue spill, unless the
// batch is done already.
func (q *spoolQueue) prespool(h *helper) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-h.stop:
		return false
	default:
	}
	q.prespooled = q.appendLocked(q.out, true)
	q.hold(q.prespooled)
	q.setSpilling(true)
	return true
}

// move appends the records that arrive in the intake to the spool's tail, a chunk at a time,
// until the intake is closed and empty, or it is stopped: then what the intake holds joins the
// spool first, so that every record offered while the queue spilled goes to the spool.
func (q *spoolQueue) move(h *helper) {
	for {
		more, stopped := q.wait(h.stop)
		if stopped {
			for q.moveChunk() > 0 {
			}
			return
		}
		if !more {
			return
		}
		q.moveChunk()
	}
}

// moveChunk appends what the intake holds with one write (and fsync) and returns how many
// records it moved. Taking everything at once, not a batch, lets the spool keep up with a flood
// as long as the disk does: each fsync covers whatever arrived during the one before.
func (q *spoolQueue) moveChunk() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	chunk := q.takeNow(q.chunk[:0], q.size)
	n := len(chunk)
	if n > 0 {
		q.appendLocked(chunk, false)
	}
	clear(chunk)
	q.chunk = chunk[:0]
	return n
}

// appendLocked appends recs to the spool's tail and returns how many of them it holds now (the
// first ones: a spool full of attack records refuses the rest); q.mu is held. Records that cannot be
// encoded are failed; records the spool refuses or cannot write are dropped, and so are those
// it deletes to make room. Copies of a batch still being written (copies set) are not counted
// when refused or not written: donePrespooled counts what neither the write nor the spool took.
func (q *spoolQueue) appendLocked(recs []record.Record, copies bool) int {
	entries, classes := q.encoded[:0], q.classes[:0]
	bad := 0
	for _, rec := range recs {
		e, err := encodeEntry(rec)
		if err != nil {
			bad++
			continue
		}
		entries = append(entries, e)
		classes = append(classes, classOf(rec))
	}
	defer func() {
		clear(entries)
		q.encoded, q.classes = entries[:0], classes[:0]
	}()
	if bad > 0 {
		q.t.failed.Add(uint64(bad))
		q.t.logger.Warn("records could not be encoded for the spool, dropped", "records", bad)
	}
	if len(entries) == 0 {
		return 0
	}
	deleted, err := q.sp.Append(entries)
	// The spool counts the records it deleted for room, not their class: plain records go
	// first, final records next. Counted as plain.
	q.t.drop(DropSpoolFull, deleted, 0)
	written := len(entries)
	if full, ok := errors.AsType[*spool.FullError](err); ok {
		written = full.Written
		if !copies {
			q.t.drop(DropSpoolFull, full.Refused, countClassEvidence(classes[written:]))
		}
		err = nil
	}
	if err != nil && copies {
		q.t.logger.Warn("write spool", "records", len(entries), "error", err.Error())
		return 0
	}
	if err != nil {
		// Nothing of this call is known to be on disk beyond what was counted: treat the batch
		// as lost rather than risk counting it twice.
		q.t.lostInSpool(DropSpoolError, len(entries), countClassEvidence(classes), "write spool, records dropped",
			"error", err.Error())
		return 0
	}
	q.t.spooled.Add(uint64(written))
	return written
}

// countClassEvidence is how many of classes are evidence.
func countClassEvidence(classes []class) int {
	n := 0
	for _, c := range classes {
		n += c.evidence()
	}
	return n
}
