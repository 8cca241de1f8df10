package sinks

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Retry defaults, the configuration's.
const (
	DefaultRetryInitial = 1 * time.Second
	DefaultRetryMax     = 30 * time.Second
	// MaxRetryAfter caps the delay a destination may ask for (HTTP Retry-After), so that a
	// mistaken or hostile answer cannot park a sink for hours.
	MaxRetryAfter = 5 * time.Minute
)

// RetryPolicy says how an output retries a batch its sink could not take.
//
// The wait before retry n (0-based) is drawn uniformly from [0, min(MaxInterval,
// InitialInterval·2ⁿ)] ("full jitter"), so that outputs recovering at the same moment do not
// retry in step; a delay the destination asked for (see RetryAfter) raises it.
type RetryPolicy struct {
	// InitialInterval is the ceiling of the first wait; zero disables retries: a failed write
	// counts its records as failed at once (unless the output has a spool, which implies
	// retries with the defaults).
	InitialInterval time.Duration
	// MaxInterval caps the wait (DefaultRetryMax when zero).
	MaxInterval time.Duration
	// MaxElapsed gives up on a batch once it has been retried for this long, counting its
	// records as failed; zero retries until the batch is delivered, the spool dropping the
	// oldest records when it fills up.
	MaxElapsed time.Duration
}

// DefaultRetryPolicy returns the policy the configuration defaults to.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{InitialInterval: DefaultRetryInitial, MaxInterval: DefaultRetryMax}
}

func (p RetryPolicy) enabled() bool { return p.InitialInterval > 0 }

// backoff returns the wait before retry n after err.
func (p RetryPolicy) backoff(n int, err error) time.Duration {
	ceil := p.MaxInterval
	if ceil <= 0 {
		ceil = DefaultRetryMax
	}
	d := p.InitialInterval
	for i := 0; i < n && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	wait := time.Duration(0)
	if d > 0 {
		wait = time.Duration(rand.Int64N(int64(d) + 1))
	}
	if ra, ok := RetryAfterDelay(err); ok {
		wait = max(wait, ra)
	}
	return wait
}

// expired reports whether a batch first tried at start has been retried long enough.
func (p RetryPolicy) expired(start, now time.Time) bool {
	return p.MaxElapsed > 0 && now.Sub(start) >= p.MaxElapsed
}

// retryAfterError carries the delay a destination asked for.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err, a retryable failure, with the delay the destination asked for before
// the next try (an HTTP 429 or 503 with Retry-After). The output waits at least that long,
// capped at MaxRetryAfter. RetryAfter(nil, d) is nil.
func RetryAfter(err error, delay time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err: err, delay: delay}
}

// RetryAfterDelay returns the delay err (or an error it wraps) carries from RetryAfter, capped
// at MaxRetryAfter and never negative.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var ra retryAfterError
	if !errors.As(err, &ra) {
		return 0, false
	}
	return min(max(ra.delay, 0), MaxRetryAfter), true
}

// retrier keeps the retries of the batch at the head of an output's queue: the worker reads that
// batch again after each failure, until it is delivered or given up.
type retrier struct {
	RetryPolicy
	failures int       // failed attempts so far
	since    time.Time // the first failure
}

// failed notes a failed attempt at now, and reports whether the batch has been retried long
// enough (MaxElapsed) and, if not, how long to wait before the next try.
func (r *retrier) failed(now time.Time, err error) (wait time.Duration, expired bool) {
	if r.failures == 0 {
		r.since = now
	}
	if r.expired(r.since, now) {
		return 0, true
	}
	wait = r.backoff(r.failures, err)
	r.failures++
	return wait, false
}

// reset starts over for the next batch.
func (r *retrier) reset() { r.failures, r.since = 0, time.Time{} }
