package reconcile

import (
	"math/rand/v2"
	"time"
)

// Backoff bounds.
const (
	// FirstBackoff is the wait after the first unknown or failed lookup;
	// it doubles with every further one up to the maximum.
	FirstBackoff = time.Second
	// DefaultMaxBackoff is --reconcile-max-backoff.
	DefaultMaxBackoff = time.Minute
	// MinRetryAfter is the floor of an upstream's retry_after_ms: an
	// upstream cannot make the control plane ask it in a tight loop.
	MinRetryAfter = 100 * time.Millisecond
)

// Backoff is the wait before asking again about a record asked attempts
// times already (attempts ≥ 0: the asks before this one) whose lookup just
// answered unknown or failed: FirstBackoff doubled per attempt, capped at
// limit, then jittered down by up to a fifth (jitter in [0, 1)) so that keys
// that failed together are not asked again together.
func Backoff(attempts int, limit time.Duration, jitter float64) time.Duration {
	d := FirstBackoff
	for i := 0; i < attempts && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d - time.Duration(float64(d)*jitter/5)
}

// RetryAfter is the wait an upstream asked for with retry_after_ms,
// clamped to [MinRetryAfter, limit].
func RetryAfter(ms int64, limit time.Duration) time.Duration {
	if ms >= int64(limit/time.Millisecond) {
		return limit // also guards the multiplication below against overflow
	}
	return min(max(time.Duration(ms)*time.Millisecond, MinRetryAfter), limit)
}

// nextWait is the wait after an unknown (retryAfterMS > 0: the upstream's
// wish) or failed lookup.
func nextWait(attempts int, retryAfterMS int64, limit time.Duration) time.Duration {
	if retryAfterMS > 0 {
		return RetryAfter(retryAfterMS, limit)
	}
	return Backoff(attempts, limit, rand.Float64())
}
