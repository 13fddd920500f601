// Package workflows holds the Temporal workflows Herald runs on its own task
// queue (wire.DefaultSystemTaskQueue): the debounce and batch entity
// workflows, one per (function, key) and fed by signal-with-start, and the
// semaphore workflow, one per concurrency key, that admits a limited number
// of steps at once.
//
// They start runs and inspect other workflows only through activities named
// in package wire (wire.ActivityStartRun, wire.ActivityClosedWorkflows),
// which Herald's server implements. Every workflow here is an entity that
// lives as long as it has work: it drains its signal channels before it
// completes or continues as new, so no signal is lost, and it continues as
// new before its history grows large.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/heartbeat"
	"github.com/herald-run/herald/internal/wire"
)

// Register registers Debounce, Batch and Semaphore under the workflow type
// names wire.WorkflowDebounce, wire.WorkflowBatch and wire.WorkflowSemaphore.
// r is typically a worker.Worker polling wire.DefaultSystemTaskQueue (or a
// testsuite.TestWorkflowEnvironment).
func Register(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(Debounce, workflow.RegisterOptions{Name: wire.WorkflowDebounce})
	r.RegisterWorkflowWithOptions(Batch, workflow.RegisterOptions{Name: wire.WorkflowBatch})
	r.RegisterWorkflowWithOptions(Semaphore, workflow.RegisterOptions{Name: wire.WorkflowSemaphore})
}

// historyLimit is the history length past which an entity workflow continues
// as new even when the server has not suggested it yet; well below the
// server's own limits, so a busy key never gets near them.
const historyLimit = 5000

// continueAsNewDue reports whether the workflow should continue as new at
// its next safe point.
func continueAsNewDue(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > historyLimit
}

// withActivityOptions sets the options of every activity the entity
// workflows call. The retry policy never gives up: an event that reached a
// debounce or batch workflow must start a run, and a semaphore must not lose
// track of its holders, however long Herald's server is unavailable. The
// heartbeat timeout makes an activity whose Herald process died be retried
// about 20 s later rather than at the start-to-close timeout; Herald's system
// worker heartbeats for activities that run longer than 5 s.
func withActivityOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    heartbeat.For(30 * time.Second),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    0, // unlimited
		},
	})
}

// nowMS is the workflow time in milliseconds since the epoch.
func nowMS(ctx workflow.Context) int64 { return workflow.Now(ctx).UnixMilli() }

// msUntil is the duration from the workflow time to atMS.
func msUntil(ctx workflow.Context, atMS int64) time.Duration {
	return time.Duration(atMS-nowMS(ctx)) * time.Millisecond
}

// eventInbox is the wire.SignalEvent channel of a debounce or batch
// workflow, with what to do with each event as it arrives.
type eventInbox struct {
	ch workflow.ReceiveChannel
	// add records ev, which arrived at workflow time atMS.
	add func(ev wire.PendingEvent, atMS int64)
}

func newEventInbox(ctx workflow.Context, add func(wire.PendingEvent, int64)) eventInbox {
	return eventInbox{ch: workflow.GetSignalChannel(ctx, wire.SignalEvent), add: add}
}

// drain records every event signal already delivered, without blocking.
func (in eventInbox) drain(ctx workflow.Context) {
	for {
		var evs []wire.PendingEvent
		if !in.ch.ReceiveAsync(&evs) {
			return
		}
		in.addAll(ctx, evs)
	}
}

// addTo makes sel record the next event signal.
func (in eventInbox) addTo(ctx workflow.Context, sel workflow.Selector) {
	sel.AddReceive(in.ch, func(c workflow.ReceiveChannel, _ bool) {
		var evs []wire.PendingEvent
		c.Receive(ctx, &evs)
		in.addAll(ctx, evs)
	})
}

// addAll records the events of one signal, in order.
func (in eventInbox) addAll(ctx workflow.Context, evs []wire.PendingEvent) {
	at := nowMS(ctx)
	for _, ev := range evs {
		in.add(ev, at)
	}
}

// waitUntil blocks until workflow time atMS or the next event signal,
// whichever comes first, recording the event. It returns an error only when
// the workflow is cancelled.
func (in eventInbox) waitUntil(ctx workflow.Context, atMS int64) error {
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	// A new event moves the deadline: the caller sets a new timer, so this
	// one is cancelled rather than left to fire for nothing.
	defer cancelTimer()
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, msUntil(ctx, atMS)), func(workflow.Future) {})
	in.addTo(ctx, sel)
	sel.Select(ctx)
	return ctx.Err()
}

// startRun executes wire.ActivityStartRun for run, recording the events that
// arrive meanwhile (so their arrival times are exact). The activity retries
// forever, so it fails only if Herald rejects the run with a non-retryable
// error, which is logged and the run's events dropped (keeping the entity
// alive for the others), or if the workflow is cancelled, which is returned.
func (in eventInbox) startRun(ctx workflow.Context, run wire.StartRun) error {
	f := workflow.ExecuteActivity(ctx, wire.ActivityStartRun, run)
	var err error
	for done := false; !done; {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func(f workflow.Future) {
			err = f.Get(ctx, nil)
			done = true
		})
		in.addTo(ctx, sel)
		sel.Select(ctx)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	workflow.GetLogger(ctx).Error("start run rejected; its events are dropped",
		"app", run.AppID, "function", run.FunctionID, "events", len(run.Events), "error", err)
	return nil
}
