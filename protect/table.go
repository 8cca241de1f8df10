package protect

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// tableShards spreads a table over locks so that concurrent requests rarely meet.
const tableShards = 32

// table holds per-key state in memory (rate-limit buckets, sliding windows), bounded: a shard
// that is full drops one of its entries (Go's map order picks it) for the new one, and counts
// it. A dropped entry starts afresh when its key returns: the bound costs precision, never
// memory.
type table[T any] struct {
	seed     maphash.Seed
	perShard int
	shards   [tableShards]tableShard[T]
	evicted  atomic.Uint64
}

type tableShard[T any] struct {
	mu sync.Mutex
	m  map[uint64]*T
}

// newTable makes a table of at most about limit entries.
func newTable[T any](limit int) *table[T] {
	t := &table[T]{seed: maphash.MakeSeed(), perShard: max(1, limit/tableShards)}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*T)
	}
	return t
}

// key hashes an entry's identity: its name (a rule's name, so that a reload that reorders
// the rules keeps each rule's state, or a login signal), the subject (session, user or
// client) and, per route, the route.
func (t *table[T]) key(name string, subject []byte, route string) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(name)
	h.WriteByte(0)
	h.Write(subject)
	h.WriteByte(0)
	h.WriteString(route)
	return h.Sum64()
}

// with calls fn with k's entry under its shard's lock, made is true when the entry was just
// made (zero); a missing entry is made only when create, else fn is not called. fn must not
// keep v.
func (t *table[T]) with(k uint64, create bool, fn func(v *T, made bool)) {
	s := &t.shards[k%tableShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[k]
	made := false
	if v == nil {
		if !create {
			return
		}
		if len(s.m) >= t.perShard {
			for old := range s.m {
				delete(s.m, old)
				t.evicted.Add(1)
				break
			}
		}
		v, made = new(T), true
		s.m[k] = v
	}
	fn(v, made)
}

// size is the number of entries held.
func (t *table[T]) size() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
