package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
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

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/workflows"
)

// t0 is the virtual time every test starts at; all times below are offsets
// from it.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// step is something that happens to an entity workflow at a virtual time.
type step struct {
	at time.Duration
	do func(env *testsuite.TestWorkflowEnvironment)
}

// events delivers PendingEvents with the given ids at `at`, all in one
// workflow task (as when several signals arrive while the workflow is busy).
func events(at time.Duration, ids ...string) step {
	return step{at: at, do: func(env *testsuite.TestWorkflowEnvironment) {
		for i, id := range ids {
			ev := wire.PendingEvent{Event: wire.Event{ID: id, Name: "test/event"}, ReceivedMS: t0.Add(at).UnixMilli()}
			if i < len(ids)-1 {
				env.SignalWorkflowSkippingWorkflowTask(wire.SignalEvent, []wire.PendingEvent{ev})
			} else {
				env.SignalWorkflow(wire.SignalEvent, []wire.PendingEvent{ev})
			}
		}
	}}
}

// acquire and release send a SlotRequest for token, whose run's workflow id
// is "wf-"+token.
func acquire(at time.Duration, token string, limit int) step {
	return slotSignal(at, wire.SignalAcquire, token, limit)
}

func release(at time.Duration, token string) step {
	return slotSignal(at, wire.SignalRelease, token, 0)
}

func slotSignal(at time.Duration, name, token string, limit int) step {
	return step{at: at, do: func(env *testsuite.TestWorkflowEnvironment) {
		env.SignalWorkflow(name, wire.SlotRequest{Token: token, WorkflowID: "wf-" + token, Limit: limit})
	}}
}

// suggestContinueAsNew makes the server suggest continue-as-new from `at`
// on, then runs then (the workflow only looks when it wakes up).
func suggestContinueAsNew(then step) step {
	return step{at: then.at, do: func(env *testsuite.TestWorkflowEnvironment) {
		env.SetContinueAsNewSuggested(true)
		then.do(env)
	}}
}

// longHistory makes the history look long from `at` on, then runs then.
func longHistory(then step) step {
	return step{at: then.at, do: func(env *testsuite.TestWorkflowEnvironment) {
		env.SetCurrentHistoryLength(5001)
		then.do(env)
	}}
}

// execution is one workflow execution of an entity.
type execution[S any] struct {
	start, end time.Duration
	// next is the input of the run it continued as new to, if it did.
	next      *S
	continued bool
}

// runEntity plays steps against the entity workflow workflowType the way
// the server would for one workflow id: the first step of an execution is
// delivered with its start (signal-with-start), a continue-as-new starts the
// next run with its input at once, and a step after an execution has
// completed starts a new execution from fresh. setup registers the fakes on
// each new environment. Steps must be in time order and, to keep the test
// environment's ordering out of the picture, not at the instant an
// execution completes.
func runEntity[S any](t *testing.T, workflowType string, fresh S, steps []step, setup func(*testsuite.TestWorkflowEnvironment)) []execution[S] {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	var execs []execution[S]
	state, start, continued := fresh, time.Duration(0), false
	for len(steps) > 0 || continued {
		require.Less(t, len(execs), 100, "too many executions")
		if !continued {
			state, start = fresh, steps[0].at
		}
		env := suite.NewTestWorkflowEnvironment()
		workflows.Register(env)
		setup(env)
		env.SetStartTime(t0.Add(start))
		done := make([]bool, len(steps))
		for i, s := range steps {
			require.GreaterOrEqual(t, s.at, start, "step %d is in the past", i)
			env.RegisterDelayedCallback(func() {
				done[i] = true
				s.do(env)
			}, s.at-start)
		}
		env.ExecuteWorkflow(workflowType, state)
		require.True(t, env.IsWorkflowCompleted())

		exec := execution[S]{start: start, end: env.Now().Sub(t0)}
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		continued = errors.As(err, &can)
		if continued {
			require.Equal(t, workflowType, can.WorkflowType.Name)
			var next S
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
			exec.next, exec.continued = &next, true
			state, start = next, exec.end
		} else {
			require.NoError(t, err)
		}
		execs = append(execs, exec)

		var left []step
		for i, s := range steps {
			if !done[i] {
				left = append(left, s)
			}
		}
		steps = left
	}
	return execs
}

// fixture fakes what the entity workflows talk to and records, through a
// workflow interceptor, what they ask for and at which workflow time: runs
// started (wire.ActivityStartRun), slot grants (signals to other
// workflows) and liveness checks (wire.ActivityClosedWorkflows). Recording
// in the workflow rather than in the fakes keeps the times exact: the test
// environment moves its clock on while a fake runs in its goroutine.
type fixture struct {
	// during, if set, runs inside each fake start, so a test can deliver a
	// signal while a run is being started.
	during func(env *testsuite.TestWorkflowEnvironment, in wire.StartRun)
	ended  map[string]bool // workflow ids a grant cannot reach
	closed map[string]bool // workflow ids ClosedWorkflows reports closed

	mu     sync.Mutex
	runs   []startedRun
	grants []grant
	checks []check
}

// startedRun is one wire.ActivityStartRun the workflow scheduled.
type startedRun struct {
	at   time.Duration
	ids  []string
	in   wire.StartRun
	opts workflow.ActivityOptions
}

// grant is one slot grant the semaphore sent (delivered or not).
type grant struct {
	at    time.Duration
	token string
}

// check is one wire.ActivityClosedWorkflows the semaphore scheduled.
type check struct {
	at  time.Duration
	ids []string
}

func (f *fixture) setup(env *testsuite.TestWorkflowEnvironment) {
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&recorder{f: f}}})
	env.RegisterActivityWithOptions(func(_ context.Context, in wire.StartRun) error {
		if f.during != nil {
			f.during(env, in)
		}
		return nil
	}, activity.RegisterOptions{Name: wire.ActivityStartRun})
	env.RegisterActivityWithOptions(func(_ context.Context, ids []string) ([]bool, error) {
		closed := make([]bool, len(ids))
		for i, id := range ids {
			closed[i] = f.closed[id]
		}
		return closed, nil
	}, activity.RegisterOptions{Name: wire.ActivityClosedWorkflows})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_, workflowID, _, _ string, _ any) error {
			if f.ended[workflowID] {
				return errors.New("workflow not found")
			}
			return nil
		})
}

func (f *fixture) startedRuns() []startedRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.runs)
}

func (f *fixture) granted() []grant {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.grants)
}

func (f *fixture) checked() []check {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.checks)
}

type recorder struct {
	interceptor.WorkerInterceptorBase
	f *fixture
}

func (r *recorder) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recordingInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, f: r.f}
}

type recordingInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	f *fixture
}

func (i *recordingInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&recordingOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, f: i.f})
}

type recordingOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	f *fixture
}

func (o *recordingOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	at := workflow.Now(ctx).Sub(t0)
	o.f.mu.Lock()
	switch activityType {
	case wire.ActivityStartRun:
		run := startedRun{at: at, in: args[0].(wire.StartRun), opts: workflow.GetActivityOptions(ctx)}
		for _, ev := range run.in.Events {
			run.ids = append(run.ids, ev.Event.ID)
		}
		o.f.runs = append(o.f.runs, run)
	case wire.ActivityClosedWorkflows:
		o.f.checks = append(o.f.checks, check{at: at, ids: args[0].([]string)})
	}
	o.f.mu.Unlock()
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

func (o *recordingOutbound) SignalExternalWorkflow(ctx workflow.Context, workflowID, runID, signalName string, arg any) workflow.Future {
	token, ok := strings.CutPrefix(signalName, wire.SlotSignal(""))
	if !ok || runID != "" || arg != nil || workflowID != "wf-"+token {
		panic(fmt.Sprintf("unexpected signal %q to %s/%s with %v", signalName, workflowID, runID, arg))
	}
	o.f.mu.Lock()
	o.f.grants = append(o.f.grants, grant{at: workflow.Now(ctx).Sub(t0), token: token})
	o.f.mu.Unlock()
	return o.Next.SignalExternalWorkflow(ctx, workflowID, runID, signalName, arg)
}

// allIDs is the ids of every run, in the order they were started.
func allIDs(runs []startedRun) []string {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ids...)
	}
	return ids
}

func eventIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return ids
}

// --- Debounce ---

func debounceState(periodMS, timeoutMS int64) wire.DebounceState {
	return wire.DebounceState{AppID: "app", FunctionID: "fn", PeriodMS: periodMS, TimeoutMS: timeoutMS}
}

func TestDebounceStartsOnceAfterLastEvent(t *testing.T) {
	t.Parallel()
	var f fixture
	var steps []step
	for i, id := range eventIDs("e", 5) {
		steps = append(steps, events(ms(500*i), id))
	}

	execs := runEntity(t, wire.WorkflowDebounce, debounceState(2000, 0), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 1)
	require.Equal(t, []string{"e04"}, got[0].ids)
	require.Equal(t, ms(2000+2000), got[0].at, "a period after the last event")
	require.Equal(t, "app", got[0].in.AppID)
	require.Equal(t, "fn", got[0].in.FunctionID)
	require.Len(t, execs, 1)
	require.Equal(t, ms(4000), execs[0].end, "ends once nothing is pending")

	opts := got[0].opts
	require.Equal(t, 30*time.Second, opts.StartToCloseTimeout)
	require.Equal(t, 20*time.Second, opts.HeartbeatTimeout, "a dead Herald is noticed before the start-to-close timeout")
	require.Zero(t, opts.ScheduleToCloseTimeout, "never gives up")
	require.Equal(t, &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    30 * time.Second,
	}, opts.RetryPolicy)
}

func TestDebounceBurstsSeparatedByMoreThanPeriod(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		events(ms(0), "a0"), events(ms(300), "a1"), events(ms(600), "a2"),
		events(ms(5000), "b0"), events(ms(5300), "b1"),
	}

	execs := runEntity(t, wire.WorkflowDebounce, debounceState(1000, 0), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, []string{"a2"}, got[0].ids)
	require.Equal(t, ms(1600), got[0].at)
	require.Equal(t, []string{"b1"}, got[1].ids)
	require.Equal(t, ms(6300), got[1].at)
	require.Len(t, execs, 2, "the second burst signal-with-starts a new execution")
}

func TestDebounceTimeoutCapsDelay(t *testing.T) {
	t.Parallel()
	var f fixture
	ids := eventIDs("e", 12)
	var steps []step
	for i, id := range ids {
		// An event about every second for 10s. Every 900ms rather than
		// 1000ms: with a 3s cap, 1s steps put an event on the very instant
		// each cap expires, and the order of simultaneous timers in the
		// test environment would decide which cycle it joins.
		steps = append(steps, events(ms(900*i), id))
	}

	runEntity(t, wire.WorkflowDebounce, debounceState(2000, 3000), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 3)
	// Each cycle is cut 3s after its first event, with its latest event.
	require.Equal(t, []string{"e03"}, got[0].ids)
	require.Equal(t, ms(0+3000), got[0].at, "capped at 3s after the first event")
	require.Equal(t, []string{"e07"}, got[1].ids)
	require.Equal(t, ms(3600+3000), got[1].at)
	require.Equal(t, []string{"e11"}, got[2].ids, "the last event is not lost")
	require.Equal(t, ms(7200+3000), got[2].at)
}

func TestDebounceEventDuringStartOpensNextCycle(t *testing.T) {
	t.Parallel()
	f := fixture{during: func(env *testsuite.TestWorkflowEnvironment, in wire.StartRun) {
		if in.Events[0].Event.ID == "e0" {
			events(0, "e1").do(env)
		}
	}}
	steps := []step{events(ms(0), "e0")}

	execs := runEntity(t, wire.WorkflowDebounce, debounceState(1000, 0), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, []string{"e0"}, got[0].ids)
	require.Equal(t, ms(1000), got[0].at)
	require.Equal(t, []string{"e1"}, got[1].ids)
	require.Equal(t, ms(2000), got[1].at, "a period after it arrived, during the first start")
	require.Len(t, execs, 1)
}

func TestDebounceContinuesAsNewWithOpenCycle(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		events(ms(0), "e0"),
		events(ms(1000), "e1"),
		suggestContinueAsNew(events(ms(1500), "e2")),
		events(ms(3200), "e3"),
	}

	execs := runEntity(t, wire.WorkflowDebounce, debounceState(2000, 5000), steps, f.setup)

	require.Len(t, execs, 2)
	require.True(t, execs[0].continued)
	require.Equal(t, ms(1500), execs[0].end)
	next := execs[0].next
	require.NotNil(t, next.Last)
	require.Equal(t, "e2", next.Last.Event.ID)
	require.Equal(t, t0.UnixMilli(), next.FirstAtMS)
	require.Equal(t, t0.Add(ms(1500)).UnixMilli(), next.LastAtMS)
	require.Equal(t, int64(2000), next.PeriodMS)

	got := f.startedRuns()
	require.Len(t, got, 1)
	require.Equal(t, []string{"e3"}, got[0].ids)
	require.Equal(t, ms(5000), got[0].at, "the carried first event still caps the cycle")
	require.Equal(t, ms(5000), execs[1].end)
}

func TestDebounceContinuesAsNewOnLongHistory(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		events(ms(0), "e0"),
		longHistory(events(ms(500), "e1")),
	}

	execs := runEntity(t, wire.WorkflowDebounce, debounceState(1000, 0), steps, f.setup)

	require.Len(t, execs, 2)
	require.True(t, execs[0].continued)
	got := f.startedRuns()
	require.Len(t, got, 1)
	require.Equal(t, []string{"e1"}, got[0].ids)
	require.Equal(t, ms(1500), got[0].at)
}

// --- Batch ---

func batchState(maxSize int, timeoutMS int64) wire.BatchState {
	return wire.BatchState{AppID: "app", FunctionID: "fn", MaxSize: maxSize, TimeoutMS: timeoutMS}
}

func TestBatchFlushesBySizeThenTimeout(t *testing.T) {
	t.Parallel()
	var f fixture
	ids := eventIDs("e", 25)
	var steps []step
	for i, id := range ids {
		steps = append(steps, events(time.Duration(i)*time.Second, id))
	}

	execs := runEntity(t, wire.WorkflowBatch, batchState(10, 10000), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 3)
	require.Equal(t, ids[0:10], got[0].ids)
	require.Equal(t, 9*time.Second, got[0].at, "flushed when the 10th arrives")
	require.Equal(t, ids[10:20], got[1].ids)
	require.Equal(t, 19*time.Second, got[1].at)
	require.Equal(t, ids[20:25], got[2].ids)
	require.Equal(t, (20+10)*time.Second, got[2].at, "first of the batch + timeout")
	require.Equal(t, ids, allIDs(got))
	require.Equal(t, "app", got[0].in.AppID)
	require.Equal(t, "fn", got[0].in.FunctionID)
	// Each time nothing is left pending the execution ends; the next event
	// signal-with-starts a new one.
	require.Len(t, execs, 3)
	require.Equal(t, []time.Duration{9 * time.Second, 19 * time.Second, 30 * time.Second},
		[]time.Duration{execs[0].end, execs[1].end, execs[2].end})
}

func TestBatchFlushesOverflowInChunks(t *testing.T) {
	t.Parallel()
	var f fixture
	ids := eventIDs("e", 15)
	steps := []step{
		events(ms(0), ids[0]),
		events(ms(1000), ids[1:]...), // 14 in one workflow task
	}

	runEntity(t, wire.WorkflowBatch, batchState(10, 5000), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, ids[0:10], got[0].ids)
	require.Equal(t, ms(1000), got[0].at)
	require.Equal(t, ids[10:15], got[1].ids)
	require.Equal(t, ms(1000+5000), got[1].at, "the rest is timed from its own first arrival")
}

func TestBatchIgnoresRedelivery(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		events(ms(0), "a"),
		events(ms(100), "b"),
		events(ms(200), "a"),      // still pending
		events(ms(300), "c", "d"), // c makes three: flush; d opens a new batch
		events(ms(400), "b"),      // already flushed
		events(ms(600), "a"),      // already flushed
		events(ms(700), "e"),
		events(ms(800), "e"), // pending
	}

	execs := runEntity(t, wire.WorkflowBatch, batchState(3, 1000), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, []string{"a", "b", "c"}, got[0].ids)
	require.Equal(t, ms(300), got[0].at)
	require.Equal(t, []string{"d", "e"}, got[1].ids)
	require.Equal(t, ms(300+1000), got[1].at, "timed from d, the first after the flush")
	require.Len(t, execs, 1)
}

func TestBatchContinuesAsNewWithoutLosingOrDuplicating(t *testing.T) {
	t.Parallel()
	var f fixture
	ids := eventIDs("e", 14)
	var steps []step
	for i := range 9 {
		steps = append(steps, events(ms(100*i), ids[i]))
	}
	steps = append(steps,
		events(ms(900), ids[9], ids[10]), // flush e00-e09, e10 stays
		events(ms(1000), ids[11]),
		suggestContinueAsNew(events(ms(1500), ids[12])),
		events(ms(2000), ids[5]),  // redelivery of a flushed event
		events(ms(2500), ids[11]), // redelivery of a pending event
		events(ms(3000), ids[13]),
	)

	execs := runEntity(t, wire.WorkflowBatch, batchState(10, 5000), steps, f.setup)

	require.Len(t, execs, 2)
	require.True(t, execs[0].continued)
	require.Equal(t, ms(1500), execs[0].end)
	next := execs[0].next
	var pending []string
	for _, ev := range next.Pending {
		pending = append(pending, ev.Event.ID)
	}
	require.Equal(t, ids[10:13], pending, "the drained event travels with the batch")
	require.Equal(t, ids[0:10], next.Seen)
	require.Equal(t, t0.Add(ms(900)).UnixMilli(), next.FirstAtMS)
	require.Equal(t, 10, next.MaxSize)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, ids[0:10], got[0].ids)
	require.Equal(t, ids[10:14], got[1].ids)
	require.Equal(t, ms(900+5000), got[1].at, "timed from the carried first arrival")
	require.Equal(t, ids, allIDs(got), "every event exactly once, in order")
}

func TestBatchContinuesAsNewOnLongHistory(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		events(ms(0), "a"),
		longHistory(events(ms(100), "b")),
		events(ms(200), "a"),
	}

	execs := runEntity(t, wire.WorkflowBatch, batchState(10, 1000), steps, f.setup)

	require.Len(t, execs, 2)
	require.True(t, execs[0].continued)
	got := f.startedRuns()
	require.Len(t, got, 1)
	require.Equal(t, []string{"a", "b"}, got[0].ids)
	require.Equal(t, ms(1000), got[0].at)
}

func TestBatchEventDuringFlushOpensNextBatch(t *testing.T) {
	t.Parallel()
	f := fixture{during: func(env *testsuite.TestWorkflowEnvironment, in wire.StartRun) {
		if in.Events[0].Event.ID == "a" {
			events(0, "c", "a").do(env) // a is a redelivery
		}
	}}
	steps := []step{events(ms(0), "a"), events(ms(100), "b")}

	execs := runEntity(t, wire.WorkflowBatch, batchState(2, 1000), steps, f.setup)

	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, []string{"a", "b"}, got[0].ids)
	require.Equal(t, ms(100), got[0].at)
	require.Equal(t, []string{"c"}, got[1].ids)
	require.Equal(t, ms(100+1000), got[1].at)
	require.Len(t, execs, 1)
}

func TestBatchSeenIsCapped(t *testing.T) {
	t.Parallel()
	var f fixture
	st := batchState(2, 1000)
	for i := range wire.MaxSeen {
		st.Seen = append(st.Seen, fmt.Sprintf("old%04d", i))
	}
	steps := []step{suggestContinueAsNew(events(ms(0), "n1", "n2", "n3", "old0000"))}

	execs := runEntity(t, wire.WorkflowBatch, st, steps, f.setup)

	require.Len(t, execs, 2)
	next := execs[0].next
	require.Len(t, next.Seen, wire.MaxSeen)
	require.Equal(t, "old0002", next.Seen[0], "the two oldest ids are forgotten")
	require.Equal(t, []string{"n1", "n2"}, next.Seen[wire.MaxSeen-2:])
	got := f.startedRuns()
	require.Len(t, got, 2)
	require.Equal(t, []string{"n1", "n2"}, got[0].ids)
	require.Equal(t, []string{"n3"}, got[1].ids, "old0000 was still remembered when it arrived")
}

// --- Semaphore ---

func TestSemaphoreGrantsUpToLimitInOrder(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		acquire(ms(0), "A", 2),
		acquire(ms(1000), "B", 2),
		acquire(ms(2000), "C", 2),
		acquire(ms(3000), "D", 2),
		release(ms(10000), "A"),
		release(ms(20000), "B"),
		release(ms(30000), "C"),
		release(ms(40000), "D"),
	}

	execs := runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 2}, steps, f.setup)

	require.Equal(t, []grant{
		{ms(0), "A"},
		{ms(1000), "B"},
		{ms(10000), "C"}, // only once A released
		{ms(20000), "D"},
	}, f.granted())
	require.Empty(t, f.checked(), "no liveness check within the first minute")
	require.Len(t, execs, 1)
	require.Equal(t, ms(40000), execs[0].end, "completes when everything is released")
}

func TestSemaphoreReacquireAndQueuedRelease(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "A", 1), // retried by its holder: granted again
		acquire(ms(2000), "B", 1),
		acquire(ms(3000), "B", 1), // already queued: ignored
		release(ms(4000), "B"),    // leaves the queue
		release(ms(5000), "A"),
	}

	execs := runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	require.Equal(t, []grant{{ms(0), "A"}, {ms(1000), "A"}}, f.granted())
	require.Len(t, execs, 1)
	require.Equal(t, ms(5000), execs[0].end)
}

func TestSemaphoreFreesSlotOfClosedHolder(t *testing.T) {
	t.Parallel()
	f := fixture{closed: map[string]bool{"wf-A": true}}
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "B", 1),
		release(ms(90000), "B"),
	}

	execs := runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	require.Equal(t, []check{{ms(61000), []string{"wf-A"}}}, f.checked(), "a minute after B started waiting")
	require.Equal(t, []grant{{ms(0), "A"}, {ms(61000), "B"}}, f.granted())
	require.Len(t, execs, 1)
	require.Equal(t, ms(90000), execs[0].end)
}

func TestSemaphoreKeepsOpenHolderAfterCheck(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "B", 1),
		release(ms(150000), "A"),
		release(ms(160000), "B"),
	}

	runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	require.Equal(t, []check{
		{ms(61000), []string{"wf-A"}},
		{ms(121000), []string{"wf-A"}},
	}, f.checked(), "checked every minute while B waits")
	require.Equal(t, []grant{{ms(0), "A"}, {ms(150000), "B"}}, f.granted())
}

func TestSemaphoreSkipsRequesterThatEnded(t *testing.T) {
	t.Parallel()
	f := fixture{ended: map[string]bool{"wf-B": true}}
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "B", 1),
		acquire(ms(2000), "C", 1),
		release(ms(5000), "A"),
		release(ms(6000), "C"),
	}

	execs := runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	// B's grant cannot be delivered: its slot goes to C at once.
	require.Equal(t, []grant{{ms(0), "A"}, {ms(5000), "B"}, {ms(5000), "C"}}, f.granted())
	require.Len(t, execs, 1)
	require.Equal(t, ms(6000), execs[0].end)
}

func TestSemaphoreLimitFollowsLatestAcquire(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "B", 1),
		acquire(ms(2000), "C", 3), // raises the limit: B, then C
		release(ms(3000), "A"),
		release(ms(4000), "B"),
		release(ms(5000), "C"),
	}

	runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	require.Equal(t, []grant{{ms(0), "A"}, {ms(2000), "B"}, {ms(2000), "C"}}, f.granted())
}

func TestSemaphoreContinuesAsNew(t *testing.T) {
	t.Parallel()
	var f fixture
	steps := []step{
		acquire(ms(0), "A", 1),
		acquire(ms(1000), "B", 1),
		suggestContinueAsNew(acquire(ms(2000), "C", 1)),
		release(ms(5000), "A"),
		release(ms(6000), "B"),
		release(ms(7000), "C"),
	}

	execs := runEntity(t, wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1}, steps, f.setup)

	require.Len(t, execs, 2)
	require.True(t, execs[0].continued)
	require.Equal(t, wire.SemaphoreState{
		Limit:   1,
		Holders: []wire.SlotRequest{{Token: "A", WorkflowID: "wf-A", Limit: 1}},
		Queue: []wire.SlotRequest{
			{Token: "B", WorkflowID: "wf-B", Limit: 1},
			{Token: "C", WorkflowID: "wf-C", Limit: 1},
		},
	}, *execs[0].next)
	require.Equal(t, []grant{{ms(0), "A"}, {ms(5000), "B"}, {ms(6000), "C"}}, f.granted())
	require.Equal(t, ms(7000), execs[1].end)
}

// --- All ---

// A worker registers the workflows as the tests' environments do.
var _ = func(w worker.Worker) { workflows.Register(w) }

func TestEntitiesStopWhenCancelled(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		workflowType string
		state        any
		signal       step
	}{
		"debounce": {wire.WorkflowDebounce, debounceState(60000, 0), events(0, "e0")},
		"batch":    {wire.WorkflowBatch, batchState(10, 60000), events(0, "e0")},
		"semaphore": {wire.WorkflowSemaphore, wire.SemaphoreState{Limit: 1},
			acquire(0, "A", 1)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
			env := suite.NewTestWorkflowEnvironment()
			workflows.Register(env)
			var f fixture
			f.setup(env)
			env.RegisterDelayedCallback(func() { c.signal.do(env) }, 0)
			env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second)

			env.ExecuteWorkflow(c.workflowType, c.state)

			require.True(t, env.IsWorkflowCompleted())
			var canceled *temporal.CanceledError
			require.ErrorAs(t, env.GetWorkflowError(), &canceled)
			require.Empty(t, f.startedRuns())
		})
	}
}

// recordingEnv is a test environment at t0 whose StartRun activity records
// the runs it is asked to start.
func recordingEnv() (*testsuite.TestWorkflowEnvironment, *[]wire.StartRun) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	workflows.Register(env)
	env.SetStartTime(t0)
	started := &[]wire.StartRun{}
	env.RegisterActivityWithOptions(func(_ context.Context, run wire.StartRun) error {
		*started = append(*started, run)
		return nil
	}, activity.RegisterOptions{Name: wire.ActivityStartRun})
	return env, started
}

// One signal may carry many events (the router sends one per entity per
// dispatched batch): each is recorded in order.
func TestBatchTakesManyEventsPerSignal(t *testing.T) {
	env, started := recordingEnv()
	var list []wire.PendingEvent
	for i := range 25 {
		list = append(list, wire.PendingEvent{Event: wire.Event{ID: fmt.Sprintf("e%02d", i), Name: "test/event"}, ReceivedMS: t0.UnixMilli()})
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(wire.SignalEvent, list) }, 0)
	env.ExecuteWorkflow(workflows.Batch, wire.BatchState{AppID: "a", FunctionID: "f", MaxSize: 10, TimeoutMS: 5000})
	require.NoError(t, env.GetWorkflowError())
	var sizes []int
	var ids []string
	for _, r := range *started {
		sizes = append(sizes, len(r.Events))
		for _, e := range r.Events {
			ids = append(ids, e.Event.ID)
		}
	}
	require.Equal(t, []int{10, 10, 5}, sizes)
	require.Len(t, ids, 25)
	require.Equal(t, "e00", ids[0])
	require.Equal(t, "e24", ids[24])
}

// Two close events delivered out of order: the run takes the one Herald
// accepted last, not the one that arrived last.
func TestDebounceKeepsLatestAccepted(t *testing.T) {
	env, started := recordingEnv()
	newer := wire.PendingEvent{Event: wire.Event{ID: "newer", Name: "test/event"}, ReceivedMS: t0.UnixMilli() + 200}
	older := wire.PendingEvent{Event: wire.Event{ID: "older", Name: "test/event"}, ReceivedMS: t0.UnixMilli() + 100}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(wire.SignalEvent, []wire.PendingEvent{newer}) }, 0)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(wire.SignalEvent, []wire.PendingEvent{older}) }, 300*time.Millisecond)
	env.ExecuteWorkflow(workflows.Debounce, wire.DebounceState{AppID: "a", FunctionID: "f", PeriodMS: 1000})
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, *started, 1)
	require.Equal(t, "newer", (*started)[0].Events[0].Event.ID)
}
