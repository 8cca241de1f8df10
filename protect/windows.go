package protect

import "hash/maphash"

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

// memberOf hashes a value counted in a distinct window of ws.
func memberOf(ws *table[window], v string) uint64 { return maphash.String(ws.seed, v) }
