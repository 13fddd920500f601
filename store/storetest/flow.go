package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// The flow-control part of the suite: limiters, idempotency keys and
// singletons inside claims, batch runs, and their clean-up. Limit and TakeKey
// take the time as an argument, so these tests use fixed times (base) and
// whole seconds, which every driver stores exactly.

// far is a latest start no limiter reaches in these tests.
var far = base.Add(1000 * time.Hour)

// flowClaim runs fn in a claim of a new pending event eventID and dispatches
// the claimed events; fn's error fails the claim (and is returned).
func flowClaim(t *testing.T, s store.Driver, eventID string, fn func(c context.Context, tx store.ClaimTx) error) error {
	t.Helper()
	return inClaim(t, s, eventID, "flow/x", func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		if err := fn(c, tx); err != nil {
			return store.Claim{}, err
		}
		return store.Claim{Dispatched: eventIDs(events)}, nil
	})
}

// limitResult is what one Limit call returned.
type limitResult struct {
	StartAt time.Time
	OK      bool
}

func admitted(at time.Time) limitResult { return limitResult{StartAt: at.UTC(), OK: true} }
func refused(at time.Time) limitResult  { return limitResult{StartAt: at.UTC(), OK: false} }

// limitCall is one Limit request.
type limitCall struct {
	key                 string
	now                 time.Time
	emission, tolerance time.Duration
	latest              time.Time
}

// limits runs calls in order in one claim of a new event and returns their
// results, times in UTC.
func limits(t *testing.T, s store.Driver, eventID string, calls ...limitCall) []limitResult {
	t.Helper()
	var got []limitResult
	require.NoError(t, flowClaim(t, s, eventID, func(c context.Context, tx store.ClaimTx) error {
		got = got[:0]
		for _, l := range calls {
			startAt, ok, err := tx.Limit(c, l.key, l.now, l.emission, l.tolerance, l.latest)
			if err != nil {
				return err
			}
			got = append(got, limitResult{StartAt: startAt.UTC(), OK: ok})
		}
		return nil
	}))
	return got
}

func testLimitRateLimit(t *testing.T, s store.Driver) {
	now := base
	rate := func(at time.Time, tolerance time.Duration, key string) limitCall {
		return limitCall{key: key, now: at, emission: time.Hour, tolerance: tolerance, latest: at}
	}
	// One per hour, no burst: the second at the same instant is over the
	// limit and changes nothing, so a request that accepts a later start
	// gets the slot right after the first.
	require.Equal(t, []limitResult{admitted(now), refused(now.Add(time.Hour)), admitted(now.Add(time.Hour))}, limits(t, s, "e1",
		rate(now, 0, "rl"),
		rate(now, 0, "rl"),
		limitCall{key: "rl", now: now, emission: time.Hour, latest: far},
	))

	// A tolerance of one emission interval admits two at one instant.
	require.Equal(t, []limitResult{admitted(now), admitted(now), refused(now.Add(time.Hour))}, limits(t, s, "e2",
		rate(now, time.Hour, "burst"),
		rate(now, time.Hour, "burst"),
		rate(now, time.Hour, "burst"),
	))

	// Time passes. Both keys have their TAT at now+2h; burst tolerates an
	// hour of it.
	require.Equal(t, []limitResult{
		refused(now.Add(2 * time.Hour)),     // rl: its TAT is still ahead
		admitted(now.Add(90 * time.Minute)), // burst: within tolerance; TAT now+3h
		admitted(now.Add(3 * time.Hour)),    // rl: past its TAT, idle again; TAT now+4h
		admitted(now.Add(3 * time.Hour)),    // burst: TAT now+4h
		refused(now.Add(4 * time.Hour)),     // rl: one per hour again
	}, limits(t, s, "e3",
		rate(now.Add(90*time.Minute), 0, "rl"),
		rate(now.Add(90*time.Minute), time.Hour, "burst"),
		rate(now.Add(3*time.Hour), 0, "rl"),
		rate(now.Add(3*time.Hour), time.Hour, "burst"),
		rate(now.Add(3*time.Hour), 0, "rl"),
	))

	// Keys are independent, and a latest start before now is refused.
	require.Equal(t, []limitResult{admitted(now), refused(now)}, limits(t, s, "e4",
		rate(now, 0, "other"),
		limitCall{key: "fresh", now: now, emission: time.Hour, latest: now.Add(-time.Second)},
	))

	for i, bad := range []limitCall{
		{key: "", now: now, emission: time.Hour, latest: now},
		{key: "k", now: now, latest: now},
		{key: "k", now: now, emission: time.Hour, tolerance: -time.Second, latest: now},
	} {
		err := flowClaim(t, s, fmt.Sprintf("bad%d", i), func(c context.Context, tx store.ClaimTx) error {
			_, _, err := tx.Limit(c, bad.key, bad.now, bad.emission, bad.tolerance, bad.latest)
			return err
		})
		require.Error(t, err, "%+v is refused", bad)
	}
}

func testLimitThrottle(t *testing.T, s store.Driver) {
	now := base
	throttle := func(latest time.Time) limitCall {
		return limitCall{key: "th", now: now, emission: 2 * time.Second, latest: latest}
	}
	// A throttle admits everything, later and later.
	require.Equal(t, []limitResult{admitted(now), admitted(now.Add(2 * time.Second)), admitted(now.Add(4 * time.Second))},
		limits(t, s, "e1", throttle(far), throttle(far), throttle(far)))

	// With a latest start, the request that would start after it is refused
	// and leaves the state as it was.
	bounded := func(latest time.Time) limitCall {
		return limitCall{key: "th2", now: now, emission: 2 * time.Second, latest: latest}
	}
	require.Equal(t, []limitResult{
		admitted(now), admitted(now.Add(2 * time.Second)), refused(now.Add(4 * time.Second)), admitted(now.Add(4 * time.Second)),
	}, limits(t, s, "e2",
		bounded(now.Add(3*time.Second)), bounded(now.Add(3*time.Second)), bounded(now.Add(3*time.Second)), bounded(far),
	))
}

func testLimitPersistsAndRollsBack(t *testing.T, s store.Driver) {
	now := base
	rate := limitCall{key: "k", now: now, emission: time.Hour, latest: now}
	throttle := limitCall{key: "k", now: now, emission: time.Hour, latest: far}

	require.Equal(t, []limitResult{admitted(now)}, limits(t, s, "e1", rate))
	require.Equal(t, []limitResult{refused(now.Add(time.Hour))}, limits(t, s, "e2", rate), "the TAT of a committed claim persists")

	boom := errors.New("temporal is down")
	var inFailed limitResult
	err := flowClaim(t, s, "e3", func(c context.Context, tx store.ClaimTx) error {
		startAt, ok, err := tx.Limit(c, throttle.key, throttle.now, throttle.emission, throttle.tolerance, throttle.latest)
		if err != nil {
			return err
		}
		inFailed = limitResult{StartAt: startAt.UTC(), OK: ok}
		// A new key too: it must not exist after the rollback.
		if _, _, err := tx.Limit(c, "new", now, time.Hour, 0, now); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, admitted(now.Add(time.Hour)), inFailed)

	require.Equal(t, []limitResult{admitted(now.Add(time.Hour)), admitted(now)},
		limits(t, s, "e4", throttle, limitCall{key: "new", now: now, emission: time.Hour, latest: now}),
		"a failed claim leaves the limiters as they were")
	require.Equal(t, []limitResult{admitted(now.Add(2 * time.Hour))}, limits(t, s, "e5", throttle))
}

// A start that failed after Limit admitted it gives its admission back in
// the same claim: the next request is admitted as if it never happened.
func testLimitRelease(t *testing.T, s store.Driver) {
	now := base
	rate := limitCall{key: "r", now: now, emission: time.Hour, latest: now}
	require.NoError(t, flowClaim(t, s, "e1", func(c context.Context, tx store.ClaimTx) error {
		if _, ok, err := tx.Limit(c, rate.key, rate.now, rate.emission, rate.tolerance, rate.latest); err != nil || !ok {
			return fmt.Errorf("first admission: ok=%v err=%w", ok, err)
		}
		return tx.ReleaseLimit(c, rate.key, rate.emission)
	}))
	require.Equal(t, []limitResult{admitted(now), refused(now.Add(time.Hour))}, limits(t, s, "e2", rate, rate),
		"the released admission is free again; the next one is not")

	// Released twice within one claim after two admissions: both are free.
	throttle := limitCall{key: "t", now: now, emission: time.Minute, latest: far}
	require.NoError(t, flowClaim(t, s, "e3", func(c context.Context, tx store.ClaimTx) error {
		for range 2 {
			if _, _, err := tx.Limit(c, throttle.key, throttle.now, throttle.emission, throttle.tolerance, throttle.latest); err != nil {
				return err
			}
		}
		for range 2 {
			if err := tx.ReleaseLimit(c, throttle.key, throttle.emission); err != nil {
				return err
			}
		}
		return nil
	}))
	require.Equal(t, []limitResult{admitted(now)}, limits(t, s, "e4", throttle))

	// A limiter that does not exist stays absent.
	require.NoError(t, flowClaim(t, s, "e5", func(c context.Context, tx store.ClaimTx) error {
		return tx.ReleaseLimit(c, "never", time.Hour)
	}))
	require.Equal(t, []limitResult{admitted(now)}, limits(t, s, "e6", limitCall{key: "never", now: now, emission: time.Hour, latest: now}))
}

// keyResult is what one TakeKey call returned.
type keyResult struct {
	Taken  bool
	Holder string
}

// takeKey calls TakeKey in a claim of a new event; fail makes the claim fail
// after the call.
func takeKey(t *testing.T, s store.Driver, eventID, key, runID string, now, expires time.Time, fail bool) keyResult {
	t.Helper()
	boom := errors.New("fail the claim")
	var got keyResult
	err := flowClaim(t, s, eventID, func(c context.Context, tx store.ClaimTx) error {
		taken, holder, err := tx.TakeKey(c, key, runID, now, expires)
		if err != nil {
			return err
		}
		got = keyResult{Taken: taken, Holder: holder}
		if fail {
			return boom
		}
		return nil
	})
	if fail {
		require.ErrorIs(t, err, boom)
	} else {
		require.NoError(t, err)
	}
	return got
}

func testTakeKey(t *testing.T, s store.Driver) {
	now, expires := base, base.Add(time.Hour)
	require.Equal(t, keyResult{true, "r1"}, takeKey(t, s, "e1", "idem", "r1", now, expires, false))
	require.Equal(t, keyResult{false, "r1"}, takeKey(t, s, "e2", "idem", "r2", now.Add(time.Minute), expires, false))
	require.Equal(t, keyResult{true, "r1"}, takeKey(t, s, "e3", "idem", "r1", now.Add(2*time.Minute), expires, false),
		"the holder takes its key again (a re-dispatch)")
	require.Equal(t, keyResult{false, "r1"}, takeKey(t, s, "e4", "idem", "r2", expires.Add(-time.Second), expires, false))

	// At expires_at the key is expired: another run takes it.
	require.Equal(t, keyResult{true, "r3"}, takeKey(t, s, "e5", "idem", "r3", expires, expires.Add(time.Hour), false))
	require.Equal(t, keyResult{false, "r3"}, takeKey(t, s, "e6", "idem", "r1", expires.Add(time.Minute), expires.Add(time.Hour), false))

	// Within one claim, a second run sees the first's key.
	var got []keyResult
	require.NoError(t, flowClaim(t, s, "e7", func(c context.Context, tx store.ClaimTx) error {
		for _, run := range []string{"a", "b"} {
			taken, holder, err := tx.TakeKey(c, "same-claim", run, now, expires)
			if err != nil {
				return err
			}
			got = append(got, keyResult{taken, holder})
		}
		return nil
	}))
	require.Equal(t, []keyResult{{true, "a"}, {false, "a"}}, got)

	// A failed claim keeps no key.
	require.Equal(t, keyResult{true, "lost"}, takeKey(t, s, "e8", "rolled-back", "lost", now, expires, true))
	require.Equal(t, keyResult{true, "kept"}, takeKey(t, s, "e9", "rolled-back", "kept", now, expires, false))
}

// singleton is one holder as SingletonHolder returns it.
type singleton struct{ RunID, WorkflowID string }

// holders reads the holders of keys in a claim of a new event.
func holders(t *testing.T, s store.Driver, eventID string, keys ...string) []singleton {
	t.Helper()
	var got []singleton
	require.NoError(t, flowClaim(t, s, eventID, func(c context.Context, tx store.ClaimTx) error {
		for _, k := range keys {
			run, wf, err := tx.SingletonHolder(c, k)
			if err != nil {
				return err
			}
			got = append(got, singleton{run, wf})
		}
		return nil
	}))
	return got
}

func finishedRun(id, eventID string) store.Run {
	ended := base.Add(time.Minute)
	r := runFor(id, "f", eventID, base)
	r.Status, r.EndedAt = wire.RunCompleted, &ended
	return r
}

func testSingletons(t *testing.T, s store.Driver) {
	var seen []singleton
	require.NoError(t, flowClaim(t, s, "e1", func(c context.Context, tx store.ClaimTx) error {
		run, wf, err := tx.SingletonHolder(c, "one")
		if err != nil {
			return err
		}
		seen = append(seen, singleton{run, wf})
		for _, k := range []string{"one", "two"} {
			if err := tx.SetSingleton(c, k, "r1", "wf-1"); err != nil {
				return err
			}
		}
		run, wf, err = tx.SingletonHolder(c, "one")
		seen = append(seen, singleton{run, wf})
		return err
	}))
	require.Equal(t, []singleton{{}, {"r1", "wf-1"}}, seen, "a claim reads the holder it set")
	require.Equal(t, []singleton{{"r1", "wf-1"}, {"r1", "wf-1"}, {}}, holders(t, s, "e2", "one", "two", "none"))

	// SetSingleton replaces the holder of "two" only.
	require.NoError(t, flowClaim(t, s, "e3", func(c context.Context, tx store.ClaimTx) error {
		return tx.SetSingleton(c, "two", "r2", "wf-2")
	}))
	require.Equal(t, []singleton{{"r1", "wf-1"}, {"r2", "wf-2"}}, holders(t, s, "e4", "one", "two"))

	// A failed claim sets nothing.
	boom := errors.New("boom")
	require.ErrorIs(t, flowClaim(t, s, "e5", func(c context.Context, tx store.ClaimTx) error {
		if err := tx.SetSingleton(c, "one", "r9", "wf-9"); err != nil {
			return err
		}
		return boom
	}), boom)
	require.Equal(t, []singleton{{"r1", "wf-1"}}, holders(t, s, "e6", "one"))

	// Finishing a run that holds nothing releases nothing; finishing a
	// holder releases its keys only.
	require.NoError(t, s.FinishRun(ctx(t), finishedRun("r3", "x3"), nil))
	require.Equal(t, []singleton{{"r1", "wf-1"}, {"r2", "wf-2"}}, holders(t, s, "e7", "one", "two"))
	require.NoError(t, s.FinishRun(ctx(t), finishedRun("r1", "x1"), nil))
	require.Equal(t, []singleton{{}, {"r2", "wf-2"}}, holders(t, s, "e8", "one", "two"))
	require.NoError(t, s.FinishRun(ctx(t), finishedRun("r2", "x2"), nil))
	require.Equal(t, []singleton{{}, {}}, holders(t, s, "e9", "one", "two"))

	// A released key can be held again.
	require.NoError(t, flowClaim(t, s, "e10", func(c context.Context, tx store.ClaimTx) error {
		return tx.SetSingleton(c, "one", "r4", "wf-4")
	}))
	require.Equal(t, []singleton{{"r4", "wf-4"}}, holders(t, s, "e11", "one"))
}

func recordRun(t *testing.T, s store.Driver, r store.Run, eventIDs ...string) {
	t.Helper()
	require.NoError(t, s.RecordRun(ctx(t), r, eventIDs))
}

func testRecordRun(t *testing.T, s store.Driver) {
	// A batch run: its event is the batch's first, and it is linked to all.
	batch := runFor("batch-1", "batched", "b1", base.Add(time.Second))
	recordRun(t, s, batch, "b1", "b2", "b3", "b2")
	for _, id := range []string{"b1", "b2", "b3"} {
		require.Equal(t, []string{"batch-1"}, runIDs(t, s, id), id)
	}
	got, err := s.GetRun(ctx(t), "batch-1")
	require.NoError(t, err)
	require.Equal(t, batch.WorkflowID, got.WorkflowID)
	require.Equal(t, "b1", got.EventID)
	require.Equal(t, wire.RunScheduled, got.Status)
	require.True(t, batch.StartedAt.Equal(got.StartedAt))

	// A retried start changes nothing, but adds its links.
	again := batch
	again.Status, again.WorkflowID = wire.RunRunning, "other-workflow"
	recordRun(t, s, again, "b1", "b2", "b3", "b4")
	got, err = s.GetRun(ctx(t), "batch-1")
	require.NoError(t, err)
	require.Equal(t, wire.RunScheduled, got.Status)
	require.Equal(t, batch.WorkflowID, got.WorkflowID)
	require.Equal(t, []string{"batch-1"}, runIDs(t, s, "b1"))
	require.Equal(t, []string{"batch-1"}, runIDs(t, s, "b4"))

	// Another id for a stored (app, function, event) is not stored.
	recordRun(t, s, runFor("batch-1-again", "batched", "b1", base))
	_, err = s.GetRun(ctx(t), "batch-1-again")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, []string{"batch-1"}, runIDs(t, s, "b1"))

	// A debounce run, linked to no other event, lists under its own.
	recordRun(t, s, runFor("debounced", "debounce", "d1", base))
	require.Equal(t, []string{"debounced"}, runIDs(t, s, "d1"))

	// An event with a run of its own (from a claim) and batch runs of other
	// functions lists them all, oldest first, each once.
	insert(t, s, base.Add(-time.Hour), ev("m1", "mixed/x", base))
	_, err = s.ClaimEvents(ctx(t), 10, claimAll("direct-"))
	require.NoError(t, err)
	recordRun(t, s, runFor("batch-late", "late", "m0", base.Add(time.Minute)), "m0", "m1")
	recordRun(t, s, runFor("batch-early", "early", "m1", base.Add(-time.Minute)), "m1", "m2")
	require.Equal(t, []string{"batch-early", "direct-m1", "batch-late"}, runIDs(t, s, "m1"))
	require.Equal(t, []string{"batch-late"}, runIDs(t, s, "m0"))
	require.Equal(t, []string{"batch-early"}, runIDs(t, s, "m2"))

	invalid := runFor("bad", "f", "b1", base)
	invalid.AppID = ""
	require.Error(t, s.RecordRun(ctx(t), invalid, []string{"z1"}))
	require.Empty(t, runIDs(t, s, "z1"), "a refused run links nothing")
}

func testPurgeFlowState(t *testing.T, s store.Driver) {
	now := base
	require.NoError(t, flowClaim(t, s, "e1", func(c context.Context, tx store.ClaimTx) error {
		for key, expires := range map[string]time.Time{
			"k-expired": now.Add(-time.Minute),
			"k-at-now":  now, // expired at now
			"k-live":    now.Add(time.Minute),
		} {
			if _, _, err := tx.TakeKey(c, key, "r-"+key, now.Add(-time.Hour), expires); err != nil {
				return err
			}
		}
		// A limiter admitted at t with emission e has its TAT at t+e.
		for key, at := range map[string]time.Time{
			"l-past":   now.Add(-2 * time.Minute), // TAT now-1m
			"l-at-now": now.Add(-time.Minute),     // TAT now: not before now
			"l-future": now,                       // TAT now+1m
		} {
			if _, _, err := tx.Limit(c, key, at, time.Minute, 0, far); err != nil {
				return err
			}
		}
		return nil
	}))

	n, err := s.PurgeFlowState(ctx(t), now)
	require.NoError(t, err)
	require.EqualValues(t, 3, n, "k-expired, k-at-now and l-past")
	n, err = s.PurgeFlowState(ctx(t), now)
	require.NoError(t, err)
	require.Zero(t, n)

	// What is left still counts.
	require.Equal(t, keyResult{false, "r-k-live"}, takeKey(t, s, "e2", "k-live", "other", now, now.Add(time.Hour), false))
	require.Equal(t, []limitResult{refused(now.Add(time.Minute))},
		limits(t, s, "e3", limitCall{key: "l-future", now: now, emission: time.Minute, latest: now}))

	n, err = s.PurgeFlowState(ctx(t), now.Add(time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "l-at-now")
	n, err = s.PurgeFlowState(ctx(t), now.Add(2*time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "k-live and l-future")
	n, err = s.PurgeFlowState(ctx(t), far)
	require.NoError(t, err)
	require.Zero(t, n)
}
