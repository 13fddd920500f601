package router

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
	"github.com/herald-run/herald/waits"
)

// waitSpec is a step.WaitForEvent of the run of testApp/"checkout" started by
// an event with id triggerID and data triggerData.
type waitSpec struct {
	workflowID  string
	stepID      string
	event       string // the awaited event name
	match, cond string
	triggerID   string
	triggerData string
}

// registerWait stores a wait the way POST /v1/waits does (ingest's
// buildWait): the key bound from the triggering event by waits.Matcher.
func (b *bundle) registerWait(t *testing.T, s waitSpec) store.Wait {
	t.Helper()
	trig := wire.Event{ID: s.triggerID, Name: "shop/checkout.started", Data: json.RawMessage(s.triggerData), TS: time.Now().UnixMilli()}
	raw, err := json.Marshal(trig)
	require.NoError(t, err)
	act, err := triggers.EventActivation(trig.Name, trig.Data, trig.ID, trig.TS, trig.V)
	require.NoError(t, err)
	m, err := waits.NewMatcher(0)
	require.NoError(t, err)
	k, ok := m.BindKey(s.match, s.cond, act)
	require.True(t, ok)
	now := time.Now().UTC()
	w, err := b.st.RegisterWait(t.Context(), store.Wait{
		ID: ulid.Make().String(), Kind: store.WaitKindWait,
		AppID: testApp, FunctionID: "checkout", RunID: ulid.Make().String(), WorkflowID: s.workflowID,
		StepID: s.stepID, EventName: s.event, MatchPath: k.Path, MatchValue: k.Value, Expr: s.cond,
		TriggerEvent: raw, Since: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), CreatedAt: now,
	})
	require.NoError(t, err)
	return w
}

// waitOf reads a wait back.
func (b *bundle) waitOf(t *testing.T, workflowID, kind, stepID string) store.Wait {
	t.Helper()
	w, err := b.st.GetWait(t.Context(), workflowID, kind, stepID)
	require.NoError(t, err)
	return w
}

func TestWaitSignalsMatchingEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.registerWait(t, waitSpec{
		workflowID: "shop/checkout/e0", stepID: "paid", event: "shop/payment.done",
		match: "data.order", triggerID: "e0", triggerData: `{"order":"o1"}`,
	})
	other := b.send(t, "shop/payment.done", `{"order":"o2","amount":5}`)
	paid := b.send(t, "shop/payment.done", `{"order":"o1","amount":7}`)
	again := b.send(t, "shop/payment.done", `{"order":"o1","amount":8}`)

	require.Equal(t, 3, b.dispatch(t))

	// One signal, with the first matching event of the batch.
	require.Equal(t, []signalCall{{WorkflowID: "shop/checkout/e0", Signal: wire.WaitSignal("paid"), Arg: wireEvent(paid)}}, b.tc.Signals())
	require.Equal(t, "herald.wait/paid", wire.WaitSignal("paid"))
	w := b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "paid")
	require.NotNil(t, w.ResolvedAt)
	require.Equal(t, paid.ID, w.ResolvedBy)
	for _, e := range []store.Event{other, paid, again} {
		require.True(t, b.dispatched(t, e.ID))
	}
	require.Empty(t, b.tc.Starts())

	// Resolved: a later matching event signals nothing.
	b.send(t, "shop/payment.done", `{"order":"o1"}`)
	require.Equal(t, 1, b.dispatch(t))
	require.Len(t, b.tc.Signals(), 1)
}

func TestWaitIgnoresOtherValue(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.registerWait(t, waitSpec{
		workflowID: "shop/checkout/e0", stepID: "paid", event: "shop/payment.done",
		match: "data.order", triggerID: "e0", triggerData: `{"order":"o1"}`,
	})
	e := b.send(t, "shop/payment.done", `{"order":"o2"}`)
	named := b.send(t, "shop/payment.other", `{"order":"o1"}`)
	missing := b.send(t, "shop/payment.done", `{}`)

	require.Equal(t, 3, b.dispatch(t))

	require.Empty(t, b.tc.Signals())
	w := b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "paid")
	require.Nil(t, w.ResolvedAt)
	require.Empty(t, w.ResolvedBy)
	for _, x := range []store.Event{e, named, missing} {
		require.True(t, b.dispatched(t, x.ID))
	}
}

func TestWaitExpressionAndEqualityKey(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// The equality conjunct is indexed (path data.user, bound to "u1"); the
	// rest is checked per candidate.
	w := b.registerWait(t, waitSpec{
		workflowID: "shop/checkout/e0", stepID: "big", event: "shop/payment.done",
		cond: "async.data.user == event.data.user && async.data.amount > event.data.min", triggerID: "e0",
		triggerData: `{"user":"u1","min":10}`,
	})
	require.Equal(t, "data.user", w.MatchPath)
	require.Equal(t, `"u1"`, w.MatchValue)
	small := b.send(t, "shop/payment.done", `{"user":"u1","amount":5}`)
	otherUser := b.send(t, "shop/payment.done", `{"user":"u2","amount":50}`)
	big := b.send(t, "shop/payment.done", `{"user":"u1","amount":50}`)

	require.Equal(t, 3, b.dispatch(t))

	require.Equal(t, []signalCall{{WorkflowID: "shop/checkout/e0", Signal: "herald.wait/big", Arg: wireEvent(big)}}, b.tc.Signals())
	require.Equal(t, big.ID, b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "big").ResolvedBy)
	require.True(t, b.dispatched(t, small.ID))
	require.True(t, b.dispatched(t, otherUser.ID))
}

func TestWaitTriggerEventDoesNotResolveItsOwnWait(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	e := b.send(t, "shop/ping", `{"k":1}`)
	b.registerWait(t, waitSpec{workflowID: "shop/checkout/x", stepID: "s", event: "shop/ping", triggerID: e.ID, triggerData: `{"k":1}`})

	require.Equal(t, 1, b.dispatch(t))
	require.Empty(t, b.tc.Signals())
	require.True(t, b.dispatched(t, e.ID))
}

func TestWaitSignalToGoneRunDispatches(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.registerWait(t, waitSpec{
		workflowID: "shop/checkout/e0", stepID: "paid", event: "shop/payment.done",
		match: "data.order", triggerID: "e0", triggerData: `{"order":"o1"}`,
	})
	b.tc.failSignal = func(id string) error {
		return fmt.Errorf("signal %s: %w", id, temporalx.ErrNotFound)
	}
	e := b.send(t, "shop/payment.done", `{"order":"o1"}`)

	require.Equal(t, 1, b.dispatch(t))

	require.Len(t, b.tc.Signals(), 1)
	require.True(t, b.dispatched(t, e.ID), "a run that is gone needs nothing")
	require.Equal(t, e.ID, b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "paid").ResolvedBy)
}

func TestWaitSignalFailureLeavesEventPending(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{fn("log", "shop/log")})
	b.registerWait(t, waitSpec{
		workflowID: "shop/checkout/e0", stepID: "paid", event: "shop/payment.done",
		match: "data.order", triggerID: "e0", triggerData: `{"order":"o1"}`,
	})
	fail := true
	b.tc.failSignal = func(string) error {
		if fail {
			return errTemporalDown
		}
		return nil
	}
	e := b.send(t, "shop/payment.done", `{"order":"o1"}`)
	logged := b.send(t, "shop/log", `{}`)

	require.Equal(t, 2, b.dispatch(t))

	require.False(t, b.dispatched(t, e.ID))
	require.Nil(t, b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "paid").ResolvedAt)
	require.True(t, b.dispatched(t, logged.ID), "the batch's other events are dispatched")
	requireRun(t, b, "log", logged, wire.RunRunning)

	// Alone and still failing: DispatchOnce reports it.
	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.False(t, b.dispatched(t, e.ID))

	fail = false
	require.Equal(t, 1, b.dispatch(t))
	require.True(t, b.dispatched(t, e.ID))
	require.Equal(t, e.ID, b.waitOf(t, "shop/checkout/e0", store.WaitKindWait, "paid").ResolvedBy)
	sigs := b.tc.Signals()
	require.Len(t, sigs, 3)
	for _, s := range sigs {
		require.Equal(t, signalCall{WorkflowID: "shop/checkout/e0", Signal: "herald.wait/paid", Arg: wireEvent(e)}, s)
	}
}

func cancelOnFn() wire.FunctionConfig {
	f := fn("fulfil", "shop/order.created")
	f.CancelOn = []wire.CancelOnConfig{{Event: "shop/order.cancelled", Match: "data.order", TimeoutMS: 3_600_000}}
	return f
}

func TestCancelOnRegistersWaitAndCancels(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{cancelOnFn()})
	created := b.send(t, "shop/order.created", `{"order":"o1"}`)

	require.Equal(t, 1, b.dispatch(t))

	requireRun(t, b, "fulfil", created, wire.RunRunning)
	w := b.waitOf(t, wfID("fulfil", created), store.WaitKindCancel, "cancel-0")
	require.Equal(t, runID("fulfil", created), w.RunID)
	require.Equal(t, testApp, w.AppID)
	require.Equal(t, "fulfil", w.FunctionID)
	require.Equal(t, "shop/order.cancelled", w.EventName)
	require.Equal(t, "data.order", w.MatchPath)
	require.Equal(t, `"o1"`, w.MatchValue)
	require.True(t, w.Since.Equal(created.ReceivedAt))
	require.True(t, w.ExpiresAt.After(time.Now().Add(59*time.Minute)))
	require.True(t, w.ExpiresAt.Before(time.Now().Add(61*time.Minute)))
	var trig wire.Event
	require.NoError(t, json.Unmarshal(w.TriggerEvent, &trig))
	require.Equal(t, created.ID, trig.ID)
	require.Nil(t, w.ResolvedAt)
	require.Empty(t, b.tc.Cancels())

	otherOrder := b.send(t, "shop/order.cancelled", `{"order":"o2"}`)
	require.Equal(t, 1, b.dispatch(t))
	require.Empty(t, b.tc.Cancels())
	require.True(t, b.dispatched(t, otherOrder.ID))

	cancelled := b.send(t, "shop/order.cancelled", `{"order":"o1"}`)
	require.Equal(t, 1, b.dispatch(t))
	require.Equal(t, []string{wfID("fulfil", created)}, b.tc.Cancels())
	require.Empty(t, b.tc.Signals(), "a cancelOn cancels, it does not signal")
	require.True(t, b.dispatched(t, cancelled.ID))
	require.Equal(t, cancelled.ID, b.waitOf(t, wfID("fulfil", created), store.WaitKindCancel, "cancel-0").ResolvedBy)
}

func TestCancelOnNotRegisteredWhenRunNotStarted(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{cancelOnFn(), fn("log", "shop/log")})
	created := b.send(t, "shop/order.created", `{"order":"o1"}`)
	b.send(t, "shop/log", `{}`)
	b.tc.failStart = func(s temporalx.Start) error {
		if s.Function == "fulfil" {
			return errTemporalDown
		}
		return nil
	}

	require.Equal(t, 2, b.dispatch(t))

	_, err := b.st.GetWait(t.Context(), wfID("fulfil", created), store.WaitKindCancel, "cancel-0")
	require.ErrorIs(t, err, store.ErrNotFound, "a run that did not start has no cancel wait")
}

func TestCancelOnWithoutValueAtMatchRegistersNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{cancelOnFn()})
	created := b.send(t, "shop/order.created", `{}`)

	require.Equal(t, 1, b.dispatch(t))

	requireRun(t, b, "fulfil", created, wire.RunRunning)
	_, err := b.st.GetWait(t.Context(), wfID("fulfil", created), store.WaitKindCancel, "cancel-0")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestCancelOnRunGoneDispatches(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{cancelOnFn()})
	created := b.send(t, "shop/order.created", `{"order":"o1"}`)
	require.Equal(t, 1, b.dispatch(t))

	fail := true
	b.tc.failCancel = func(string) error {
		if fail {
			return errTemporalDown
		}
		return nil
	}
	cancelled := b.send(t, "shop/order.cancelled", `{"order":"o1"}`)
	_, err := b.d.DispatchOnce(t.Context())
	require.ErrorIs(t, err, errTemporalDown)
	require.False(t, b.dispatched(t, cancelled.ID))

	// The run ended meanwhile: Cancel says not found, which is done.
	fail = false
	b.tc.mu.Lock()
	b.tc.cancelled[wfID("fulfil", created)] = true
	b.tc.mu.Unlock()
	require.Equal(t, 1, b.dispatch(t))
	require.True(t, b.dispatched(t, cancelled.ID))
	require.Equal(t, []string{wfID("fulfil", created), wfID("fulfil", created)}, b.tc.Cancels())
}

// A cancelling event received after the trigger but claimed in the same
// batch: the run's cancelOn wait is stored only when the claim commits, so
// the router looks for it once the claim has committed, and cancels the run.
func TestCancelOnEventInSameBatchAsTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t, []wire.FunctionConfig{cancelOnFn()})
	created := b.send(t, "shop/order.created", `{"order":"o1"}`)
	cancelled := b.send(t, "shop/order.cancelled", `{"order":"o1"}`)

	for b.pending(t) > 0 {
		b.dispatch(t)
	}

	require.True(t, b.dispatched(t, cancelled.ID))
	require.False(t, b.tc.open(wfID("fulfil", created)), "the run is cancelled (or never started)")
}
