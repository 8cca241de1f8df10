package sessions

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// With shared state (SharedParts), the part stage of Observe needs an answer from Redis. It
// does not wait for it on the stream's goroutine: the request goes to one of a few part
// workers, chosen by its session id so that a session's requests keep the order in which their
// streams ended, and each worker sends the requests that queue within partLinger of a batch's
// first in one call to ObserveParts (one pipelined round trip for many requests), then names each request's part,
// updates the local live part and emits the records, in order. The stream's goroutine pays a
// channel send. A worker's queue that is full makes the request decide locally, as when Redis
// is unreachable, and counts it (Stats.SharedQueueFull).
const (
	// partWorkers is the number of part workers. Their batches share the state client's one
	// pipeline in flight (state.coalescer), so more workers do not mean more round trips.
	partWorkers = 2
	// partLinger is how long a worker waits after a batch's first request for more to join
	// it (a full batch goes at once). Nothing waits on a part but the records and the risk
	// score of the session's later requests, so a few milliseconds cost nothing, and they turn
	// one round trip per request (at a few thousand requests a second, round trips rarely
	// overlap) into one per many: with small batches Redis's cost per round trip (system
	// calls, a wake-up and a turn of its event loop) was most of its cost per request. At
	// 30 000 requests a second, Redis spent 4.6-5.2 µs of CPU per request with 2 ms and
	// 3.2-3.9 µs with 10 ms, where most of it is running and answering the commands.
	partLinger = 10 * time.Millisecond
	// partQueue bounds each worker's queue: about 80 ms of requests at 100 000 requests/s
	// across the workers, far above one round trip and the linger.
	partQueue = 4096
	// partBatch bounds the requests of one call to ObserveParts.
	partBatch = 256
)

// partJob is one request waiting for its part.
type partJob struct {
	rec   *record.Request
	h     hit
	rules *partRules // the rules of the snapshot the request was grouped by
	// stitch, with shared links, is the request's stitch stage still to run: rec holds the
	// session of what the request carried until then.
	stitch *stitchIn
	// barrier, when set, is closed by the worker instead of processing a request: flush.
	barrier chan struct{}
}

// partWork is the engine's part workers.
type partWork struct {
	mu     sync.RWMutex // held for reading by senders, for writing by close
	closed bool
	queues [partWorkers]chan partJob
	seed   maphash.Seed
	wg     sync.WaitGroup
	full   atomic.Int64 // requests decided locally because their worker's queue was full
	panics atomic.Int64
}

// startPartWork starts the part workers of e.
func (e *Engine) startPartWork() {
	w := &partWork{seed: maphash.MakeSeed()}
	for i := range w.queues {
		w.queues[i] = make(chan partJob, partQueue)
		w.wg.Add(1)
		go e.partWorker(w, w.queues[i])
	}
	e.work = w
}

// offer queues j for its session's worker without blocking. It returns false when the workers
// are closed or the queue is full (counted): the caller then decides the part itself.
func (w *partWork) offer(j partJob) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false
	}
	q := w.queues[maphash.String(w.seed, j.rec.Session)%partWorkers]
	if j.stitch != nil {
		// A link made by one request is followed by another of the same client under another
		// session id (the value it carried), so requests still to stitch keep one order: the
		// first worker's.
		q = w.queues[0]
	}
	select {
	case q <- j:
		return true
	default:
		w.full.Add(1)
		return false
	}
}

// Flush returns once every request observed before it has its part and its records
// emitted. Without shared state Observe does that before it returns, and Flush returns at
// once.
func (e *Engine) Flush() {
	if e.work != nil {
		e.work.flush()
	}
}

// flush returns once every request queued before it was processed.
func (w *partWork) flush() {
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return
	}
	var barriers [partWorkers]chan struct{}
	for i, q := range w.queues {
		barriers[i] = make(chan struct{})
		q <- partJob{barrier: barriers[i]}
	}
	w.mu.RUnlock()
	for _, b := range barriers {
		<-b
	}
}

// close stops taking requests, lets the workers finish what is queued and waits for them.
func (w *partWork) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for _, q := range w.queues {
		close(q)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// queued is the number of requests waiting in the workers' queues.
func (w *partWork) queued() int {
	n := 0
	for _, q := range w.queues {
		n += len(q)
	}
	return n
}

// partWorker processes the queue q of w until it is closed and empty.
func (e *Engine) partWorker(w *partWork, q chan partJob) {
	defer w.wg.Done()
	jobs := make([]partJob, 0, partBatch)
	ups := make([]PartUpdate, 0, partBatch)
	var st stitchScratch
	linger := time.NewTimer(partLinger)
	linger.Stop()
	for j := range q {
		jobs = append(jobs[:0], j)
		if j.barrier == nil {
			linger.Reset(partLinger)
		fill:
			for len(jobs) < partBatch {
				select {
				case j, ok := <-q:
					if !ok {
						break fill
					}
					jobs = append(jobs, j)
					if j.barrier != nil {
						break fill // a flush waits for no more
					}
				case <-linger.C:
					break fill
				}
			}
			linger.Stop()
		}
		ups = e.runPartJobs(w, jobs, ups[:0], &st)
		clear(jobs) // the records are the sinks' now
	}
}

// runPartJobs asks the shared state for the parts of jobs in one call, then finishes each
// job in order. A panic, which would be a bug, costs the jobs not yet finished their records
// and is logged; the worker goes on.
func (e *Engine) runPartJobs(w *partWork, jobs []partJob, ups []PartUpdate, st *stitchScratch) []PartUpdate {
	done := 0
	defer func() {
		if r := recover(); r != nil {
			w.panics.Add(1)
			msg := fmt.Sprint(r)
			if len(msg) > 512 {
				msg = msg[:512]
			}
			e.log.LogAttrs(context.Background(), slog.LevelError, "panic in part worker",
				slog.String("error", msg), slog.Int("records_lost", len(jobs)-done))
		}
	}()
	e.stitchJobs(jobs, st)
	for i := range jobs {
		if jobs[i].barrier == nil {
			j := &jobs[i]
			ups = append(ups, PartUpdate{ID: j.rec.Session, Q: j.rules.sharedQuery(j.h.t),
				JoinSeq: e.parts.joinHint(j.rec.Session, j.h.t, j.rules)})
		}
	}
	if len(ups) > 0 {
		e.shared.ObserveParts(context.Background(), ups)
	}
	u := 0
	for i := range jobs {
		j := &jobs[i]
		if j.barrier != nil {
			close(j.barrier)
			done++
			continue
		}
		var buf [2]record.Record
		out := buf[:0]
		if up := &ups[u]; up.OK {
			j.rec.Part, out = e.parts.observeShared(j.rec.Session, &j.h, &up.State, out)
		} else {
			j.rec.Part, out = e.parts.observe(j.rec.Session, &j.h, j.rules, out)
		}
		u++
		e.emitRecords(out, j.rec)
		done++
	}
	return ups
}

// stitchScratch is a part worker's room for the stitch stage of its batches, kept from one
// batch to the next.
type stitchScratch struct {
	ops []LinkOp
	idx []int
}

// stitchJobs runs the stitch stage of the jobs that still need it on the shared links, in one
// call, and gives each its session; a job the shared links do not answer for is stitched on
// the replica's own links (counted).
func (e *Engine) stitchJobs(jobs []partJob, sc *stitchScratch) {
	ops, idx := sc.ops[:0], sc.idx[:0]
	defer func() {
		clear(ops) // the requests' values are the sinks' now
		sc.ops, sc.idx = ops[:0], idx[:0]
	}()
	for i := range jobs {
		if j := &jobs[i]; j.barrier == nil && j.stitch != nil {
			op := j.stitch.op(j.h.t)
			if !j.stitch.car.fallback {
				if l, ok := e.links.lookup(op.Carried, j.h.t, op.Idle, false); ok && l.follows() && l.root != op.Carried {
					op.LocalRoot, op.LocalKind = l.root, l.kind.name()
				}
			}
			ops = append(ops, op)
			idx = append(idx, i)
		}
	}
	if len(ops) == 0 {
		return
	}
	e.slinks.Stitch(context.Background(), ops)
	for k, i := range idx {
		j := &jobs[i]
		in := j.stitch
		var st stitching
		if ops[k].OK {
			st = in.result(&ops[k])
			e.mirrorLinks(in, &st, ops[k].Learned, j.h.t)
		} else {
			e.links.failOpen.Add(1)
			st = e.stitch(in.s, in.car, in.issued, in.respFirst, j.h.t, false)
		}
		applyStitch(j.rec, &j.h, st)
		j.stitch = nil
	}
}

// mirrorLinks keeps the replica's own link table in step with what the shared links decided
// for in: the links an answer made, and the values it kept as issued (learned), are put here
// too (the first entry of a value wins, as there), so that inline answers (Peek), the
// first-party cookies a later request sends back, and a later outage decide as Redis did.
func (e *Engine) mirrorLinks(in *stitchIn, st *stitching, learned []bool, t time.Time) {
	idle := in.s.rules.idle
	_, dayEnd := in.s.rules.dayOf(t)
	mk := func(root string, kind linkKind) link {
		return link{root: root, kind: kind, dayEnd: dayEnd.Unix(), lastUse: t.UnixNano()}
	}
	for i, iv := range in.issued {
		if i < len(learned) && learned[i] {
			e.links.put(iv.session, mk(iv.session, linkIssued), t, idle)
		}
	}
	if st.linked == 0 {
		return
	}
	kind := linkRotation
	if in.car.anonymous {
		kind = linkLogin
	}
	for _, iv := range in.issued {
		if iv.session != in.car.session && iv.session != st.session {
			e.links.put(iv.session, mk(st.session, kind), t, idle)
		}
	}
}
