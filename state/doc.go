// Package state is the live state that apisessions replicas share through Redis
// (state.redis): today the numbering of session parts; counters, blocks and session links
// join it later through the same Batch.
//
// It is built for Envoy's path: a Batch is sent in one pipelined round trip bounded by
// state.redis.timeout; any failure makes the answer "unknown" and the caller decides locally
// (fail open). After a failed round trip a circuit breaker skips Redis until a background
// probe succeeds, so an unreachable Redis costs a request at most one timeout per pause.
// Failures are counted (Stats) and logged at most once a minute.
//
// It imports config and sessions (whose SharedParts it implements); sessions never imports it.
package state
