// Package step holds the durable steps a Herald function is made of. Each
// step has an id unique within the run; the id names the Temporal activity,
// timer or child workflow in the Temporal UI. Steps may run in parallel from
// workflow.Go goroutines; their results are futures like any Temporal call.
package step

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/activities"
	"github.com/herald-run/herald/internal/heartbeat"
	"github.com/herald-run/herald/internal/stepctx"
	"github.com/herald-run/herald/internal/wire"
)

// Run runs fn(args...) as a Temporal activity whose ActivityID and summary are
// id, and returns its result decoded into T. fn must be a named function or
// method registered with Worker.RegisterSteps; it may take a context.Context
// first and returns (T, error) or error. Arguments and results travel as JSON.
//
// A failed attempt is retried with exponential backoff (one second, doubling)
// up to the function's Retries; an error made with herald.NonRetriable stops
// the retries, one made with herald.RetryAfter sets the next delay. When the
// run is cancelled, the attempt in flight is not waited for and Run returns a
// cancellation error; an attempt that has run for more than 5 s sees its
// context cancelled too, at its next heartbeat.
//
// An attempt whose worker dies (SIGKILL, OOM, node loss) fails with a
// heartbeat timeout about 20 s after its last sign of life, and one still
// running when its worker's WorkerOptions.StopTimeout runs out is handed back
// as failed at once; both are retried on another worker like any failed
// attempt, and count against Retries. With no retries (Retries < 0) such a
// step fails its run: at most once means not again after a crash. For this,
// the worker heartbeats for an attempt from 5 s after its start: a step that
// takes less costs no extra Temporal call, a longer one about one call per
// 16 s (see WorkerOptions.StopTimeout and the README's "Graceful stop and
// recovery times").
func Run[T any](ctx workflow.Context, id string, fn any, args ...any) (T, error) {
	var zero T
	run, err := stepctx.From(ctx)
	if err != nil {
		return zero, err
	}
	name, err := stepctx.StepName(fn)
	if err != nil {
		return zero, temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	if err := run.Claim(id); err != nil {
		return zero, temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          id,
		Summary:             id,
		StartToCloseTimeout: run.StepTimeout,
		// The worker heartbeats for a step once it has run 5 s, so an attempt
		// whose worker died fails ~20 s after its last sign of life and is
		// retried, whatever StepTimeout is (package internal/heartbeat).
		HeartbeatTimeout: heartbeat.For(run.StepTimeout),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Minute,
			MaximumAttempts:    int32(run.Retries + 1),
		},
	})
	release, err := acquireSlots(ctx, run, id)
	if err != nil {
		return zero, fmt.Errorf("step %q: %w", id, err)
	}
	defer release()
	var out T
	if err := workflow.ExecuteActivity(actx, name, args...).Get(actx, &out); err != nil {
		return zero, fmt.Errorf("step %q: %w", id, err)
	}
	return out, nil
}

// acquireSlots waits for a slot of each of the run's concurrency limits, in
// order, and returns the function that gives them back. Acquiring is a local
// activity (signal-with-start of the limit's semaphore workflow); the grant
// is a signal to this run, so a step waiting for a slot costs no worker. If
// the run is cancelled while it waits, the slots it asked for are returned.
func acquireSlots(ctx workflow.Context, run *stepctx.Run, stepID string) (release func(), err error) {
	if len(run.Slots) == 0 {
		return func() {}, nil
	}
	// One token per limit, so a repeated grant of one never passes for another's.
	token := func(i int) string { return run.RunID + "/" + stepID + "#" + strconv.Itoa(i) }
	var asked []wire.Slot
	release = func() {
		// Returned even when the run is being cancelled.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		for i, s := range asked {
			req := wire.SlotRequest{Token: token(i), WorkflowID: run.WorkflowID}
			// A semaphore that is gone holds nothing to return.
			_ = workflow.SignalExternalWorkflow(dctx, s.WorkflowID, "", wire.SignalRelease, req).Get(dctx, nil)
		}
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	for i, s := range run.Slots {
		asked = append(asked, s)
		in := activities.AcquireSlotInput{Slot: s, Request: wire.SlotRequest{Token: token(i), WorkflowID: run.WorkflowID, Limit: s.Limit}}
		if err := workflow.ExecuteLocalActivity(lctx, stepctx.ActivityAcquireSlot, in).Get(lctx, nil); err != nil {
			release()
			return nil, err
		}
		workflow.GetSignalChannel(ctx, wire.SlotSignal(token(i))).Receive(ctx, nil)
		if err := ctx.Err(); err != nil {
			release()
			return nil, temporal.NewCanceledError()
		}
	}
	return release, nil
}

// Sleep pauses the run for d with a durable timer named id. No worker is
// busy while it sleeps. It returns an error only when the run is cancelled.
func Sleep(ctx workflow.Context, id string, d time.Duration) error {
	run, err := stepctx.From(ctx)
	if err != nil {
		return err
	}
	if err := run.Claim(id); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	if d <= 0 {
		return nil
	}
	return workflow.NewTimerWithOptions(ctx, d, workflow.TimerOptions{Summary: id}).Get(ctx, nil)
}

// SleepUntil pauses the run until t (no pause when t has passed), with a
// durable timer named id.
func SleepUntil(ctx workflow.Context, id string, t time.Time) error {
	return Sleep(ctx, id, t.Sub(workflow.Now(ctx)))
}

// SendEvent sends events through Herald's durable ingest, as one activity
// named id, and returns their ids. An event without an ID gets one derived
// from the run and step, so a retried attempt never sends an event twice and
// the functions it triggers run once.
func SendEvent(ctx workflow.Context, id string, events ...herald.Event) ([]string, error) {
	run, err := stepctx.From(ctx)
	if err != nil {
		return nil, err
	}
	if err := run.Claim(id); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	in := activities.SendEventsInput{Events: make([]wire.Event, len(events))}
	for i, e := range events {
		data := json.RawMessage(`{}`)
		if e.Data != nil {
			raw, err := json.Marshal(e.Data)
			if err != nil || len(raw) == 0 || raw[0] != '{' {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("step %q: event %d (%s): data must encode to a JSON object", id, i, e.Name), "herald.Step", err)
			}
			data = raw
		}
		eid := e.ID
		if eid == "" {
			eid = wire.DerivedEventID(run.RunID, id, strconv.Itoa(i))
		}
		in.Events[i] = wire.Event{ID: eid, Name: e.Name, Data: data, TS: e.TS, V: e.V}
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          id,
		Summary:             id,
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    heartbeat.For(time.Minute),
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: int32(run.Retries + 1)},
	})
	var ids []string
	if err := workflow.ExecuteActivity(actx, stepctx.ActivitySendEvents, in).Get(actx, &ids); err != nil {
		return nil, fmt.Errorf("step %q: %w", id, err)
	}
	return ids, nil
}

// Invoke runs the function functionID of the same app as a child workflow
// named after id, with a herald/function.invoked event carrying data, and
// returns its result decoded into T, or its error. Cancelling the run
// cancels the child.
func Invoke[T any](ctx workflow.Context, id, functionID string, data any) (T, error) {
	var zero T
	run, err := stepctx.From(ctx)
	if err != nil {
		return zero, err
	}
	if err := run.Claim(id); err != nil {
		return zero, temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	raw := json.RawMessage(`{}`)
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil || len(b) == 0 || b[0] != '{' {
			return zero, temporal.NewNonRetryableApplicationError(fmt.Sprintf("step %q: invoke data must encode to a JSON object", id), "herald.Step", err)
		}
		raw = b
	}
	childID := run.WorkflowID + "/" + id
	req := wire.RunRequest{
		AppID:      run.AppID,
		FunctionID: functionID,
		RunID:      wire.DerivedID(run.RunID, id),
		Event: wire.Event{
			ID:   wire.DerivedEventID(run.RunID, id, "event"),
			Name: wire.EventFunctionInvoked,
			Data: raw,
			TS:   workflow.Now(ctx).UnixMilli(),
		},
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:    childID,
		TaskQueue:     run.TaskQueue,
		StaticSummary: id,
	})
	var out T
	if err := workflow.ExecuteChildWorkflow(cctx, functionID, req).Get(cctx, &out); err != nil {
		return zero, fmt.Errorf("step %q: invoke %s: %w", id, functionID, err)
	}
	return out, nil
}

// WaitOpts says which event a WaitForEvent waits for.
type WaitOpts struct {
	// Event is the exact name of the awaited event. Required.
	Event string
	// Match, such as "data.userId", requires the awaited event's value at
	// that path to equal the triggering event's: `async.data.userId ==
	// event.data.userId`. It is indexed, so it stays cheap with a million
	// runs waiting.
	Match string
	// If is any CEL condition over `event` (the run's triggering event) and
	// `async` (the candidate), e.g. `async.data.amount > event.data.amount`.
	If string
	// Timeout is how long to wait: more than zero, at most 366 days.
	Timeout time.Duration
}

// MaxWait is the longest WaitOpts.Timeout.
const MaxWait = 366 * 24 * time.Hour

// WaitForEvent pauses the run until an event named opts.Event that satisfies
// Match and If is accepted, and returns it with ok true. On timeout it
// returns ok false and no error: "not received" is a result, not a failure.
//
// Every matching event accepted since the run's triggering event was accepted
// can resolve the wait, including one in the same request as the trigger and
// one that arrives while the wait is being registered; the first one wins.
// The wait ends with the run: a run that completes, fails or is cancelled
// leaves no live wait behind.
func WaitForEvent[T any](ctx workflow.Context, id string, opts WaitOpts) (ev herald.TypedEvent[T], ok bool, err error) {
	run, err := stepctx.From(ctx)
	if err != nil {
		return ev, false, err
	}
	if err := run.Claim(id); err != nil {
		return ev, false, temporal.NewNonRetryableApplicationError(err.Error(), "herald.Step", nil)
	}
	if opts.Event == "" || opts.Timeout <= 0 || opts.Timeout > MaxWait {
		return ev, false, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("step %q: WaitForEvent needs an Event and a Timeout between 0 and %s", id, MaxWait), "herald.Step", nil)
	}
	// Take the channel before registering: a signal sent meanwhile is kept.
	ch := workflow.GetSignalChannel(ctx, wire.WaitSignal(id))
	now := workflow.Now(ctx)
	reg := wire.WaitRegister{
		AppID: run.AppID, FunctionID: run.FunctionID, RunID: run.RunID, WorkflowID: run.WorkflowID,
		StepID: id, Event: opts.Event, Match: opts.Match, If: opts.If, TriggerEvent: run.Trigger,
		SinceMS: run.Received, ExpiresAtMS: now.Add(opts.Timeout).UnixMilli(),
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          id,
		Summary:             "wait for " + opts.Event,
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    heartbeat.For(time.Minute),
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	var got wire.WaitRegistered
	if err := workflow.ExecuteActivity(actx, stepctx.ActivityRegisterWait, reg).Get(actx, &got); err != nil {
		return ev, false, fmt.Errorf("step %q: register wait: %w", id, err)
	}
	var received *wire.Event
	if got.Event != nil {
		received = got.Event
	} else {
		remaining := opts.Timeout - workflow.Now(ctx).Sub(now)
		tctx, cancelTimer := workflow.WithCancel(ctx)
		timer := workflow.NewTimerWithOptions(tctx, max(remaining, time.Millisecond), workflow.TimerOptions{Summary: id + " timeout"})
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) {
			var e wire.Event
			c.Receive(ctx, &e)
			received = &e
		})
		sel.AddFuture(timer, func(workflow.Future) {})
		sel.Select(ctx)
		cancelTimer()
		if err := ctx.Err(); err != nil {
			return ev, false, temporal.NewCanceledError()
		}
	}
	if received == nil {
		return ev, false, nil
	}
	ev = herald.TypedEvent[T]{ID: received.ID, Name: received.Name, TS: received.TS, V: received.V}
	if len(received.Data) > 0 {
		if err := json.Unmarshal(received.Data, &ev.Data); err != nil {
			return ev, true, temporal.NewNonRetryableApplicationError(fmt.Sprintf("step %q: event %s: data does not decode into %T: %v", id, received.ID, ev.Data, err), "herald.Step", err)
		}
	}
	return ev, true, nil
}
