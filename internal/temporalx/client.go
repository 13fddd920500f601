package temporalx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/herald-run/herald/internal/heartbeat"
)

// ErrNotFound is wrapped by the errors of calls on a workflow or schedule
// that does not exist (any more). Test for it with errors.Is.
var ErrNotFound = errors.New("temporal: not found")

// Client is Herald's server-side Temporal client. Its methods are safe for
// concurrent use. Each call is bounded by the context it is given.
type Client struct {
	c         client.Client
	namespace string
}

// New wraps a Temporal SDK client. The caller keeps ownership of c and
// closes it.
func New(c client.Client) *Client { return &Client{c: c, namespace: client.DefaultNamespace} }

// WithNamespace returns a Client for c's namespace, which calls that name it
// (a reset) need. New assumes the default namespace.
func (t *Client) WithNamespace(namespace string) *Client {
	if namespace == "" {
		return t
	}
	return &Client{c: t.c, namespace: namespace}
}

// Start is one function run to start.
type Start struct {
	// WorkflowID is the run's deterministic workflow id; a second start with
	// the same id is "already started", which StartWorkflow counts as success.
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	Input        any
	// App, Function, EventName and EventID become Herald's search attributes.
	App, Function, EventName, EventID string
	// Summary is shown in the Temporal UI.
	Summary string
	// Delay postpones the first workflow task (a future event, a throttle).
	Delay time.Duration
	// Priority is Temporal's priority key (1 highest to 5 lowest); 0 is the default.
	Priority int
	// ExecutionTimeout bounds the whole execution; 0 means none.
	ExecutionTimeout time.Duration
}

// StartWorkflow starts a run. A workflow id that was already used (by an
// earlier dispatch of the same event) is success: the id is deterministic,
// so the run already exists.
func (t *Client) StartWorkflow(ctx context.Context, s Start) error {
	opts := client.StartWorkflowOptions{
		ID:                       s.WorkflowID,
		TaskQueue:                s.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this an existing id returns the old run silently.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    searchAttributes(s.App, s.Function, s.EventName, s.EventID),
		StaticSummary:                            s.Summary,
		StartDelay:                               s.Delay,
		WorkflowExecutionTimeout:                 s.ExecutionTimeout,
	}
	if s.Priority != 0 {
		opts.Priority = temporal.Priority{PriorityKey: s.Priority}
	}
	_, err := t.c.ExecuteWorkflow(ctx, opts, s.WorkflowType, s.Input)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", s.WorkflowID, err)
	}
	return nil
}

// SignalStart is a signal to an entity workflow (debounce, batch, concurrency
// semaphore) that is started with Input if it is not running.
type SignalStart struct {
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	Input        any
	Signal       string
	SignalArg    any
	// App and Function become search attributes; either may be empty.
	App, Function string
	Summary       string
}

// SignalWithStart delivers the signal, starting the workflow first when no
// execution of its id is open.
func (t *Client) SignalWithStart(ctx context.Context, s SignalStart) error {
	_, err := t.c.SignalWithStartWorkflow(ctx, s.WorkflowID, s.Signal, s.SignalArg, client.StartWorkflowOptions{
		ID:                    s.WorkflowID,
		TaskQueue:             s.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: searchAttributes(s.App, s.Function, "", ""),
		StaticSummary:         s.Summary,
	}, s.WorkflowType, s.Input)
	if err != nil {
		return fmt.Errorf("signal-with-start %s: %w", s.WorkflowID, err)
	}
	return nil
}

// Signal sends a signal to the open execution of workflowID. A workflow with
// no open execution gives an error wrapping ErrNotFound.
func (t *Client) Signal(ctx context.Context, workflowID, signal string, arg any) error {
	if err := t.c.SignalWorkflow(ctx, workflowID, "", signal, arg); err != nil {
		return wrap("signal "+workflowID, err)
	}
	return nil
}

// Cancel requests cancellation of the open execution of workflowID. A
// workflow with no open execution gives an error wrapping ErrNotFound.
func (t *Client) Cancel(ctx context.Context, workflowID string) error {
	if err := t.c.CancelWorkflow(ctx, workflowID, ""); err != nil {
		return wrap("cancel "+workflowID, err)
	}
	return nil
}

// IsRunning reports whether workflowID has an open execution. A workflow
// Temporal does not know is not running.
func (t *Client) IsRunning(ctx context.Context, workflowID string) (bool, error) {
	desc, err := t.c.DescribeWorkflowExecution(ctx, workflowID, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe %s: %w", workflowID, err)
	}
	return desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// Schedule is a cron schedule that starts a function's workflow.
type Schedule struct {
	ID string
	// Cron is the cron expression, with a `CRON_TZ=<zone> ` prefix for a
	// time zone other than UTC.
	Cron         string
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	Input        any
	// App, Function and EventName become the runs' search attributes.
	App, Function, EventName string
	Summary                  string
	// CatchupWindow is how late a missed run may still start.
	CatchupWindow time.Duration
	// Note is shown on the schedule in the Temporal UI.
	Note string
	// Paused creates or keeps the schedule paused: its function is paused.
	Paused bool
}

// UpsertSchedule creates the schedule, or updates it in place when it
// exists. Overlapping runs are skipped.
func (t *Client) UpsertSchedule(ctx context.Context, s Schedule) error {
	sc := t.c.ScheduleClient()
	spec := client.ScheduleSpec{CronExpressions: []string{s.Cron}}
	action := &client.ScheduleWorkflowAction{
		ID:                    s.WorkflowID,
		Workflow:              s.WorkflowType,
		TaskQueue:             s.TaskQueue,
		Args:                  []any{s.Input},
		TypedSearchAttributes: searchAttributes(s.App, s.Function, s.EventName, ""),
		StaticSummary:         s.Summary,
	}
	h := sc.GetHandle(ctx, s.ID)
	if _, err := h.Describe(ctx); err != nil {
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			return fmt.Errorf("describe schedule %s: %w", s.ID, err)
		}
		_, err := sc.Create(ctx, client.ScheduleOptions{
			ID:            s.ID,
			Spec:          spec,
			Action:        action,
			Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			CatchupWindow: s.CatchupWindow,
			Note:          s.Note,
			Paused:        s.Paused,
		})
		if err != nil && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return fmt.Errorf("create schedule %s: %w", s.ID, err)
		}
		return nil
	}
	err := h.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sch := in.Description.Schedule
			sch.Spec = &spec
			sch.Action = action
			if sch.Policy == nil {
				sch.Policy = &client.SchedulePolicies{}
			}
			sch.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
			sch.Policy.CatchupWindow = s.CatchupWindow
			if sch.State == nil {
				sch.State = &client.ScheduleState{}
			}
			sch.State.Paused = s.Paused
			return &client.ScheduleUpdate{Schedule: &sch}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update schedule %s: %w", s.ID, err)
	}
	return nil
}

// PauseSchedule pauses or unpauses a schedule; one that does not exist is
// left alone.
func (t *Client) PauseSchedule(ctx context.Context, id string, paused bool, note string) error {
	h := t.c.ScheduleClient().GetHandle(ctx, id)
	var err error
	if paused {
		err = h.Pause(ctx, client.SchedulePauseOptions{Note: note})
	} else {
		err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
	}
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("pause schedule %s: %w", id, err)
	}
	return nil
}

// DeleteSchedule deletes a schedule; one that does not exist is already gone.
func (t *Client) DeleteSchedule(ctx context.Context, id string) error {
	err := t.c.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	return nil
}

// CheckHealth asks Temporal's frontend for its health.
func (t *Client) CheckHealth(ctx context.Context) error {
	if _, err := t.c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	return nil
}

// EnsureSearchAttributes registers Herald's search attributes on namespace
// where they are missing. It is idempotent.
func (t *Client) EnsureSearchAttributes(ctx context.Context, namespace string) error {
	return EnsureSearchAttributes(ctx, t.c, namespace)
}

// SystemWorkerStopTimeout is how long Herald's system worker, when Herald
// stops, waits for the activities in flight (starting runs, looking up
// workflows: seconds at most) before it hands them back for retry.
const SystemWorkerStopTimeout = 10 * time.Second

// RunWorker runs a Temporal worker on taskQueue, with what register adds to
// it, until ctx is done. Temporal may be down when Herald starts, so it keeps
// trying to start the worker, with backoff.
//
// Like the workers of users' apps, it heartbeats for activities that run
// longer than a few seconds (package internal/heartbeat: an activity scheduled
// with a heartbeat timeout, as the workflows of package workflows do, is
// retried about 20 s after its worker died), and it stops gracefully: the
// activities in flight get SystemWorkerStopTimeout to finish, and the
// ones still running are then handed back to Temporal for retry.
func (t *Client) RunWorker(ctx context.Context, taskQueue string, register func(worker.Registry), log *slog.Logger) {
	hb := heartbeat.New(t.c)
	w := worker.New(t.c, taskQueue, worker.Options{
		Interceptors:      []interceptor.WorkerInterceptor{hb},
		WorkerStopTimeout: SystemWorkerStopTimeout,
	})
	register(w)
	backoff := time.Second
	for {
		err := w.Start()
		if err == nil {
			break
		}
		log.Warn("Herald's system worker could not start; retrying", "task_queue", taskQueue, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	log.Debug("system worker polling", "task_queue", taskQueue)
	<-ctx.Done()
	w.Stop()
	actx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if n, err := hb.Abandon(actx); n > 0 {
		log.Warn("Herald's system worker stopped with activities still running; they were handed back for retry", "activities", n, "err", err)
	}
}

// searchAttributes builds Herald's search attributes, leaving out empty ones.
func searchAttributes(app, function, eventName, eventID string) temporal.SearchAttributes {
	var upd []temporal.SearchAttributeUpdate
	for _, a := range []struct {
		key temporal.SearchAttributeKeyKeyword
		v   string
	}{{AttrApp, app}, {AttrFunction, function}, {AttrEventName, eventName}, {AttrEventID, eventID}} {
		if a.v != "" {
			upd = append(upd, a.key.ValueSet(a.v))
		}
	}
	return temporal.NewSearchAttributes(upd...)
}

// wrap adds what was asked to err, and ErrNotFound when Temporal answered
// that the workflow does not exist.
func wrap(what string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
