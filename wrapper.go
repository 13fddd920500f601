package herald

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/heartbeat"
	"github.com/herald-run/herald/internal/stepctx"
	"github.com/herald-run/herald/internal/wire"
)

// workflowFunc returns the Temporal workflow that runs f: it sets up the
// steps' context, calls the handler, runs OnFailure when it failed, and
// reports the outcome to Herald (which records it and emits the
// herald/function.* system event).
func (f *Function) workflowFunc(appID string) func(ctx workflow.Context, req wire.RunRequest) (json.RawMessage, error) {
	return func(ctx workflow.Context, req wire.RunRequest) (json.RawMessage, error) {
		info := workflow.GetInfo(ctx)
		if req.RunID == "" {
			// Started by a schedule or by another function: the execution is the run.
			req.RunID = info.WorkflowExecution.RunID
		}
		if req.Event.ID == "" {
			req.Event.ID = wire.DerivedEventID(info.WorkflowExecution.ID, "event")
		}
		if req.Event.TS == 0 {
			req.Event.TS = info.WorkflowStartTime.UnixMilli()
		}
		if len(req.Event.Data) == 0 {
			req.Event.Data = json.RawMessage(`{}`)
		}
		if req.AppID == "" {
			req.AppID = appID
		}
		run := &stepctx.Run{
			AppID:       req.AppID,
			FunctionID:  f.opts.ID,
			RunID:       req.RunID,
			WorkflowID:  info.WorkflowExecution.ID,
			TaskQueue:   info.TaskQueueName,
			Retries:     f.retries(),
			StepTimeout: f.stepTimeout(),
			Trigger:     req.Event,
			Received:    req.ReceivedMS,
			Slots:       req.Slots,
		}
		if run.Received == 0 {
			run.Received = info.WorkflowStartTime.UnixMilli()
		}
		sctx := stepctx.With(ctx, run)
		logger := log.With(workflow.GetLogger(ctx), "function", f.opts.ID, "run_id", req.RunID, "event_id", req.Event.ID)

		hctx, finishTimedOut, stopTimer := f.finishTimeout(ctx, sctx)
		out, err := f.run(hctx, req)
		stopTimer()
		var output json.RawMessage
		if err == nil {
			if output, err = json.Marshal(out); err != nil {
				err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("herald: function %s: its result does not encode to JSON: %v", f.opts.ID, err), "herald.Output", err)
			}
		}
		finish := wire.RunFinish{
			AppID:      req.AppID,
			FunctionID: f.opts.ID,
			WorkflowID: info.WorkflowExecution.ID,
			Event:      req.Event,
			// A function reacting to another's outcome does not report its own,
			// so a failing failure handler cannot trigger itself forever.
			Emit: !outcomeEvent(req.Event.Name),
		}
		if info.OriginalRunID != "" && info.OriginalRunID != info.WorkflowExecution.RunID {
			finish.Execution = info.WorkflowExecution.RunID
		}
		reportCtx := ctx
		switch {
		case err == nil:
			finish.Status, finish.Output = wire.RunCompleted, output
		case err != nil && *finishTimedOut && ctx.Err() == nil:
			finish.Status = wire.RunCancelled
			finish.Error = fmt.Sprintf("run did not finish within its timeouts.finish of %s", f.opts.Timeouts.Finish)
		case temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled):
			finish.Status, finish.Error = wire.RunCancelled, "run cancelled"
			reportCtx, _ = workflow.NewDisconnectedContext(ctx)
		default:
			finish.Status, finish.Error = wire.RunFailed, err.Error()
			if f.opts.OnFailure != nil {
				failure := Failure{FunctionID: f.opts.ID, RunID: req.RunID, Error: err.Error(),
					Event: TypedEvent[json.RawMessage]{ID: req.Event.ID, Name: req.Event.Name, Data: req.Event.Data, TS: req.Event.TS, V: req.Event.V}}
				if ferr := f.opts.OnFailure(sctx, failure); ferr != nil {
					logger.Error("OnFailure handler failed", "error", ferr)
				}
			}
		}
		if rerr := reportOutcome(reportCtx, req, finish); rerr != nil {
			logger.Error("could not report the run's outcome to Herald", "error", rerr)
		}
		return output, err
	}
}

// reportPatience is how long a run's outcome report keeps trying: longer
// than any outage Herald is meant to ride out, so in practice until Herald
// records it.
const reportPatience = 365 * 24 * time.Hour

// finishChange names the change from an activity to a local activity for
// the outcome report, for workflow.GetVersion.
const finishChange = "herald-finish-local"

// reportOutcome reports the run's outcome to Herald (which records it and
// emits the herald/function.* event). Herald may be restarting, so it keeps
// trying: the outcome must be recorded.
//
// It is a local activity: it runs inside the workflow task that finishes the
// run and leaves one marker in the history, where an activity costs six
// events (scheduled, started, completed, and a workflow task more). A run
// Herald starts says so in its input (wire.ReportLocal), so its history is
// the function's own events plus that one marker (23 events for the example
// welcome-email, 22 for the same steps written by hand). Herald's own
// Temporal calls per run: one StartWorkflow (the router), one HTTP request
// from the worker to Herald for the outcome.
//
// Runs whose input does not say (started by an earlier Herald, or invoked
// by another function) decide with a version marker: those that reached
// their report before the local activity existed replay it as the activity
// their history holds.
func reportOutcome(ctx workflow.Context, req wire.RunRequest, finish wire.RunFinish) error {
	runID := req.RunID
	retry := &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second}
	if req.Report != wire.ReportLocal && workflow.GetVersion(ctx, finishChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			ActivityID:          "herald-finish",
			Summary:             "report " + strings.ToLower(finish.Status) + " to Herald",
			StartToCloseTimeout: 30 * time.Second,
			HeartbeatTimeout:    heartbeat.For(30 * time.Second),
			RetryPolicy:         retry,
		})
		return workflow.ExecuteActivity(actx, stepctx.ActivityFinishRun, runID, finish).Get(actx, nil)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		// Given only a start-to-close timeout, Temporal also makes it the
		// local activity's timeout in all, retries included: the report
		// would give up 15 s into an outage of Herald or its database and
		// leave the run Running in Herald (TestOutcomeReportOutlastsAnOutage;
		// the full fault test of a PostgreSQL outage lost 4 of 607 reports
		// so). Retries longer than a workflow task wait on a timer, so a
		// long outage costs the run's history a timer per retry, not a
		// held task.
		ScheduleToCloseTimeout: reportPatience,
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy:            retry,
	})
	return workflow.ExecuteLocalActivity(lctx, stepctx.ActivityFinishRun, runID, finish).Get(lctx, nil)
}

// finishTimeout returns the context the handler runs in: when the function
// has a Timeouts.Finish, one that is cancelled that long after the run
// started, with timedOut set. stop ends the timer.
func (f *Function) finishTimeout(ctx, sctx workflow.Context) (hctx workflow.Context, timedOut *bool, stop func()) {
	timedOut = new(bool)
	t := f.opts.Timeouts
	if t == nil || t.Finish <= 0 {
		return sctx, timedOut, func() {}
	}
	hctx, cancelRun := workflow.WithCancel(sctx)
	tctx, cancelTimer := workflow.WithCancel(ctx)
	// From the run's first task, so a start delay (throttle, future ts) does
	// not count against it.
	workflow.Go(tctx, func(tctx workflow.Context) {
		if workflow.NewTimerWithOptions(tctx, t.Finish, workflow.TimerOptions{Summary: "timeouts.finish"}).Get(tctx, nil) == nil {
			*timedOut = true
			cancelRun()
		}
	})
	return hctx, timedOut, cancelTimer
}

// outcomeEvent reports whether name is one of the events a run's outcome
// emits. An invoked run (herald/function.invoked) reports its outcome like
// any other.
func outcomeEvent(name string) bool {
	switch name {
	case wire.EventFunctionFinished, wire.EventFunctionFailed, wire.EventFunctionCancelled:
		return true
	}
	return false
}
