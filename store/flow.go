package store

import (
	"fmt"
	"time"
)

// GCRA applies one request to a limiter whose theoretical arrival time is tat
// (the zero time when the limiter has no state), as ClaimTx.Limit specifies.
// When ok, the driver stores next as the limiter's new TAT; otherwise it
// stores nothing. Every driver computes with it, so a limiter behaves the
// same on each; only the precision of the stored TAT differs.
func GCRA(tat, now time.Time, emission, tolerance time.Duration, latest time.Time) (startAt, next time.Time, ok bool) {
	if tat.Before(now) {
		tat = now
	}
	startAt = tat.Add(-tolerance)
	if startAt.Before(now) {
		startAt = now
	}
	if startAt.After(latest) {
		return startAt, time.Time{}, false
	}
	return startAt, tat.Add(emission), true
}

// ValidateLimit checks a ClaimTx.Limit request: a key, a positive emission
// interval and a tolerance that is not negative.
func ValidateLimit(key string, emission, tolerance time.Duration) error {
	if key == "" {
		return fmt.Errorf("store: limit: a key is required")
	}
	if emission <= 0 || tolerance < 0 {
		return fmt.Errorf("store: limit %q: emission must be positive and tolerance not negative (got %v, %v)", key, emission, tolerance)
	}
	return nil
}

// ValidateHolder checks the key and run of a TakeKey or SetSingleton call.
func ValidateHolder(op, key, runID string) error {
	if key == "" || runID == "" {
		return fmt.Errorf("store: %s: key and run id are required (got %q, %q)", op, key, runID)
	}
	return nil
}
