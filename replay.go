package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// CheckReplayOptions configures CheckReplay.
type CheckReplayOptions struct {
	// Client reaches the Temporal namespace the runs live in. Required.
	Client client.Client
	// App is the app the functions belong to; runs are found by Herald's
	// HeraldApp search attribute. Required.
	App string
	// Functions are the functions as this binary defines them: the code a
	// deploy would run. Required.
	Functions []*Function
	// Last is how many of each function's most recent runs, open and
	// closed, are replayed. Default 20.
	Last int
	// Logger receives the replayer's logs (a failing replay logs the
	// workflow's panic before it is reported). Default: discard.
	Logger log.Logger
}

// ReplayFailure is one run whose history the current code does not replay.
type ReplayFailure struct {
	FunctionID string
	WorkflowID string
	RunID      string
	// Err is the replayer's error, typically Temporal's non-determinism
	// error naming the command the code issued and the event the history
	// holds.
	Err error
}

// ReplayReport is what CheckReplay found.
type ReplayReport struct {
	// Checked counts the histories replayed, by function id.
	Checked map[string]int
	// Failures lists the runs that do not replay, newest first per function.
	Failures []ReplayFailure
}

// Err returns nil when every history replayed, and otherwise an error that
// lists each failing run.
func (r ReplayReport) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "herald: %d run(s) do not replay against this code:", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "\n  - %s %s (run %s): %v", f.FunctionID, f.WorkflowID, f.RunID, f.Err)
	}
	return errors.New(b.String())
}

// CheckReplay replays the most recent histories of each function, open and
// closed, against the code in this binary with Temporal's workflow
// replayer, and reports the runs it cannot replay. A change that reorders,
// renames, adds or removes steps breaks the runs in flight when it is
// deployed; run CheckReplay before the deploy (from a test, or a worker's
// check flag) to find out. Use workflow.GetVersion in the function to change
// it safely.
//
// It reads histories from Temporal and runs no activity. An error is
// returned only when Temporal cannot be read; runs that do not replay are in
// the report.
func CheckReplay(ctx context.Context, o CheckReplayOptions) (ReplayReport, error) {
	switch {
	case o.Client == nil:
		return ReplayReport{}, errors.New("herald: CheckReplayOptions.Client is required")
	case o.App == "":
		return ReplayReport{}, errors.New("herald: CheckReplayOptions.App is required")
	case len(o.Functions) == 0:
		return ReplayReport{}, errors.New("herald: CheckReplayOptions.Functions is required")
	}
	if o.Last <= 0 {
		o.Last = 20
	}
	if o.Logger == nil {
		o.Logger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{})
	if err != nil {
		return ReplayReport{}, fmt.Errorf("herald: workflow replayer: %w", err)
	}
	for _, f := range o.Functions {
		if f == nil {
			return ReplayReport{}, errors.New("herald: nil function in CheckReplayOptions.Functions")
		}
		replayer.RegisterWorkflowWithOptions(f.workflowFunc(o.App), workflow.RegisterOptions{Name: f.opts.ID})
	}
	report := ReplayReport{Checked: map[string]int{}}
	for _, f := range o.Functions {
		resp, err := o.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			PageSize: int32(o.Last),
			Query:    fmt.Sprintf("WorkflowType = '%s' AND HeraldApp = '%s'", quote(f.opts.ID), quote(o.App)),
		})
		if err != nil {
			return report, fmt.Errorf("herald: list runs of %s: %w", f.opts.ID, err)
		}
		for _, ex := range resp.GetExecutions() {
			wf, run := ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId()
			history, err := readHistory(ctx, o.Client, wf, run)
			if err != nil {
				return report, fmt.Errorf("herald: history of %s: %w", wf, err)
			}
			report.Checked[f.opts.ID]++
			err = replayer.ReplayWorkflowHistoryWithOptions(o.Logger, history, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: wf, RunID: run},
			})
			if err != nil {
				report.Failures = append(report.Failures, ReplayFailure{FunctionID: f.opts.ID, WorkflowID: wf, RunID: run, Err: err})
			}
		}
	}
	return report, nil
}

// readHistory reads a run's whole history.
func readHistory(ctx context.Context, c client.Client, workflowID, runID string) (*historypb.History, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, e)
	}
	return h, nil
}

// quote escapes a value for a single-quoted visibility query string.
func quote(s string) string { return strings.ReplaceAll(s, "'", `\'`) }
