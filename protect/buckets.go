package protect

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// bucketShards spreads the buckets over locks so that concurrent requests rarely meet.
const bucketShards = 32

// bucket is one token bucket: tokens left at last (nanoseconds on the engine's clock).
type bucket struct {
	tokens float64
	last   int64
}

// buckets holds the rate-limit buckets in memory, bounded: a shard that is full drops one of
// its buckets (Go's map order picks it) for the new one, and counts it. A dropped bucket is
// full again when its key returns, which lets that key burst once more: the bound costs
// precision, never memory.
type buckets struct {
	seed     maphash.Seed
	perShard int
	shards   [bucketShards]bucketShard
	evicted  atomic.Uint64
}

type bucketShard struct {
	mu sync.Mutex
	m  map[uint64]*bucket
}

func newBuckets(limit int) *buckets {
	b := &buckets{seed: maphash.MakeSeed(), perShard: max(1, limit/bucketShards)}
	for i := range b.shards {
		b.shards[i].m = make(map[uint64]*bucket)
	}
	return b
}

// key hashes the bucket's identity: the rule's name (so that a reload that reorders the rules
// keeps each rule's buckets), the subject (session, user or client) and, per route, the route.
func (b *buckets) key(rule string, subject []byte, route string) uint64 {
	var h maphash.Hash
	h.SetSeed(b.seed)
	h.WriteString(rule)
	h.WriteByte(0)
	h.Write(subject)
	h.WriteByte(0)
	h.WriteString(route)
	return h.Sum64()
}

// take refills the bucket of k to now and takes a token. It reports whether one was there,
// and the tokens left.
func (b *buckets) take(k uint64, now int64, perNS, burst float64) (ok bool, left float64) {
	s := &b.shards[k%bucketShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	bk := s.m[k]
	if bk == nil {
		if len(s.m) >= b.perShard {
			for old := range s.m {
				delete(s.m, old)
				b.evicted.Add(1)
				break
			}
		}
		bk = &bucket{tokens: burst, last: now}
		s.m[k] = bk
	}
	if now > bk.last {
		bk.tokens = min(burst, bk.tokens+float64(now-bk.last)*perNS)
		bk.last = now
	}
	if bk.tokens >= 1 {
		bk.tokens--
		return true, bk.tokens
	}
	return false, bk.tokens
}

// size is the number of buckets held.
func (b *buckets) size() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
