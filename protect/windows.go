package protect

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// event is one member of a window and when it was last seen (nanoseconds on the engine's
// clock). A distinct window keeps one event per member; a counting window one per request.
type event struct {
	member uint64
	t      int64
}

// window is what one key remembers over a sliding window: its most recent events, at most a
// fixed number of them, and, for a sequence, the step it reached and when it began; for a
// session's logins, the username last tried.
type window struct {
	ev    []event
	step  int
	start int64
	last  string
}

// add records member at now, keeping at most limit events and forgetting those older than
// horizon. With distinct, a member already held is seen again rather than added twice.
func (w *window) add(member uint64, now, horizon int64, limit int, distinct bool) {
	if distinct {
		for i := range w.ev {
			if w.ev[i].member == member {
				w.ev[i].t = max(w.ev[i].t, now)
				return
			}
		}
	}
	if len(w.ev) >= limit {
		// Forget what is past the horizon; when everything is recent, the oldest goes: the
		// newest limit events decide every threshold below limit.
		kept := w.ev[:0]
		for _, e := range w.ev {
			if now-e.t < horizon {
				kept = append(kept, e)
			}
		}
		w.ev = kept
		if len(w.ev) >= limit {
			oldest := 0
			for i := range w.ev {
				if w.ev[i].t < w.ev[oldest].t {
					oldest = i
				}
			}
			w.ev[oldest] = w.ev[len(w.ev)-1]
			w.ev = w.ev[:len(w.ev)-1]
		}
	}
	w.ev = append(w.ev, event{member: member, t: now})
}

// count is the number of events seen within the window before now.
func (w *window) count(now, within int64) int {
	n := 0
	for _, e := range w.ev {
		if now-e.t < within {
			n++
		}
	}
	return n
}

// windows holds sliding windows in memory, bounded like the rate-limit buckets: a full shard
// drops one of its windows for the new one, and counts it. A dropped window starts empty
// when its key returns: the bound costs precision (a count restarts), never memory.
type windows struct {
	seed     maphash.Seed
	perShard int
	shards   [bucketShards]windowShard
	evicted  atomic.Uint64
}

type windowShard struct {
	mu sync.Mutex
	m  map[uint64]*window
}

func newWindows(limit int) *windows {
	w := &windows{seed: maphash.MakeSeed(), perShard: max(1, limit/bucketShards)}
	for i := range w.shards {
		w.shards[i].m = make(map[uint64]*window)
	}
	return w
}

// key hashes a window's identity: what it counts (a rule's name or a login signal), the
// subject and the route.
func (ws *windows) key(what string, subject []byte, route string) uint64 {
	var h maphash.Hash
	h.SetSeed(ws.seed)
	h.WriteString(what)
	h.WriteByte(0)
	h.Write(subject)
	h.WriteByte(0)
	h.WriteString(route)
	return h.Sum64()
}

// member hashes a value counted in a distinct window.
func (ws *windows) member(v string) uint64 { return maphash.String(ws.seed, v) }

// with calls fn with k's window under its shard's lock; a missing window is made when
// create, else fn is not called. fn must not keep w.
func (ws *windows) with(k uint64, create bool, fn func(w *window)) {
	s := &ws.shards[k%bucketShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.m[k]
	if w == nil {
		if !create {
			return
		}
		if len(s.m) >= ws.perShard {
			for old := range s.m {
				delete(s.m, old)
				ws.evicted.Add(1)
				break
			}
		}
		w = &window{}
		s.m[k] = w
	}
	fn(w)
}

// size is the number of windows held.
func (ws *windows) size() int {
	n := 0
	for i := range ws.shards {
		s := &ws.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
