package step_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/activities"
	"github.com/herald-run/herald/internal/stepctx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/step"
)

// start is the test workflows' start time, so times in assertions are exact.
var start = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// bundle is what a step test needs: a test environment and the run settings
// its workflow's context carries, as the function wrapper sets them up.
type bundle struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	run *stepctx.Run

	mu      sync.Mutex
	started []*activity.Info // activities started, in order
	timers  []time.Duration  // timers scheduled, in order

	// body is the test workflow's code.
	body func(ctx workflow.Context) error
}

func setup(t *testing.T) *bundle {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	b := &bundle{t: t, env: suite.NewTestWorkflowEnvironment()}
	b.env.SetStartTime(start)
	b.env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	b.env.SetTestTimeout(30 * time.Second)
	// Registered before any mock, as the test environment requires; execute
	// sets the body.
	b.env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		return b.body(stepctx.With(ctx, b.run))
	}, workflow.RegisterOptions{Name: "steps"})
	b.run = &stepctx.Run{
		AppID:       "shop",
		FunctionID:  "checkout",
		RunID:       "run-1",
		WorkflowID:  "shop/checkout/evt-1",
		TaskQueue:   "herald-shop",
		Retries:     herald.DefaultRetries,
		StepTimeout: 5 * time.Minute,
		Trigger:     wire.Event{ID: "evt-1", Name: "shop/order.placed", Data: json.RawMessage(`{"userId":"u_1","total":120}`), TS: start.UnixMilli()},
		Received:    start.UnixMilli(),
	}
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.started = append(b.started, info)
	})
	b.env.SetOnTimerScheduledListener(func(_ string, d time.Duration) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.timers = append(b.timers, d)
	})
	return b
}

// registerSteps registers step functions under the names step.Run calls
// them by, as Worker.RegisterSteps does.
func (b *bundle) registerSteps(fns ...any) {
	b.t.Helper()
	for _, fn := range fns {
		name, err := stepctx.StepName(fn)
		require.NoError(b.t, err)
		b.env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// registerActivity registers fn as one of Herald's own activities, under name.
func (b *bundle) registerActivity(name string, fn any) {
	b.env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
}

// execute runs body as a workflow whose context carries b.run, and returns
// the workflow's error.
func (b *bundle) execute(body func(ctx workflow.Context) error) error {
	b.t.Helper()
	b.body = body
	b.env.ExecuteWorkflow("steps")
	require.True(b.t, b.env.IsWorkflowCompleted())
	return b.env.GetWorkflowError()
}

func (b *bundle) startedActivities() []*activity.Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*activity.Info(nil), b.started...)
}

func (b *bundle) scheduledTimers() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Duration(nil), b.timers...)
}

// stepError returns the Temporal application error a step failed with.
func stepError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	return appErr
}

// Step functions are named: Temporal runs them by name. Those with state
// are methods, so each test has its own.

type quote struct {
	SKU   string `json:"sku"`
	Cents int    `json:"cents"`
}

func lookupPrice(_ context.Context, sku string, qty int) (quote, error) {
	return quote{SKU: sku, Cents: 250 * qty}, nil
}

func noop(context.Context) error { return nil }

// attempts is a step whose attempts fail until a given one, each with the
// error the test sets.
type attempts struct {
	mu       sync.Mutex
	n        int
	failFor  int
	failWith func(attempt int) error
}

func (a *attempts) Step(ctx context.Context) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if int(activity.GetInfo(ctx).Attempt) != a.n {
		return 0, herald.NonRetriable(fmt.Errorf("Temporal says attempt %d, the step counted %d", activity.GetInfo(ctx).Attempt, a.n))
	}
	if a.n <= a.failFor {
		return 0, a.failWith(a.n)
	}
	return a.n, nil
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// --- step.Run ---

func TestRunReturnsTheStepResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerSteps(lookupPrice)
	var got quote
	require.NoError(t, b.execute(func(ctx workflow.Context) (err error) {
		got, err = step.Run[quote](ctx, "price", lookupPrice, "sku-1", 3)
		return err
	}))
	require.Equal(t, quote{SKU: "sku-1", Cents: 750}, got)

	started := b.startedActivities()
	require.Len(t, started, 1)
	require.Equal(t, "price", started[0].ActivityID, "the step id is the ActivityID")
	name, err := stepctx.StepName(lookupPrice)
	require.NoError(t, err)
	require.Equal(t, name, started[0].ActivityType.Name)
	require.Equal(t, b.run.StepTimeout, started[0].StartToCloseTimeout, "one attempt is bounded by the function's StepTimeout")
	require.Equal(t, 20*time.Second, started[0].HeartbeatTimeout, "a dead worker is noticed long before StepTimeout")
}

func TestRunHasNoHeartbeatTimeoutWhenStepTimeoutIsAsShort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run.StepTimeout = 10 * time.Second
	b.registerSteps(lookupPrice)
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		_, err := step.Run[quote](ctx, "price", lookupPrice, "sku-1", 1)
		return err
	}))
	started := b.startedActivities()
	require.Len(t, started, 1)
	require.Equal(t, 10*time.Second, started[0].StartToCloseTimeout)
	require.Zero(t, started[0].HeartbeatTimeout, "the start-to-close timeout notices a dead worker as soon; no heartbeats needed")
}

func TestRunRetriesWithExponentialBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	flaky := &attempts{failFor: 3, failWith: func(n int) error { return fmt.Errorf("attempt %d: provider timed out", n) }}
	b.registerSteps(flaky.Step)
	var got int
	var took time.Duration
	require.NoError(t, b.execute(func(ctx workflow.Context) (err error) {
		got, err = step.Run[int](ctx, "charge", flaky.Step)
		took = workflow.Now(ctx).Sub(start)
		return err
	}))
	require.Equal(t, 4, got, "three failures, then success on the fourth attempt")
	require.Equal(t, (1+2+4)*time.Second, took, "retried after 1s, 2s, 4s")
}

func TestRunStopsAfterRetries(t *testing.T) {
	t.Parallel()
	for _, retries := range []int{0, 2} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.run.Retries = retries
			flaky := &attempts{failFor: 100, failWith: func(n int) error { return fmt.Errorf("attempt %d fails", n) }}
			b.registerSteps(flaky.Step)
			var stepErr error
			err := b.execute(func(ctx workflow.Context) error {
				_, stepErr = step.Run[int](ctx, "charge", flaky.Step)
				return stepErr
			})
			require.Error(t, err)
			require.Equal(t, retries+1, flaky.count(), "the first attempt plus Retries")
			require.ErrorContains(t, stepErr, `step "charge"`)
			require.ErrorContains(t, stepErr, fmt.Sprintf("attempt %d fails", retries+1))
		})
	}
}

func TestRunNonRetriableStopsRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	declined := errors.New("card declined")
	flaky := &attempts{failFor: 100, failWith: func(int) error {
		return fmt.Errorf("charge: %w", herald.NonRetriable(declined))
	}}
	b.registerSteps(flaky.Step)
	var stepErr error
	var took time.Duration
	require.Error(t, b.execute(func(ctx workflow.Context) error {
		_, stepErr = step.Run[int](ctx, "charge", flaky.Step)
		took = workflow.Now(ctx).Sub(start)
		return stepErr
	}))
	require.Equal(t, 1, flaky.count(), "a non-retriable error is not retried")
	require.Zero(t, took)
	appErr := stepError(t, stepErr)
	require.True(t, appErr.NonRetryable())
	require.Equal(t, "herald.NonRetriable", appErr.Type())
	require.Contains(t, appErr.Message(), "charge: card declined")
}

func TestRunRetryAfterSetsTheNextDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	flaky := &attempts{failFor: 2, failWith: func(n int) error {
		return herald.RetryAfter(errors.New("rate limited"), time.Duration(n)*time.Hour)
	}}
	b.registerSteps(flaky.Step)
	var took time.Duration
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		_, err := step.Run[int](ctx, "sync", flaky.Step)
		took = workflow.Now(ctx).Sub(start)
		return err
	}))
	require.Equal(t, 3, flaky.count())
	require.Equal(t, 3*time.Hour, took, "retried after 1h, then 2h, instead of 1s and 2s")
}

func TestRunRefusesStepsWithoutAStableName(t *testing.T) {
	t.Parallel()
	for name, fn := range map[string]any{
		"anonymous":    func(context.Context) error { return nil },
		"not a func":   "lookupPrice",
		"no error out": func() int { return 1 },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var stepErr error
			require.Error(t, b.execute(func(ctx workflow.Context) error {
				_, stepErr = step.Run[int](ctx, "bad", fn)
				return stepErr
			}))
			require.True(t, stepError(t, stepErr).NonRetryable())
			require.Empty(t, b.startedActivities())
		})
	}
}

func TestRunHoldsAConcurrencySlot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run.Slots = []wire.Slot{{WorkflowID: "herald-sem/shop/checkout", TaskQueue: "herald-system", Limit: 2}}
	b.registerSteps(lookupPrice)
	var asked []activities.AcquireSlotInput
	b.registerActivity(stepctx.ActivityAcquireSlot, func(_ context.Context, in activities.AcquireSlotInput) error {
		asked = append(asked, in)
		return nil
	})
	// The semaphore grants the slot five minutes later.
	token := "run-1/price#0"
	var granted, startedBeforeGrant atomic.Bool
	b.env.RegisterDelayedCallback(func() {
		granted.Store(true)
		b.env.SignalWorkflow(wire.SlotSignal(token), nil)
	}, 5*time.Minute)
	var released []wire.SlotRequest
	b.env.OnSignalExternalWorkflow(mock.Anything, "herald-sem/shop/checkout", "", wire.SignalRelease, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			released = append(released, arg.(wire.SlotRequest))
			return nil
		}).Once()

	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityID == "price" && !granted.Load() {
			startedBeforeGrant.Store(true)
		}
	})
	var took time.Duration
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		_, err := step.Run[quote](ctx, "price", lookupPrice, "sku-1", 1)
		took = workflow.Now(ctx).Sub(start)
		return err
	}))
	require.Len(t, asked, 1)
	require.Equal(t, token, asked[0].Request.Token)
	require.Equal(t, b.run.WorkflowID, asked[0].Request.WorkflowID)
	require.Equal(t, 2, asked[0].Request.Limit)
	require.False(t, startedBeforeGrant.Load(), "the step waits for its slot")
	require.Equal(t, 5*time.Minute, took)
	require.Equal(t, []wire.SlotRequest{{Token: token, WorkflowID: b.run.WorkflowID}}, released, "the slot is returned after the step")
	b.env.AssertExpectations(t)
}

// --- step ids and context ---

func TestStepsNeedAHeraldFunction(t *testing.T) {
	t.Parallel()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(noop)
	var errs []error
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		_, err := step.Run[int](ctx, "a", noop)
		errs = append(errs, err, step.Sleep(ctx, "b", time.Hour), step.SleepUntil(ctx, "c", start))
		_, err = step.SendEvent(ctx, "d", herald.Event{Name: "x/y"})
		errs = append(errs, err)
		_, err = step.Invoke[int](ctx, "e", "fn", nil)
		errs = append(errs, err)
		_, _, err = step.WaitForEvent[any](ctx, "f", step.WaitOpts{Event: "x/y", Timeout: time.Hour})
		errs = append(errs, err)
		return nil
	}, workflow.RegisterOptions{Name: "plain"})
	env.ExecuteWorkflow("plain")
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, errs, 6)
	for i, err := range errs {
		require.ErrorContains(t, err, "steps must be called from a Herald function", "step %d", i)
	}
}

func TestStepIDsAreUniqueAndNotEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerSteps(noop)
	var errs []error
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		_, err := step.Run[struct{}](ctx, "notify", noop)
		errs = append(errs, err)
		errs = append(errs, step.Sleep(ctx, "notify", time.Second))
		_, err = step.SendEvent(ctx, "notify", herald.Event{Name: "x/y"})
		errs = append(errs, err)
		_, err = step.Run[struct{}](ctx, " ", noop)
		errs = append(errs, err)
		return nil
	}))
	require.NoError(t, errs[0])
	require.ErrorContains(t, errs[1], `step id "notify" is used twice in function "checkout"`)
	require.ErrorContains(t, errs[2], `step id "notify" is used twice`)
	require.ErrorContains(t, errs[3], "a step id must not be empty")
	require.Len(t, b.startedActivities(), 1, "refused steps start nothing")
	require.Empty(t, b.scheduledTimers())
}

// --- step.Sleep and step.SleepUntil ---

func TestSleepIsADurableTimer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var took, tookZero time.Duration
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		if err := step.Sleep(ctx, "a-day", 24*time.Hour); err != nil {
			return err
		}
		took = workflow.Now(ctx).Sub(start)
		if err := step.Sleep(ctx, "none", 0); err != nil {
			return err
		}
		if err := step.Sleep(ctx, "negative", -time.Hour); err != nil {
			return err
		}
		tookZero = workflow.Now(ctx).Sub(start) - took
		return nil
	}))
	require.Equal(t, 24*time.Hour, took, "the workflow clock advanced by the sleep")
	require.Zero(t, tookZero, "a sleep of zero or less does not pause")
	require.Equal(t, []time.Duration{24 * time.Hour}, b.scheduledTimers())
	require.Empty(t, b.startedActivities(), "a sleep keeps no worker busy")
}

func TestSleepUntil(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wake := start.Add(36 * time.Hour)
	var woke, afterPast time.Time
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		if err := step.SleepUntil(ctx, "until", wake); err != nil {
			return err
		}
		woke = workflow.Now(ctx)
		if err := step.SleepUntil(ctx, "past", start); err != nil {
			return err
		}
		afterPast = workflow.Now(ctx)
		return nil
	}))
	require.Equal(t, wake, woke.UTC())
	require.Equal(t, woke, afterPast, "a time that has passed does not pause")
	require.Equal(t, []time.Duration{36 * time.Hour}, b.scheduledTimers())
}

func TestSleepReturnsAnErrorWhenCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env.RegisterDelayedCallback(b.env.CancelWorkflow, time.Hour)
	var sleepErr error
	var took time.Duration
	require.Error(t, b.execute(func(ctx workflow.Context) error {
		sleepErr = step.Sleep(ctx, "a-day", 24*time.Hour)
		took = workflow.Now(ctx).Sub(start)
		return sleepErr
	}))
	require.True(t, temporal.IsCanceledError(sleepErr), "got %v", sleepErr)
	require.Equal(t, time.Hour, took)
}

// --- step.WaitForEvent ---

type activation struct {
	UserID string `json:"userId"`
	Via    string `json:"via"`
}

// waitResult is what one WaitForEvent returned, and when.
type waitResult struct {
	ev    herald.TypedEvent[activation]
	ok    bool
	err   error
	after time.Duration
}

// registrar stands in for Herald's wait registration.
type registrar struct {
	mu    sync.Mutex
	calls []wire.WaitRegister
	// reply, when set, is the reply to every registration.
	reply wire.WaitRegistered
	// failFirst fails the first registration (Herald restarting).
	failFirst bool
}

func (r *registrar) register(_ context.Context, in wire.WaitRegister) (wire.WaitRegistered, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, in)
	if r.failFirst && len(r.calls) == 1 {
		return wire.WaitRegistered{}, errors.New("herald API /v1/waits: 503 Service Unavailable")
	}
	out := r.reply
	out.WaitID = fmt.Sprintf("wait-%d", len(r.calls))
	return out, nil
}

func (r *registrar) registrations() []wire.WaitRegister {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wire.WaitRegister(nil), r.calls...)
}

// registerWaits registers r as Herald's wait registration.
func (b *bundle) registerWaits(r *registrar) *registrar {
	b.registerActivity(stepctx.ActivityRegisterWait, r.register)
	return r
}

func (b *bundle) deliver(stepID string, after time.Duration, ev wire.Event) {
	b.env.RegisterDelayedCallback(func() { b.env.SignalWorkflow(wire.WaitSignal(stepID), ev) }, after)
}

var activated = wire.Event{ID: "evt-2", Name: "shop/user.activated", Data: json.RawMessage(`{"userId":"u_1","via":"email"}`), TS: 1234}

var activationWait = step.WaitOpts{Event: "shop/user.activated", Match: "data.userId", If: "async.data.via != 'sms'", Timeout: 7 * 24 * time.Hour}

// executeWait runs one WaitForEvent with step id "await" and returns what
// it returned, and the workflow's error.
func (b *bundle) executeWait(opts step.WaitOpts) (waitResult, error) {
	b.t.Helper()
	var res waitResult
	err := b.execute(func(ctx workflow.Context) error {
		res.ev, res.ok, res.err = step.WaitForEvent[activation](ctx, "await", opts)
		res.after = workflow.Now(ctx).Sub(start)
		return res.err
	})
	return res, err
}

func TestWaitForEventRegistersTheWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.registerWaits(&registrar{})
	b.deliver("await", time.Minute, activated)
	res, err := b.executeWait(activationWait)
	require.NoError(t, err)
	require.True(t, res.ok)

	regs := r.registrations()
	require.Len(t, regs, 1)
	require.Equal(t, wire.WaitRegister{
		AppID: "shop", FunctionID: "checkout", RunID: "run-1", WorkflowID: "shop/checkout/evt-1",
		StepID: "await", Event: "shop/user.activated", Match: "data.userId", If: "async.data.via != 'sms'",
		TriggerEvent: b.run.Trigger,
		SinceMS:      b.run.Received,
		ExpiresAtMS:  start.Add(activationWait.Timeout).UnixMilli(),
	}, regs[0])
	started := b.startedActivities()
	require.Len(t, started, 1)
	require.Equal(t, "await", started[0].ActivityID, "the step id is the registration's ActivityID")
	require.Equal(t, 20*time.Second, started[0].HeartbeatTimeout)
}

func TestWaitForEventReturnsTheDeliveredEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerWaits(&registrar{})
	b.deliver("await", 2*time.Hour, activated)
	res, err := b.executeWait(activationWait)
	require.NoError(t, err)
	require.True(t, res.ok)
	require.NoError(t, res.err)
	require.Equal(t, herald.TypedEvent[activation]{ID: "evt-2", Name: "shop/user.activated", Data: activation{UserID: "u_1", Via: "email"}, TS: 1234}, res.ev)
	require.Equal(t, 2*time.Hour, res.after)
}

func TestWaitForEventTimesOutWithoutError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerWaits(&registrar{})
	res, err := b.executeWait(activationWait)
	require.NoError(t, err)
	require.False(t, res.ok)
	require.NoError(t, res.err, "a timeout is a result, not a failure")
	require.Zero(t, res.ev)
	require.Equal(t, activationWait.Timeout, res.after)
}

func TestWaitForEventTimeoutCountsTheRegistration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.registerWaits(&registrar{failFirst: true})
	opts := step.WaitOpts{Event: "shop/user.activated", Timeout: time.Hour}
	res, err := b.executeWait(opts)
	require.NoError(t, err)
	require.Len(t, r.registrations(), 2, "a failed registration is retried")
	require.False(t, res.ok)
	require.Equal(t, time.Hour, res.after, "the wait ends Timeout after it began, registration included")
}

func TestWaitForEventIgnoresRepeatedDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.registerWaits(&registrar{})
	second := activated
	second.ID, second.Data = "evt-3", json.RawMessage(`{"userId":"u_1","via":"web"}`)
	// Two deliveries for the first wait at once (the first one wins), then
	// the first one again while the second wait, another step, is waiting.
	b.deliver("await", time.Hour, activated)
	b.deliver("await", time.Hour, second)
	b.deliver("await", 90*time.Minute, activated)
	var first, other waitResult
	require.NoError(t, b.execute(func(ctx workflow.Context) error {
		first.ev, first.ok, first.err = step.WaitForEvent[activation](ctx, "await", activationWait)
		first.after = workflow.Now(ctx).Sub(start)
		if first.err != nil {
			return first.err
		}
		other.ev, other.ok, other.err = step.WaitForEvent[activation](ctx, "await-again", step.WaitOpts{Event: "shop/user.activated", Timeout: time.Hour})
		other.after = workflow.Now(ctx).Sub(start)
		return other.err
	}))
	require.True(t, first.ok)
	require.Equal(t, "evt-2", first.ev.ID, "the first delivery wins")
	require.Equal(t, time.Hour, first.after)
	require.False(t, other.ok, "a repeated delivery for another step resolves nothing")
	require.Equal(t, 2*time.Hour, other.after)
	require.Len(t, r.registrations(), 2)
}

func TestWaitForEventResolvedAtRegistration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := activated
	b.registerWaits(&registrar{reply: wire.WaitRegistered{Event: &ev}})
	res, err := b.executeWait(activationWait)
	require.NoError(t, err)
	require.True(t, res.ok)
	require.Equal(t, "evt-2", res.ev.ID)
	require.Equal(t, "email", res.ev.Data.Via)
	require.Zero(t, res.after, "an event already there does not wait")
	require.Empty(t, b.scheduledTimers())
}

func TestWaitForEventKeepsAnEventDeliveredDuringRegistration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The first registration fails and is retried after a second; the event
	// is delivered in between.
	r := b.registerWaits(&registrar{failFirst: true})
	b.deliver("await", 500*time.Millisecond, activated)
	res, err := b.executeWait(activationWait)
	require.NoError(t, err)
	require.Len(t, r.registrations(), 2)
	require.True(t, res.ok)
	require.Equal(t, "evt-2", res.ev.ID)
	require.Equal(t, time.Second, res.after, "resolved as soon as the registration succeeded")
}

func TestWaitForEventChecksItsOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]step.WaitOpts{
		"no event":     {Timeout: time.Hour},
		"no timeout":   {Event: "shop/user.activated"},
		"negative":     {Event: "shop/user.activated", Timeout: -time.Hour},
		"over MaxWait": {Event: "shop/user.activated", Timeout: step.MaxWait + time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			r := b.registerWaits(&registrar{})
			res, err := b.executeWait(opts)
			require.Error(t, err)
			require.True(t, stepError(t, res.err).NonRetryable())
			require.ErrorContains(t, res.err, "WaitForEvent needs an Event and a Timeout")
			require.Empty(t, r.registrations())
		})
	}
}

func TestWaitForEventDataThatDoesNotDecode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerWaits(&registrar{})
	bad := activated
	bad.Data = json.RawMessage(`{"userId":42}`)
	b.deliver("await", time.Minute, bad)
	res, err := b.executeWait(activationWait)
	require.Error(t, err)
	require.True(t, res.ok, "the event was received")
	require.Equal(t, "evt-2", res.ev.ID)
	require.True(t, stepError(t, res.err).NonRetryable())
	require.ErrorContains(t, res.err, "does not decode")
}

func TestWaitForEventCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.registerWaits(&registrar{})
	b.env.RegisterDelayedCallback(b.env.CancelWorkflow, time.Hour)
	res, err := b.executeWait(activationWait)
	require.Error(t, err)
	require.False(t, res.ok)
	require.True(t, temporal.IsCanceledError(res.err), "got %v", res.err)
	require.Equal(t, time.Hour, res.after)
}

// --- step.Invoke ---

type parcel struct {
	Grams int `json:"grams"`
}

// child stands in for the invoked function's workflow and records its input.
type child struct {
	mu   sync.Mutex
	reqs []wire.RunRequest
	info []workflow.Info
	// fail makes the child fail with this message.
	fail string
	// sleep makes the child sleep before answering, and cancelled records
	// whether that sleep was cancelled.
	sleep     time.Duration
	cancelled bool
}

func (c *child) run(ctx workflow.Context, req wire.RunRequest) (map[string]int, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.info = append(c.info, *workflow.GetInfo(ctx))
	c.mu.Unlock()
	if c.sleep > 0 {
		if err := workflow.Sleep(ctx, c.sleep); err != nil {
			c.mu.Lock()
			c.cancelled = temporal.IsCanceledError(err)
			c.mu.Unlock()
			return nil, err
		}
	}
	if c.fail != "" {
		return nil, temporal.NewNonRetryableApplicationError(c.fail, "test", nil)
	}
	var p parcel
	if err := json.Unmarshal(req.Event.Data, &p); err != nil {
		return nil, err
	}
	return map[string]int{"cents": 500 + p.Grams/2}, nil
}

func (b *bundle) invoke(c *child, runID string, data any) (map[string]int, error) {
	b.t.Helper()
	b.run.RunID = runID
	b.env.RegisterWorkflowWithOptions(c.run, workflow.RegisterOptions{Name: "quote-shipping"})
	var out map[string]int
	var invokeErr error
	_ = b.execute(func(ctx workflow.Context) error {
		out, invokeErr = step.Invoke[map[string]int](ctx, "quote", "quote-shipping", data)
		return invokeErr
	})
	return out, invokeErr
}

func TestInvokeRunsTheFunctionAsAChildWorkflow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := &child{}
	out, err := b.invoke(c, "run-1", parcel{Grams: 1200})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"cents": 1100}, out, "the child's result")

	require.Len(t, c.reqs, 1)
	req, info := c.reqs[0], c.info[0]
	require.Equal(t, "shop/checkout/evt-1/quote", info.WorkflowExecution.ID, "named after the run and the step")
	require.Equal(t, "quote-shipping", info.WorkflowType.Name)
	require.Equal(t, "herald-shop", info.TaskQueueName, "on the run's task queue")
	require.Equal(t, "shop", req.AppID)
	require.Equal(t, "quote-shipping", req.FunctionID)
	require.Equal(t, wire.EventFunctionInvoked, req.Event.Name)
	require.JSONEq(t, `{"grams":1200}`, string(req.Event.Data))
	require.Equal(t, start.UnixMilli(), req.Event.TS)
	require.NotEmpty(t, req.RunID)
	require.NotEqual(t, b.run.RunID, req.RunID, "the child is a run of its own")
	require.NotEmpty(t, req.Event.ID)
}

func TestInvokeIDsAreDerivedFromRunAndStep(t *testing.T) {
	t.Parallel()
	ids := func(runID string) (string, string) {
		b := setup(t)
		c := &child{}
		_, err := b.invoke(c, runID, nil)
		require.NoError(t, err)
		require.JSONEq(t, `{}`, string(c.reqs[0].Event.Data), "nil data is an empty object")
		return c.reqs[0].RunID, c.reqs[0].Event.ID
	}
	run1, event1 := ids("run-1")
	again1, againEvent1 := ids("run-1")
	run2, event2 := ids("run-2")
	require.Equal(t, run1, again1, "the same run and step give the same child run id")
	require.Equal(t, event1, againEvent1)
	require.NotEqual(t, run1, run2)
	require.NotEqual(t, event1, event2)
}

func TestInvokeReturnsTheChildError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.invoke(&child{fail: "no carrier for this address"}, "run-1", parcel{Grams: 1})
	require.ErrorContains(t, err, `step "quote": invoke quote-shipping`)
	require.ErrorContains(t, err, "no carrier for this address")
}

func TestInvokeRefusesDataThatIsNotAnObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := &child{}
	_, err := b.invoke(c, "run-1", []int{1, 2})
	require.True(t, stepError(t, err).NonRetryable())
	require.ErrorContains(t, err, "invoke data must encode to a JSON object")
	require.Empty(t, c.reqs, "no child started")
}

func TestInvokeCancelledRunCancelsTheChild(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := &child{sleep: 24 * time.Hour}
	b.env.RegisterDelayedCallback(b.env.CancelWorkflow, time.Hour)
	_, err := b.invoke(c, "run-1", parcel{Grams: 1})
	require.Error(t, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.True(t, c.cancelled, "the child's sleep was cancelled")
}

// --- step.SendEvent ---

// sender stands in for Herald's event ingest.
type sender struct {
	mu    sync.Mutex
	calls [][]wire.Event
	// failures is how many calls fail first.
	failures int
}

func (s *sender) send(_ context.Context, in activities.SendEventsInput) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, in.Events)
	if len(s.calls) <= s.failures {
		return nil, errors.New("herald API /v1/events: 503 Service Unavailable")
	}
	ids := make([]string, len(in.Events))
	for i, e := range in.Events {
		ids[i] = e.ID
	}
	return ids, nil
}

func (b *bundle) sendEvents(s *sender, runID, stepID string, events ...herald.Event) ([]string, error) {
	b.t.Helper()
	b.run.RunID = runID
	b.registerActivity(stepctx.ActivitySendEvents, s.send)
	var ids []string
	var sendErr error
	_ = b.execute(func(ctx workflow.Context) error {
		ids, sendErr = step.SendEvent(ctx, stepID, events...)
		return sendErr
	})
	return ids, sendErr
}

var shipped = []herald.Event{
	{Name: "shop/order.shipped", Data: map[string]string{"orderId": "o-1"}},
	{Name: "shop/email.requested"},
	{ID: "mine", Name: "shop/audit", Data: struct {
		N int `json:"n"`
	}{7}, TS: 99, V: "2"},
}

func TestSendEventSendsTheEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := &sender{}
	ids, err := b.sendEvents(s, "run-1", "announce", shipped...)
	require.NoError(t, err)
	require.Len(t, s.calls, 1, "one activity for all the events")
	sent := s.calls[0]
	require.Len(t, sent, 3)
	require.Equal(t, []string{sent[0].ID, sent[1].ID, "mine"}, ids)
	require.Equal(t, "shop/order.shipped", sent[0].Name)
	require.JSONEq(t, `{"orderId":"o-1"}`, string(sent[0].Data))
	require.JSONEq(t, `{}`, string(sent[1].Data), "nil data is an empty object")
	require.Equal(t, wire.Event{ID: "mine", Name: "shop/audit", Data: json.RawMessage(`{"n":7}`), TS: 99, V: "2"}, sent[2])
	require.NotEqual(t, sent[0].ID, sent[1].ID)

	started := b.startedActivities()
	require.Len(t, started, 1)
	require.Equal(t, "announce", started[0].ActivityID, "the step id is the ActivityID")
	require.Equal(t, 20*time.Second, started[0].HeartbeatTimeout)
}

func TestSendEventIDsAreDerivedFromRunAndStep(t *testing.T) {
	t.Parallel()
	send := func(runID, stepID string) []string {
		ids, err := setup(t).sendEvents(&sender{}, runID, stepID, shipped[:2]...)
		require.NoError(t, err)
		return ids
	}
	first := send("run-1", "announce")
	require.Equal(t, first, send("run-1", "announce"), "the run again (a replay, a retried workflow task) sends the same ids")
	require.NotEqual(t, first[0], send("run-2", "announce")[0], "another run sends other ids")
	require.NotEqual(t, first[0], send("run-1", "announce-2")[0], "another step sends other ids")
}

func TestSendEventRetrySendsTheSameIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := &sender{failures: 2}
	_, err := b.sendEvents(s, "run-1", "announce", shipped...)
	require.NoError(t, err)
	require.Len(t, s.calls, 3)
	require.Equal(t, s.calls[0], s.calls[1])
	require.Equal(t, s.calls[0], s.calls[2])
}

func TestSendEventRefusesDataThatIsNotAnObject(t *testing.T) {
	t.Parallel()
	for name, data := range map[string]any{
		"string":  "shipped",
		"slice":   []string{"o-1"},
		"invalid": map[string]any{"ch": make(chan int)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := &sender{}
			_, err := b.sendEvents(s, "run-1", "announce", herald.Event{Name: "shop/order.shipped"}, herald.Event{Name: "shop/bad", Data: data})
			require.True(t, stepError(t, err).NonRetryable())
			require.ErrorContains(t, err, `step "announce": event 1 (shop/bad): data must encode to a JSON object`)
			require.Empty(t, s.calls, "nothing is sent")
		})
	}
}
