package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// requireSkipped checks the Skipped run recorded for fnID and e.
func requireSkipped(t *testing.T, b *bundle, fnID string, e store.Event, reason string) {
	t.Helper()
	r := requireRun(t, b, fnID, e, wire.RunSkipped)
	require.Equal(t, reason, r.Error)
	require.NotNil(t, r.EndedAt, "a skipped run is finished")
	require.Empty(t, b.tc.startsOf(wfID(fnID, e)), "a skipped run is not started")
	require.True(t, b.dispatched(t, e.ID), "a skip dispatches the event")
}

func TestRateLimitSkips(t *testing.T) {
	t.Parallel()
	f := fn("notify", "shop/ping")
	f.RateLimit = &wire.RateLimitConfig{Limit: 1, PeriodMS: 60_000, Key: "event.data.user"}
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/ping", `{"user":"u1"}`)
	second := b.send(t, "shop/ping", `{"user":"u1"}`)
	otherKey := b.send(t, "shop/ping", `{"user":"u2"}`)

	require.Equal(t, 3, b.dispatch(t))

	require.Equal(t, []temporalx.Start{expectedStart("notify", first)}, b.tc.startsOf(wfID("notify", first)))
	requireRun(t, b, "notify", first, wire.RunRunning)
	requireSkipped(t, b, "notify", second, `skipped: rate_limit: over 1 per 1m0s for key "u1"`)
	requireRun(t, b, "notify", otherKey, wire.RunRunning)
	require.Len(t, b.tc.Starts(), 2)

	// The limiter's state outlives the claim.
	later := b.send(t, "shop/ping", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	requireSkipped(t, b, "notify", later, `skipped: rate_limit: over 1 per 1m0s for key "u1"`)
	require.Len(t, b.tc.Starts(), 2)
}

func TestRateLimitWithoutKey(t *testing.T) {
	t.Parallel()
	f := fn("notify", "shop/ping")
	f.RateLimit = &wire.RateLimitConfig{Limit: 2, PeriodMS: 3_600_000}
	b := setup(t, []wire.FunctionConfig{f})
	var events []store.Event
	for i := range 3 {
		events = append(events, b.send(t, "shop/ping", fmt.Sprintf(`{"user":"u%d"}`, i)))
	}

	require.Equal(t, 3, b.dispatch(t))

	requireRun(t, b, "notify", events[0], wire.RunRunning)
	requireRun(t, b, "notify", events[1], wire.RunRunning)
	requireSkipped(t, b, "notify", events[2], `skipped: rate_limit: over 2 per 1h0m0s for key ""`)
}

func TestIdempotencySkips(t *testing.T) {
	t.Parallel()
	f := fn("charge", "shop/order")
	f.Idempotency = "event.data.order"
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/order", `{"order":"o1"}`)
	dup := b.send(t, "shop/order", `{"order":"o1"}`)
	other := b.send(t, "shop/order", `{"order":"o2"}`)

	require.Equal(t, 3, b.dispatch(t))

	requireRun(t, b, "charge", first, wire.RunRunning)
	requireSkipped(t, b, "charge", dup, fmt.Sprintf(`skipped: idempotency: key "o1" already ran as run %s`, runID("charge", first)))
	requireRun(t, b, "charge", other, wire.RunRunning)

	later := b.send(t, "shop/order", `{"order":"o2"}`)
	require.Equal(t, 1, b.dispatch(t))
	requireSkipped(t, b, "charge", later, fmt.Sprintf(`skipped: idempotency: key "o2" already ran as run %s`, runID("charge", other)))
	require.Len(t, b.tc.Starts(), 2)
}

func TestSingletonSkipWhileHolderRuns(t *testing.T) {
	t.Parallel()
	f := fn("sync", "shop/sync")
	f.Singleton = &wire.SingletonConfig{Key: "event.data.user", Mode: wire.SingletonSkip}
	b := setup(t, []wire.FunctionConfig{f})
	running := map[string]bool{}
	b.tc.running = func(id string) (bool, error) { return running[id], nil }

	first := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	requireRun(t, b, "sync", first, wire.RunRunning)
	require.Empty(t, b.tc.IsRunningCalls(), "no holder: nothing to ask")

	running[wfID("sync", first)] = true
	second := b.send(t, "shop/sync", `{"user":"u1"}`)
	otherKey := b.send(t, "shop/sync", `{"user":"u2"}`)
	require.Equal(t, 2, b.dispatch(t))
	requireSkipped(t, b, "sync", second, fmt.Sprintf("skipped: singleton: run %s is running for the same key", runID("sync", first)))
	requireRun(t, b, "sync", otherKey, wire.RunRunning)
	require.Equal(t, []string{wfID("sync", first)}, b.tc.IsRunningCalls())
	require.Empty(t, b.tc.Cancels())

	// The holder ended: the next run starts and holds the key.
	running[wfID("sync", first)] = false
	third := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	requireRun(t, b, "sync", third, wire.RunRunning)
	require.Len(t, b.tc.startsOf(wfID("sync", third)), 1)

	running[wfID("sync", third)] = true
	fourth := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	requireSkipped(t, b, "sync", fourth, fmt.Sprintf("skipped: singleton: run %s is running for the same key", runID("sync", third)))
}

func TestSingletonCancelReplacesHolder(t *testing.T) {
	t.Parallel()
	f := fn("sync", "shop/sync")
	f.Singleton = &wire.SingletonConfig{Key: "event.data.user", Mode: wire.SingletonCancel}
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	require.Empty(t, b.tc.Cancels())

	second := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))

	require.Equal(t, []string{wfID("sync", first)}, b.tc.IsRunningCalls())
	require.Equal(t, []string{wfID("sync", first)}, b.tc.Cancels())
	require.Equal(t, []temporalx.Start{expectedStart("sync", second)}, b.tc.startsOf(wfID("sync", second)))
	requireRun(t, b, "sync", second, wire.RunRunning)
	require.True(t, b.dispatched(t, second.ID))

	// The second run is the holder now: a third cancels it, not the first.
	third := b.send(t, "shop/sync", `{"user":"u1"}`)
	require.Equal(t, 1, b.dispatch(t))
	require.Equal(t, []string{wfID("sync", first), wfID("sync", second)}, b.tc.Cancels())
	requireRun(t, b, "sync", third, wire.RunRunning)
}

func TestSingletonCancelFailureLeavesEventPending(t *testing.T) {
	t.Parallel()
	f := fn("sync", "shop/sync")
	f.Singleton = &wire.SingletonConfig{Mode: wire.SingletonCancel}
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/sync", `{}`)
	require.Equal(t, 1, b.dispatch(t))

	b.tc.failCancel = func(string) error { return errTemporalDown }
	second := b.send(t, "shop/sync", `{}`)
	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.False(t, b.dispatched(t, second.ID))
	require.Empty(t, b.tc.startsOf(wfID("sync", second)))

	b.tc.mu.Lock()
	b.tc.failCancel = nil
	b.tc.mu.Unlock()
	require.Equal(t, 1, b.dispatch(t))
	require.Equal(t, []string{wfID("sync", first), wfID("sync", first)}, b.tc.Cancels())
	requireRun(t, b, "sync", second, wire.RunRunning)
}

func TestSingletonIsRunningFailureLeavesEventPending(t *testing.T) {
	t.Parallel()
	f := fn("sync", "shop/sync")
	f.Singleton = &wire.SingletonConfig{}
	b := setup(t, []wire.FunctionConfig{f})
	b.send(t, "shop/sync", `{}`)
	require.Equal(t, 1, b.dispatch(t))

	b.tc.running = func(string) (bool, error) { return false, errTemporalDown }
	second := b.send(t, "shop/sync", `{}`)
	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.Contains(t, err.Error(), "flow control of shop/sync for event "+second.ID)
	require.False(t, b.dispatched(t, second.ID))
	require.Empty(t, b.runs(t, second.ID))
}

func TestDebounceSignalsOncePerKey(t *testing.T) {
	t.Parallel()
	f := fn("digest", "shop/comment")
	f.Debounce = &wire.DebounceConfig{PeriodMS: 5_000, Key: "event.data.user", TimeoutMS: 60_000}
	b := setup(t, []wire.FunctionConfig{f})
	a1 := b.send(t, "shop/comment", `{"user":"ann","n":1}`)
	z1 := b.send(t, "shop/comment", `{"user":"zed","n":2}`)
	a2 := b.send(t, "shop/comment", `{"user":"ann","n":3}`)

	require.Equal(t, 3, b.dispatch(t))

	state := wire.DebounceState{AppID: testApp, FunctionID: "digest", PeriodMS: 5_000, TimeoutMS: 60_000}
	pe := func(e store.Event) wire.PendingEvent {
		return wire.PendingEvent{Event: wireEvent(e), ReceivedMS: e.ReceivedAt.UnixMilli()}
	}
	require.Equal(t, []temporalx.SignalStart{
		{
			WorkflowID: "herald/debounce/shop/digest/ann", WorkflowType: wire.WorkflowDebounce,
			TaskQueue: wire.DefaultSystemTaskQueue, Input: state,
			Signal: wire.SignalEvent, SignalArg: []wire.PendingEvent{pe(a1), pe(a2)}, // one signal, oldest first
			App: testApp, Function: "digest", Summary: "herald.debounce of shop/digest",
		},
		{
			WorkflowID: "herald/debounce/shop/digest/zed", WorkflowType: wire.WorkflowDebounce,
			TaskQueue: wire.DefaultSystemTaskQueue, Input: state,
			Signal: wire.SignalEvent, SignalArg: []wire.PendingEvent{pe(z1)},
			App: testApp, Function: "digest", Summary: "herald.debounce of shop/digest",
		},
	}, b.tc.SignalStarts())
	require.Empty(t, b.tc.Starts())
	for _, e := range []store.Event{a1, z1, a2} {
		require.Empty(t, b.runs(t, e.ID), "the debounce workflow records the run when it fires")
		require.True(t, b.dispatched(t, e.ID))
	}
}

func TestBatchSignalsAndRunsUnbatchedEvents(t *testing.T) {
	t.Parallel()
	f := fn("bulk", "shop/row")
	f.Batch = &wire.BatchConfig{MaxSize: 10, TimeoutMS: 2_000, Key: "event.data.table", If: `event.data.mode == "bulk"`}
	b := setup(t, []wire.FunctionConfig{f}, func(c *Config) { c.SystemTaskQueue = "sys-q" })
	r1 := b.send(t, "shop/row", `{"table":"t","mode":"bulk","n":1}`)
	now := b.send(t, "shop/row", `{"table":"t","mode":"now","n":2}`)
	r2 := b.send(t, "shop/row", `{"table":"t","mode":"bulk","n":3}`)
	r3 := b.send(t, "shop/row", `{"table":"t","mode":"bulk","n":4}`)

	require.Equal(t, 4, b.dispatch(t))

	pe := func(e store.Event) wire.PendingEvent {
		return wire.PendingEvent{Event: wireEvent(e), ReceivedMS: e.ReceivedAt.UnixMilli()}
	}
	require.Equal(t, []temporalx.SignalStart{{
		WorkflowID: "herald/batch/shop/bulk/t", WorkflowType: wire.WorkflowBatch, TaskQueue: "sys-q",
		Input:  wire.BatchState{AppID: testApp, FunctionID: "bulk", MaxSize: 10, TimeoutMS: 2_000},
		Signal: wire.SignalEvent, SignalArg: []wire.PendingEvent{pe(r1), pe(r2), pe(r3)},
		App: testApp, Function: "bulk", Summary: "herald.batch of shop/bulk",
	}}, b.tc.SignalStarts())
	// The event the if leaves out runs alone, at once.
	require.Equal(t, []temporalx.Start{expectedStart("bulk", now)}, b.tc.Starts())
	requireRun(t, b, "bulk", now, wire.RunRunning)
	for _, e := range []store.Event{r1, now, r2, r3} {
		require.True(t, b.dispatched(t, e.ID))
	}
}

func TestSignalWithStartFailureLeavesEventsPending(t *testing.T) {
	t.Parallel()
	f := fn("digest", "shop/comment")
	f.Debounce = &wire.DebounceConfig{PeriodMS: 5_000, Key: "event.data.user"}
	b := setup(t, []wire.FunctionConfig{f, fn("log", "shop/other")})
	ann := b.send(t, "shop/comment", `{"user":"ann"}`)
	zed := b.send(t, "shop/comment", `{"user":"zed"}`)
	other := b.send(t, "shop/other", `{}`)
	fail := true
	b.tc.failSignalStart = func(s temporalx.SignalStart) error {
		if fail && s.WorkflowID == "herald/debounce/shop/digest/ann" {
			return errTemporalDown
		}
		return nil
	}

	require.Equal(t, 3, b.dispatch(t))
	require.False(t, b.dispatched(t, ann.ID))
	require.True(t, b.dispatched(t, zed.ID))
	require.True(t, b.dispatched(t, other.ID))

	fail = false
	require.Equal(t, 1, b.dispatch(t))
	require.True(t, b.dispatched(t, ann.ID))
	ss := b.tc.SignalStarts()
	require.Len(t, ss, 3)
	require.Equal(t, "herald/debounce/shop/digest/ann", ss[1].WorkflowID)
	require.Equal(t, ss[0], ss[1], "the retry hands over the same events")
}

func TestPriorityKey(t *testing.T) {
	t.Parallel()
	f := fn("work", "shop/job")
	f.Priority = &wire.PriorityConfig{Run: "event.data.p"}
	b := setup(t, []wire.FunctionConfig{f})
	cases := []struct {
		data string
		key  int
	}{
		{`{"p":600}`, 1},
		{`{"p":5000}`, 1}, // clamped to 600
		{`{"p":300}`, 1},
		{`{"p":299}`, 2},
		{`{"p":1}`, 2},
		{`{"p":0}`, 3},
		{`{"p":-1}`, 4},
		{`{"p":-299}`, 4},
		{`{"p":-300}`, 5},
		{`{"p":-9000}`, 5},
		{`{"p":150.7}`, 2},
		{`{}`, 0},           // the expression fails: Temporal's default
		{`{"p":"high"}`, 0}, // not a number: the default
	}
	events := make([]store.Event, len(cases))
	for i, c := range cases {
		events[i] = b.send(t, "shop/job", c.data)
	}

	require.Equal(t, len(cases), b.dispatch(t))

	for i, c := range cases {
		ss := b.tc.startsOf(wfID("work", events[i]))
		require.Len(t, ss, 1, c.data)
		want := expectedStart("work", events[i])
		want.Priority = c.key
		require.Equal(t, want, ss[0], c.data)
		requireRun(t, b, "work", events[i], wire.RunRunning)
	}
}

func TestPriorityKeyMapping(t *testing.T) {
	t.Parallel()
	for v, want := range map[int64]int{600: 1, 300: 1, 299: 2, 1: 2, 0: 3, -1: 4, -299: 4, -300: 5, -600: 5} {
		require.Equal(t, want, PriorityKey(v), "PriorityKey(%d)", v)
	}
}

func TestThrottleDelaysExcessRuns(t *testing.T) {
	t.Parallel()
	f := fn("crawl", "shop/page")
	f.Throttle = &wire.ThrottleConfig{Limit: 1, PeriodMS: 60_000}
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/page", `{}`)
	second := b.send(t, "shop/page", `{}`)

	require.Equal(t, 2, b.dispatch(t))

	s1 := b.tc.startsOf(wfID("crawl", first))
	require.Len(t, s1, 1)
	require.Zero(t, s1[0].Delay)
	requireRun(t, b, "crawl", first, wire.RunRunning)

	s2 := b.tc.startsOf(wfID("crawl", second))
	require.Len(t, s2, 1)
	require.Greater(t, s2[0].Delay, 30*time.Second, "one period after the first")
	require.LessOrEqual(t, s2[0].Delay, time.Minute)
	requireRun(t, b, "crawl", second, wire.RunScheduled)
}

func TestStartTimeoutSkips(t *testing.T) {
	t.Parallel()
	f := fn("late", "shop/x")
	f.Timeouts = &wire.TimeoutsConfig{StartMS: 60_000}
	b := setup(t, []wire.FunctionConfig{f})
	old := b.send(t, "shop/x", `{}`, receivedAt(time.Now().Add(-2*time.Hour)))
	fresh := b.send(t, "shop/x", `{}`)

	require.Equal(t, 2, b.dispatch(t))

	requireSkipped(t, b, "late", old, "skipped: timeouts.start: not started within 1m0s of the event")
	requireRun(t, b, "late", fresh, wire.RunRunning)
}

func TestThrottleBeyondStartTimeoutSkips(t *testing.T) {
	t.Parallel()
	f := fn("crawl", "shop/page")
	f.Throttle = &wire.ThrottleConfig{Limit: 1, PeriodMS: 60_000}
	f.Timeouts = &wire.TimeoutsConfig{StartMS: 10_000}
	b := setup(t, []wire.FunctionConfig{f})
	first := b.send(t, "shop/page", `{}`)
	second := b.send(t, "shop/page", `{}`)

	require.Equal(t, 2, b.dispatch(t))

	requireRun(t, b, "crawl", first, wire.RunRunning)
	requireSkipped(t, b, "crawl", second, "skipped: timeouts.start: the throttle would start it after its timeouts.start of 10s")
}

// A start that fails in a batch that commits gives its rate-limiter slot
// back, so the event's retry is not judged over the limit by its own failed
// attempt.
func TestRateLimitRetryOfFailedStartRuns(t *testing.T) {
	t.Parallel()
	f := fn("notify", "shop/ping")
	f.RateLimit = &wire.RateLimitConfig{Limit: 1, PeriodMS: 60_000}
	b := setup(t, []wire.FunctionConfig{f, fn("log", "shop/log")})
	e := b.send(t, "shop/ping", `{}`)
	b.send(t, "shop/log", `{}`) // dispatched: the claim commits
	fail := true
	b.tc.failStart = func(s temporalx.Start) error {
		if fail && s.Function == "notify" {
			return errTemporalDown
		}
		return nil
	}
	require.Equal(t, 2, b.dispatch(t))
	require.False(t, b.dispatched(t, e.ID))

	fail = false
	require.Equal(t, 1, b.dispatch(t))
	// The only run of the limit's period must start.
	require.Len(t, b.tc.startsOf(wfID("notify", e)), 2, "the retry starts the run")
	requireRun(t, b, "notify", e, wire.RunRunning)
}

// Two events of one singleton key in one batch: the first run's workflow
// does not exist yet when the second is decided, so the claim itself knows
// the key is taken (skip mode: the second is skipped; cancel mode: the first
// is replaced before it starts).
func TestSingletonTwoEventsInOneBatch(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{wire.SingletonSkip, wire.SingletonCancel} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := fn("sync", "shop/sync")
			f.Singleton = &wire.SingletonConfig{Key: "event.data.user", Mode: mode}
			b := setup(t, []wire.FunctionConfig{f})
			e1 := b.send(t, "shop/sync", `{"user":"u1"}`)
			e2 := b.send(t, "shop/sync", `{"user":"u1"}`)

			require.Equal(t, 2, b.dispatch(t))

			// One run of the key is left running: the first in skip mode,
			// the second in cancel mode.
			keep, drop := e1, e2
			if mode == wire.SingletonCancel {
				keep, drop = e2, e1
			}
			require.True(t, b.tc.open(wfID("sync", keep)))
			require.False(t, b.tc.open(wfID("sync", drop)), "two runs of one singleton key are running")
		})
	}
}
