package protect

// bucket is one token bucket: tokens left at last (nanoseconds on the engine's clock).
type bucket struct {
	tokens float64
	last   int64
}

// take refills the bucket k of b to now and takes a token. It reports whether one was there,
// and the tokens left. A bucket starts full.
func take(b *table[bucket], k uint64, now int64, perNS, burst float64) (ok bool, left float64) {
	b.with(k, true, func(bk *bucket, made bool) {
		if made {
			*bk = bucket{tokens: burst, last: now}
		}
		if now > bk.last {
			bk.tokens = min(burst, bk.tokens+float64(now-bk.last)*perNS)
			bk.last = now
		}
		if bk.tokens >= 1 {
			bk.tokens--
			ok = true
		}
		left = bk.tokens
	})
	return ok, left
}
