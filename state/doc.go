// Package state is the live state that apisessions replicas share through Redis
// (state.redis): the numbering of session parts, and protection's rate-limit buckets (in the
// request's one Batch, with the part read) and manual blocks (a hash, an audit list per
// session or user, and a pub/sub channel that tells every replica of a change).
//
// It is built for Envoy's path: a Batch is sent in one pipelined round trip bounded by
// state.redis.timeout, shared with the batches of concurrent requests (at most one pipeline
// is in flight; what queues meanwhile goes out together when it returns); any failure makes
// the answer "unknown" and the caller decides locally (fail open). After three failed round
// trips in a row (a round counts once, whatever it carried) a circuit breaker skips Redis
// until a background probe succeeds (tried every second), so an unreachable Redis costs no
// request more than the timeout, and only the few before the breaker opens pay it.
// Failures are counted (Stats) and logged at most once a minute.
//
// It imports config, sessions (whose SharedParts it implements) and protect (whose Shared it
// implements); neither imports it.
package state
