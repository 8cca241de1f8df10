package sinks

import (
	"hash/maphash"
	"time"
)

const (
	// budgetSlots is how many counters floodBudget keeps; session keys share them by hash.
	budgetSlots = 4096
	// floodFactor is how many times the average key's records one key may add per second
	// while its sink is behind.
	floodFactor = 4
	// floodFloor is how many records a second any key may add whatever the average: an active
	// client is not a flood.
	floodFloor = 64
)

// floodBudget keeps one session key from crowding the others out of a queue that fills faster
// than its sink empties it. While the sink is behind, the intake counts, per second, the
// records each key adds; a plain record of a key that has added floodFloor records already and
// more than floodFactor times the average of the keys seen that second is refused, so that a
// flooding key loses its own records first. Evidence records are counted, never refused. With
// fewer than floodFactor+1 keys in a second nobody is refused: the average then follows the
// flood itself.
//
// Keys are hashed into budgetSlots counters with a random seed; two keys sharing a counter
// share one budget, so a key hashed beside a flood may lose records too (one key in
// budgetSlots, and the seed differs per sink and start). Used under the intake's mutex.
type floodBudget struct {
	seed   maphash.Seed
	second int64 // of the counts below (Unix seconds)
	total  int   // records counted this second
	active int   // counters used this second
	slots  [budgetSlots]budgetSlot
}

type budgetSlot struct {
	second int64
	n      int
}

func (b *floodBudget) init() { b.seed = maphash.MakeSeed() }

// over counts a record of key offered at now, unless it reports that the record is over its
// key's budget.
func (b *floodBudget) over(key string, cl class, now time.Time) bool {
	sec := now.Unix()
	if sec != b.second {
		b.second, b.total, b.active = sec, 0, 0
	}
	s := &b.slots[maphash.String(b.seed, key)%budgetSlots]
	if s.second != sec {
		s.second, s.n = sec, 0
		b.active++
	}
	if cl == plain && s.n >= floodFloor && b.active > floodFactor && s.n*b.active > floodFactor*b.total {
		return true
	}
	s.n++
	b.total++
	return false
}
