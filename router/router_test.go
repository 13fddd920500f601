package router

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// expectedStart is the Start the router must make for fnID and e with no
// flow control.
func expectedStart(fnID string, e store.Event) temporalx.Start {
	return temporalx.Start{
		WorkflowID:   wfID(fnID, e),
		WorkflowType: fnID,
		TaskQueue:    testQueue,
		Input: wire.RunRequest{
			AppID: testApp, FunctionID: fnID, RunID: runID(fnID, e),
			Event: wireEvent(e), ReceivedMS: e.ReceivedAt.UnixMilli(), Report: wire.ReportLocal,
		},
		App: testApp, Function: fnID, EventName: e.Name, EventID: e.ID,
		Summary: e.Name,
	}
}

// counterValue returns the value of the counter named name that reg gathers.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// requireRun checks the run the router recorded for fnID and e.
func requireRun(t *testing.T, b *bundle, fnID string, e store.Event, status string) store.Run {
	t.Helper()
	r := b.runOf(t, fnID, e)
	require.Equal(t, runID(fnID, e), r.ID)
	require.Equal(t, testApp, r.AppID)
	require.Equal(t, fnID, r.FunctionID)
	require.Equal(t, e.ID, r.EventID)
	require.Equal(t, wfID(fnID, e), r.WorkflowID)
	require.Equal(t, status, r.Status)
	require.False(t, r.StartedAt.IsZero())
	return r
}

func TestDispatchStartsExactNameTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("welcome", "shop/user.signup")})
	e := b.send(t, "shop/user.signup", `{"user":"u1"}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Equal(t, []temporalx.Start{expectedStart("welcome", e)}, b.tc.Starts())
	require.Empty(t, b.tc.SignalStarts())
	r := requireRun(t, b, "welcome", e, wire.RunRunning)
	require.Nil(t, r.EndedAt)
	require.Empty(t, r.Error)
	require.Len(t, b.runs(t, e.ID), 1)
	require.True(t, b.dispatched(t, e.ID))
	require.Zero(t, b.pending(t))

	// Nothing is left to claim.
	require.Equal(t, 0, b.dispatch(t))
	require.Len(t, b.tc.Starts(), 1)
}

func TestDispatchWildcardTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("audit", "shop/*")})
	created := b.send(t, "shop/order.created", `{}`)
	deep := b.send(t, "shop/a/b", `{}`)
	other := b.send(t, "shopping/order.created", `{}`)

	require.Equal(t, 3, b.dispatch(t))

	require.ElementsMatch(t, []string{wfID("audit", created), wfID("audit", deep)}, b.tc.StartIDs())
	requireRun(t, b, "audit", created, wire.RunRunning)
	requireRun(t, b, "audit", deep, wire.RunRunning)
	require.Empty(t, b.runs(t, other.ID))
	for _, e := range []store.Event{created, deep, other} {
		require.True(t, b.dispatched(t, e.ID), e.Name)
	}
}

func TestDispatchTriggerIf(t *testing.T) {
	t.Parallel()
	big := fn("big-order")
	big.Triggers = []wire.TriggerConfig{{Event: "shop/order", If: "event.data.amount > 100"}}
	b := setup(t, []wire.FunctionConfig{big})
	yes := b.send(t, "shop/order", `{"amount":150}`)
	no := b.send(t, "shop/order", `{"amount":50}`)

	require.Equal(t, 2, b.dispatch(t))

	require.Equal(t, []temporalx.Start{expectedStart("big-order", yes)}, b.tc.Starts())
	requireRun(t, b, "big-order", yes, wire.RunRunning)
	require.Empty(t, b.runs(t, no.ID))
	require.True(t, b.dispatched(t, yes.ID))
	require.True(t, b.dispatched(t, no.ID), "an event whose if is false is dispatched")
}

func TestDispatchFanOut(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, []wire.FunctionConfig{fn("email", "shop/user.signup"), fn("crm", "shop/user.signup", "shop/user.*")},
		func(c *Config) { c.Metrics = NewMetrics(reg) })
	e := b.send(t, "shop/user.signup", `{"user":"u1"}`)

	require.Equal(t, 1, b.dispatch(t))
	require.Equal(t, 2.0, counterValue(t, reg, "herald_runs_started_total"))
	require.Equal(t, 1.0, counterValue(t, reg, "herald_router_events_dispatched_total"))

	// crm matches by two triggers and still starts once.
	require.Equal(t, []temporalx.Start{expectedStart("crm", e), expectedStart("email", e)}, b.tc.Starts())
	require.NotEqual(t, runID("crm", e), runID("email", e))
	runs := b.runs(t, e.ID)
	require.Len(t, runs, 2)
	requireRun(t, b, "crm", e, wire.RunRunning)
	requireRun(t, b, "email", e, wire.RunRunning)
	require.True(t, b.dispatched(t, e.ID))
}

func TestDispatchNoMatch(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("email", "shop/user.signup")})
	e := b.send(t, "shop/nobody.listens", `{}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Empty(t, b.tc.Starts())
	require.Empty(t, b.tc.SignalStarts())
	require.Empty(t, b.runs(t, e.ID))
	require.True(t, b.dispatched(t, e.ID))
	require.Equal(t, 0, b.dispatch(t))
}

func TestDispatchNoFunctions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	e := b.send(t, "shop/user.signup", `{}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Empty(t, b.tc.Starts())
	require.True(t, b.dispatched(t, e.ID))
}

func TestDispatchFutureEventIsScheduled(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("remind", "shop/remind")})
	future := b.send(t, "shop/remind", `{}`, withTS(time.Now().Add(time.Hour)))
	past := b.send(t, "shop/remind", `{}`, withTS(time.Now().Add(-time.Hour)))

	require.Equal(t, 2, b.dispatch(t))

	fs := b.tc.startsOf(wfID("remind", future))
	require.Len(t, fs, 1)
	require.Positive(t, fs[0].Delay)
	require.LessOrEqual(t, fs[0].Delay, time.Hour)
	requireRun(t, b, "remind", future, wire.RunScheduled)

	ps := b.tc.startsOf(wfID("remind", past))
	require.Len(t, ps, 1)
	require.Zero(t, ps[0].Delay, "an event in the past starts at once")
	requireRun(t, b, "remind", past, wire.RunRunning)
}

func TestDispatchRedispatchRecordsOneRun(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order"), fn("b", "shop/order")})
	e := b.send(t, "shop/order", `{}`)
	// b fails once: the only event of the batch stays pending, so a was
	// started but its run not recorded.
	failed := false
	b.tc.failStart = func(s temporalx.Start) error {
		if s.Function == "b" && !failed {
			failed = true
			return errTemporalDown
		}
		return nil
	}

	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.False(t, b.dispatched(t, e.ID))
	require.Empty(t, b.runs(t, e.ID))

	// The retry starts a again with the same ids (the real client reports
	// "already started" as success) and records each run once.
	require.Equal(t, 1, b.dispatch(t))
	as := b.tc.startsOf(wfID("a", e))
	require.Len(t, as, 2)
	require.Equal(t, as[0], as[1], "a re-dispatch makes the very same start")
	require.Len(t, b.tc.startsOf(wfID("b", e)), 2)
	require.Len(t, b.runs(t, e.ID), 2)
	requireRun(t, b, "a", e, wire.RunRunning)
	requireRun(t, b, "b", e, wire.RunRunning)
	require.True(t, b.dispatched(t, e.ID))
}

func TestDispatchReacceptedEventRecordsOneRun(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order")})
	e := b.send(t, "shop/order", `{}`)
	require.Equal(t, 1, b.dispatch(t))

	// The same id accepted anew (outside the deduplication window) is
	// pending again: its start is "already started" and no second run is
	// recorded for (app, function, event).
	again := e
	again.ReceivedAt = e.ReceivedAt.Add(time.Millisecond)
	again.Dispatched = false
	inserted, err := b.st.InsertEvents(t.Context(), []store.Event{again}, again.ReceivedAt)
	require.NoError(t, err)
	require.Equal(t, []bool{true}, inserted)
	require.Equal(t, int64(1), b.pending(t))

	require.Equal(t, 1, b.dispatch(t))
	require.Len(t, b.tc.startsOf(wfID("a", e)), 2)
	runs := b.runs(t, e.ID)
	require.Len(t, runs, 1)
	require.Equal(t, runID("a", e), runs[0].ID)
	require.Zero(t, b.pending(t))
}

func TestDispatchFailedStartLeavesOnlyItsEventPending(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order")})
	bad := b.send(t, "shop/order", `{"n":1}`)
	good := b.send(t, "shop/order", `{"n":2}`)
	fail := true
	b.tc.failStart = func(s temporalx.Start) error {
		if s.EventID == bad.ID && fail {
			return errTemporalDown
		}
		return nil
	}

	require.Equal(t, 2, b.dispatch(t), "a partly failed batch is no error")

	require.False(t, b.dispatched(t, bad.ID))
	require.Empty(t, b.runs(t, bad.ID))
	require.True(t, b.dispatched(t, good.ID))
	requireRun(t, b, "a", good, wire.RunRunning)
	require.Equal(t, int64(1), b.pending(t))

	// Still failing: the retry fails as a whole (nothing went through).
	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.False(t, b.dispatched(t, bad.ID))

	fail = false
	require.Equal(t, 1, b.dispatch(t), "only the failed event is claimed again")
	require.True(t, b.dispatched(t, bad.ID))
	requireRun(t, b, "a", bad, wire.RunRunning)
	require.Len(t, b.tc.startsOf(wfID("a", bad)), 3)
	require.Len(t, b.tc.startsOf(wfID("a", good)), 1, "the dispatched event is not started again")
	require.Zero(t, b.pending(t))
}

func TestDispatchFailedStartOfOneFunction(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order"), fn("b", "shop/order"), fn("c", "shop/other")})
	both := b.send(t, "shop/order", `{}`)
	other := b.send(t, "shop/other", `{}`)
	b.tc.failStart = func(s temporalx.Start) error {
		if s.Function == "b" {
			return errTemporalDown
		}
		return nil
	}

	require.Equal(t, 2, b.dispatch(t))

	// The event stays pending for b; a's run is recorded now (and found
	// already recorded on the retry).
	require.False(t, b.dispatched(t, both.ID))
	require.True(t, b.dispatched(t, other.ID))
	requireRun(t, b, "a", both, wire.RunRunning)
	_, err := b.st.GetRun(t.Context(), runID("b", both))
	require.ErrorIs(t, err, store.ErrNotFound)

	b.tc.mu.Lock()
	b.tc.failStart = nil
	b.tc.mu.Unlock()
	require.Equal(t, 1, b.dispatch(t))
	require.True(t, b.dispatched(t, both.ID))
	require.Len(t, b.runs(t, both.ID), 2)
	requireRun(t, b, "b", both, wire.RunRunning)
}

func TestDispatchAllStartsFail(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order")})
	e1 := b.send(t, "shop/order", `{}`)
	e2 := b.send(t, "shop/order", `{}`)
	b.tc.failStart = func(temporalx.Start) error { return errTemporalDown }

	n, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.Contains(t, err.Error(), "2 of 2 events could not be dispatched")
	require.Zero(t, n)
	require.Equal(t, int64(2), b.pending(t))
	require.Empty(t, b.runs(t, e1.ID))
	require.Empty(t, b.runs(t, e2.ID))
	require.Len(t, b.tc.Starts(), 2)

	b.tc.mu.Lock()
	b.tc.failStart = nil
	b.tc.mu.Unlock()
	require.Equal(t, 2, b.dispatch(t))
	requireRun(t, b, "a", e1, wire.RunRunning)
	requireRun(t, b, "a", e2, wire.RunRunning)
	require.Zero(t, b.pending(t))
}

func TestDispatchTriggerEvalErrorIsNoMatch(t *testing.T) {
	t.Parallel()
	strict := fn("strict")
	// No has(): an event without amount fails to evaluate.
	strict.Triggers = []wire.TriggerConfig{{Event: "shop/order", If: "event.data.amount > 10"}}
	reg := prometheus.NewRegistry()
	b := setup(t, []wire.FunctionConfig{strict, fn("all", "shop/order")}, func(c *Config) { c.Metrics = NewMetrics(reg) })
	e := b.send(t, "shop/order", `{"item":"hat"}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Equal(t, []temporalx.Start{expectedStart("all", e)}, b.tc.Starts())
	require.Len(t, b.runs(t, e.ID), 1)
	requireRun(t, b, "all", e, wire.RunRunning)
	require.True(t, b.dispatched(t, e.ID), "a failing expression does not keep the event pending")
	require.Equal(t, 1.0, counterValue(t, reg, "herald_trigger_eval_errors_total"))
}

func TestDispatchTriggerEvalErrorOnlyFunction(t *testing.T) {
	t.Parallel()
	strict := fn("strict")
	strict.Triggers = []wire.TriggerConfig{{Event: "shop/order", If: "event.data.amount > 10"}}
	b := setup(t, []wire.FunctionConfig{strict})
	e := b.send(t, "shop/order", `{}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Empty(t, b.tc.Starts())
	require.Empty(t, b.runs(t, e.ID))
	require.True(t, b.dispatched(t, e.ID))
}

func TestDispatchInvokedFunction(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("report", "shop/report.requested")})
	inv := b.send(t, wire.EventFunctionInvoked, `{"function_id":"shop/report","data":{"period":"q1"}}`)
	missing := b.send(t, wire.EventFunctionInvoked, `{"function_id":"shop/nope","data":{}}`)

	require.Equal(t, 2, b.dispatch(t))

	want := expectedStart("report", inv)
	req := want.Input.(wire.RunRequest)
	req.Event.Data = json.RawMessage(`{"period":"q1"}`) // the function sees the invocation's data
	want.Input = req
	require.Equal(t, []temporalx.Start{want}, b.tc.Starts())
	requireRun(t, b, "report", inv, wire.RunRunning)
	require.Empty(t, b.runs(t, missing.ID))
	require.True(t, b.dispatched(t, missing.ID), "an invocation of a missing function is dropped, not retried")
}

func TestDispatchRunOptions(t *testing.T) {
	t.Parallel()
	f := fn("sync", "shop/sync")
	f.Timeouts = &wire.TimeoutsConfig{FinishMS: 30_000}
	f.Concurrency = []wire.ConcurrencyConfig{
		{Limit: 5, Key: "event.data.user"},
		{Limit: 2, Key: "event.data.team", Scope: wire.ScopeEnv},
	}
	b := setup(t, []wire.FunctionConfig{f}, func(c *Config) { c.SystemTaskQueue = "sys-q" })
	e := b.send(t, "shop/sync", `{"user":"u1","team":"t9"}`)

	require.Equal(t, 1, b.dispatch(t))

	want := expectedStart("sync", e)
	want.ExecutionTimeout = 30*time.Second + 10*time.Minute
	req := want.Input.(wire.RunRequest)
	req.Slots = []wire.Slot{ // sorted by workflow id
		{WorkflowID: "herald/concurrency/env/t9", TaskQueue: "sys-q", Limit: 2},
		{WorkflowID: "herald/concurrency/fn/shop/sync/u1", TaskQueue: "sys-q", Limit: 5},
	}
	want.Input = req
	require.Equal(t, []temporalx.Start{want}, b.tc.Starts())
	requireRun(t, b, "sync", e, wire.RunRunning)
}

func TestDispatchBatchSize(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("a", "shop/order")}, func(c *Config) { c.BatchSize = 2 })
	var events []store.Event
	for i := range 3 {
		events = append(events, b.send(t, "shop/order", fmt.Sprintf(`{"i":%d}`, i)))
	}

	require.Equal(t, 2, b.dispatch(t))
	require.ElementsMatch(t, []string{wfID("a", events[0]), wfID("a", events[1])}, b.tc.StartIDs(), "oldest first")
	require.Equal(t, 1, b.dispatch(t))
	require.Equal(t, 0, b.dispatch(t))
	require.Len(t, b.tc.Starts(), 3)
}
