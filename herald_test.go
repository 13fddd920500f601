package herald_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/activities"
	"github.com/herald-run/herald/internal/stepctx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/step"
)

type signup struct {
	Email string `json:"email"`
	Plan  string `json:"plan"`
}

type result struct {
	Sent  bool   `json:"sent"`
	Email string `json:"email"`
}

// Step functions live at package level: Temporal runs them by name.
func sendWelcome(_ context.Context, email string) (bool, error) { return email != "", nil }

var flakyCalls atomic.Int32

func flaky(_ context.Context, failures int32) (int32, error) {
	n := flakyCalls.Add(1)
	if n <= failures {
		return n, fmt.Errorf("attempt %d fails", n)
	}
	return n, nil
}

var nonRetriableCalls atomic.Int32

func alwaysNonRetriable(context.Context) error {
	nonRetriableCalls.Add(1)
	return fmt.Errorf("wrapped: %w", herald.NonRetriable(errors.New("card declined")))
}

// bundle is what a workflow test needs.
type bundle struct {
	env      *testsuite.TestWorkflowEnvironment
	finishes []wire.RunFinish
	mu       sync.Mutex
}

func setup(t *testing.T, fns []*herald.Function, steps ...any) *bundle {
	t.Helper()
	return setupReporting(t, func(int) error { return nil }, fns, steps...)
}

// setupReporting is setup with the outcome report's answer: report is given
// the attempt (1, 2, ...) and a report it accepts is recorded.
func setupReporting(t *testing.T, report func(attempt int) error, fns []*herald.Function, steps ...any) *bundle {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	b := &bundle{env: suite.NewTestWorkflowEnvironment()}
	b.env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w, err := herald.NewWorker(herald.WorkerOptions{App: "demo", Client: fakeClient{}})
	require.NoError(t, err)
	require.NoError(t, w.Register(fns...))
	require.NoError(t, w.RegisterSteps(steps...))
	w.RegisterForTest(b.env)
	attempts := 0
	b.env.OnActivity(stepctx.ActivityFinishRun, mock.Anything, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ string, f wire.RunFinish) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			attempts++
			if err := report(attempts); err != nil {
				return err
			}
			b.finishes = append(b.finishes, f)
			return nil
		})
	return b
}

// fakeClient satisfies WorkerOptions.Client for tests that never start polling.
type fakeClient struct{ client.Client }

func request(fn string, data string) wire.RunRequest {
	return wire.RunRequest{AppID: "demo", FunctionID: fn, RunID: "run-1",
		Event: wire.Event{ID: "evt-1", Name: "demo/user.signup", Data: json.RawMessage(data), TS: 1}}
}

func welcome() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "welcome-email", Triggers: []herald.Trigger{herald.OnEvent("demo/user.signup")}},
		func(ctx workflow.Context, in herald.Input[signup]) (result, error) {
			sent, err := step.Run[bool](ctx, "send-welcome", sendWelcome, in.Event.Data.Email)
			if err != nil {
				return result{}, err
			}
			if err := step.Sleep(ctx, "pause", 24*time.Hour); err != nil {
				return result{}, err
			}
			return result{Sent: sent, Email: in.Event.Data.Email}, nil
		})
}

func TestFunctionCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	b.env.ExecuteWorkflow("welcome-email", request("welcome-email", `{"email":"ada@example.com","plan":"pro"}`))
	require.True(t, b.env.IsWorkflowCompleted())
	require.NoError(t, b.env.GetWorkflowError())
	var out result
	require.NoError(t, b.env.GetWorkflowResult(&out))
	require.Equal(t, result{Sent: true, Email: "ada@example.com"}, out)

	require.Len(t, b.finishes, 1)
	require.Equal(t, wire.RunCompleted, b.finishes[0].Status)
	require.JSONEq(t, `{"sent":true,"email":"ada@example.com"}`, string(b.finishes[0].Output))
	require.True(t, b.finishes[0].Emit)
	require.Equal(t, "evt-1", b.finishes[0].Event.ID)
}

func TestRetriesThenSucceeds(t *testing.T) {
	flakyCalls.Store(0)
	fn := herald.NewFunction(herald.FunctionOpts{ID: "flaky", Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (int32, error) {
			return step.Run[int32](ctx, "charge", flaky, int32(2))
		})
	b := setup(t, []*herald.Function{fn}, flaky)
	b.env.ExecuteWorkflow("flaky", request("flaky", `{}`))
	require.NoError(t, b.env.GetWorkflowError())
	var attempts int32
	require.NoError(t, b.env.GetWorkflowResult(&attempts))
	require.Equal(t, int32(3), attempts, "two failures, then success on the third attempt")
}

func TestRetriesExhausted(t *testing.T) {
	flakyCalls.Store(0)
	fn := herald.NewFunction(herald.FunctionOpts{ID: "flaky", Retries: 1, Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (int32, error) {
			return step.Run[int32](ctx, "charge", flaky, int32(5))
		})
	b := setup(t, []*herald.Function{fn}, flaky)
	b.env.ExecuteWorkflow("flaky", request("flaky", `{}`))
	require.Error(t, b.env.GetWorkflowError())
	require.Equal(t, int32(2), flakyCalls.Load(), "Retries: 1 means two attempts")
	require.Equal(t, wire.RunFailed, b.finishes[0].Status)
}

func TestNonRetriableRunsOnFailure(t *testing.T) {
	t.Parallel()
	var failure herald.Failure
	fn := herald.NewFunction(herald.FunctionOpts{
		ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("x/y")},
		OnFailure: func(ctx workflow.Context, f herald.Failure) error {
			failure = f
			return nil
		},
	}, func(ctx workflow.Context, in herald.Input[map[string]any]) (string, error) {
		_, err := step.Run[struct{}](ctx, "charge", alwaysNonRetriable)
		return "", err
	})
	b := setup(t, []*herald.Function{fn}, alwaysNonRetriable)
	before := nonRetriableCalls.Load()
	b.env.ExecuteWorkflow("charge", request("charge", `{}`))
	err := b.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "card declined")
	require.Equal(t, int32(1), nonRetriableCalls.Load()-before, "a non-retriable error is not retried")
	require.Equal(t, "charge", failure.FunctionID)
	require.Equal(t, "evt-1", failure.Event.ID)
	require.Contains(t, failure.Error, "card declined")
	require.Equal(t, wire.RunFailed, b.finishes[0].Status)
}

var barrier sync.WaitGroup

func meetPartner(context.Context) (bool, error) {
	barrier.Done()
	done := make(chan struct{})
	go func() { barrier.Wait(); close(done) }()
	select {
	case <-done:
		return true, nil
	case <-time.After(5 * time.Second):
		return false, herald.NonRetriable(errors.New("the other step never ran at the same time"))
	}
}

func TestParallelSteps(t *testing.T) {
	barrier.Add(2)
	fn := herald.NewFunction(herald.FunctionOpts{ID: "fan-out", Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (int, error) {
			var errs [2]error
			wg := workflow.NewWaitGroup(ctx)
			for i := range 2 {
				wg.Add(1)
				workflow.Go(ctx, func(ctx workflow.Context) {
					defer wg.Done()
					_, errs[i] = step.Run[bool](ctx, fmt.Sprintf("part-%d", i), meetPartner)
				})
			}
			wg.Wait(ctx)
			return 2, errors.Join(errs[:]...)
		})
	b := setup(t, []*herald.Function{fn}, meetPartner)
	b.env.ExecuteWorkflow("fan-out", request("fan-out", `{}`))
	require.NoError(t, b.env.GetWorkflowError(), "both steps must run at once")
}

func TestDuplicateStepID(t *testing.T) {
	t.Parallel()
	fn := herald.NewFunction(herald.FunctionOpts{ID: "dup", Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (bool, error) {
			if _, err := step.Run[bool](ctx, "same", sendWelcome, "a"); err != nil {
				return false, err
			}
			return step.Run[bool](ctx, "same", sendWelcome, "b")
		})
	b := setup(t, []*herald.Function{fn}, sendWelcome)
	b.env.ExecuteWorkflow("dup", request("dup", `{}`))
	err := b.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), `step id "same" is used twice`)
}

func TestAnonymousStepRefused(t *testing.T) {
	t.Parallel()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "demo", Client: fakeClient{}})
	require.NoError(t, err)
	err = w.RegisterSteps(func(context.Context) error { return nil })
	require.ErrorContains(t, err, "anonymous")
	require.ErrorContains(t, w.RegisterSteps("not a func"), "must be a func")
	require.ErrorContains(t, w.RegisterSteps(func() int { return 1 }), "anonymous")
}

func TestSendEventIDsAreStableAcrossRetries(t *testing.T) {
	t.Parallel()
	fn := herald.NewFunction(herald.FunctionOpts{ID: "sender", Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) ([]string, error) {
			return step.SendEvent(ctx, "notify", herald.Event{Name: "demo/a"}, herald.Event{Name: "demo/b", Data: map[string]int{"n": 1}}, herald.Event{ID: "mine", Name: "demo/c"})
		})
	b := setup(t, []*herald.Function{fn})
	var calls [][]wire.Event
	b.env.OnActivity(stepctx.ActivitySendEvents, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SendEventsInput) ([]string, error) {
			calls = append(calls, in.Events)
			if len(calls) == 1 {
				return nil, errors.New("herald unavailable")
			}
			ids := make([]string, len(in.Events))
			for i, e := range in.Events {
				ids[i] = e.ID
			}
			return ids, nil
		})
	b.env.ExecuteWorkflow("sender", request("sender", `{}`))
	require.NoError(t, b.env.GetWorkflowError())
	require.Len(t, calls, 2)
	require.Equal(t, calls[0], calls[1], "a retried SendEvent sends the same ids")
	require.Equal(t, "mine", calls[0][2].ID)
	require.NotEqual(t, calls[0][0].ID, calls[0][1].ID)
	require.JSONEq(t, `{"n":1}`, string(calls[0][1].Data))
	require.JSONEq(t, `{}`, string(calls[0][0].Data))
}

func TestInvokeReturnsChildResult(t *testing.T) {
	t.Parallel()
	child := herald.NewFunction(herald.FunctionOpts{ID: "double", Triggers: []herald.Trigger{herald.OnEvent("x/never")}},
		func(ctx workflow.Context, in herald.Input[struct{ N int }]) (map[string]int, error) {
			if in.Event.Name != wire.EventFunctionInvoked {
				return nil, fmt.Errorf("unexpected event %s", in.Event.Name)
			}
			return map[string]int{"doubled": in.Event.Data.N * 2}, nil
		})
	parent := herald.NewFunction(herald.FunctionOpts{ID: "parent", Triggers: []herald.Trigger{herald.OnEvent("x/y")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (int, error) {
			out, err := step.Invoke[map[string]int](ctx, "double-it", "double", map[string]int{"N": 21})
			return out["doubled"], err
		})
	b := setup(t, []*herald.Function{parent, child})
	b.env.ExecuteWorkflow("parent", request("parent", `{}`))
	require.NoError(t, b.env.GetWorkflowError())
	var got int
	require.NoError(t, b.env.GetWorkflowResult(&got))
	require.Equal(t, 42, got)
}

func TestActivitiesHaveAHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	var mu sync.Mutex
	timeouts := map[string]time.Duration{}
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		timeouts[info.ActivityID] = info.HeartbeatTimeout
	})
	b.env.ExecuteWorkflow("welcome-email", request("welcome-email", `{"email":"ada@example.com"}`))
	require.NoError(t, b.env.GetWorkflowError())
	mu.Lock()
	defer mu.Unlock()
	// A step whose worker dies is retried about 20 s later, not at its
	// start-to-close timeout. The report of the run's outcome is a local
	// activity: a dead worker's workflow task times out and runs it again.
	require.Equal(t, map[string]time.Duration{"send-welcome": 20 * time.Second}, timeouts)
	require.Len(t, b.finishes, 1)
}

// A run that reached its outcome report before the report became a local
// activity replays it as the activity its history holds (the version marker
// is missing there), with its heartbeat timeout.
func TestOutcomeReportOfEarlierRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	b.env.OnGetVersion("herald-finish-local", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	var mu sync.Mutex
	timeouts := map[string]time.Duration{}
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		timeouts[info.ActivityID] = info.HeartbeatTimeout
	})
	b.env.ExecuteWorkflow("welcome-email", request("welcome-email", `{"email":"ada@example.com"}`))
	require.NoError(t, b.env.GetWorkflowError())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]time.Duration{"send-welcome": 20 * time.Second, "herald-finish": 20 * time.Second}, timeouts)
	require.Len(t, b.finishes, 1)
	require.Equal(t, wire.RunCompleted, b.finishes[0].Status)
}

// A run whose input says how to report (every run Herald starts) reports
// with a local activity without asking for a version: no marker, no
// search-attribute upsert in its history.
func TestOutcomeReportSaidInTheInput(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	// Were the version asked for, this would send it down the activity path.
	b.env.OnGetVersion("herald-finish-local", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	var mu sync.Mutex
	var started []string
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		started = append(started, info.ActivityID)
	})
	req := request("welcome-email", `{"email":"ada@example.com"}`)
	req.Report = wire.ReportLocal
	b.env.ExecuteWorkflow("welcome-email", req)
	require.NoError(t, b.env.GetWorkflowError())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"send-welcome"}, started, "the outcome is reported by a local activity")
	require.Len(t, b.finishes, 1)
	require.Equal(t, wire.RunCompleted, b.finishes[0].Status)
}

// Herald (or its database) may be down for minutes when a run ends: the
// report keeps trying until Herald records it, long past the 30 s that
// Temporal gives a local activity in all when it is given only a
// start-to-close timeout.
func TestOutcomeReportOutlastsAnOutage(t *testing.T) {
	t.Parallel()
	const failures = 12 // backoffs of 1, 2, 4, 8, 16 s, then 30 s: about five minutes
	b := setupReporting(t, func(attempt int) error {
		if attempt <= failures {
			return fmt.Errorf("herald API /v1/runs/run-1/finish: 503 Service Unavailable (attempt %d)", attempt)
		}
		return nil
	}, []*herald.Function{welcome()}, sendWelcome)
	req := request("welcome-email", `{"email":"ada@example.com"}`)
	req.Report = wire.ReportLocal
	b.env.ExecuteWorkflow("welcome-email", req)
	require.NoError(t, b.env.GetWorkflowError())
	require.Len(t, b.finishes, 1, "the report went through on attempt %d", failures+1)
	require.Equal(t, wire.RunCompleted, b.finishes[0].Status)
}

func TestCancelledRunReportsCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	b.env.RegisterDelayedCallback(func() { b.env.CancelWorkflow() }, time.Hour)
	b.env.ExecuteWorkflow("welcome-email", request("welcome-email", `{"email":"ada@example.com"}`))
	require.Error(t, b.env.GetWorkflowError())
	require.Len(t, b.finishes, 1)
	require.Equal(t, wire.RunCancelled, b.finishes[0].Status)
}

func TestBadEventDataFailsClearly(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	b.env.ExecuteWorkflow("welcome-email", request("welcome-email", `{"email":42}`))
	err := b.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "does not decode")
}

func TestSystemEventRunsDoNotEmit(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	req := request("welcome-email", `{"email":"a@b.c"}`)
	req.Event.Name = wire.EventFunctionFailed
	b.env.ExecuteWorkflow("welcome-email", req)
	require.NoError(t, b.env.GetWorkflowError())
	require.False(t, b.finishes[0].Emit)
}

// A run started by step.Invoke or POST /v1/invoke reports its outcome: only
// runs reacting to another run's outcome keep quiet.
func TestInvokedRunsEmit(t *testing.T) {
	t.Parallel()
	b := setup(t, []*herald.Function{welcome()}, sendWelcome)
	req := request("welcome-email", `{"email":"a@b.c"}`)
	req.Event.Name = wire.EventFunctionInvoked
	b.env.ExecuteWorkflow("welcome-email", req)
	require.NoError(t, b.env.GetWorkflowError())
	require.Len(t, b.finishes, 1)
	require.True(t, b.finishes[0].Emit)
}

func TestStepRegisteredTwiceIsRefused(t *testing.T) {
	t.Parallel()
	w, err := herald.NewWorker(herald.WorkerOptions{App: "demo", Client: fakeClient{}})
	require.NoError(t, err)
	require.NoError(t, w.RegisterSteps(sendWelcome))
	err = w.RegisterSteps(sendWelcome)
	require.ErrorContains(t, err, "registered twice")
}

func TestErrorsWorkWithIsAndAs(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	nr := fmt.Errorf("ctx: %w", herald.NonRetriable(base))
	require.ErrorIs(t, nr, herald.ErrNonRetriable)
	require.ErrorIs(t, nr, base)
	var nre *herald.NonRetriableError
	require.ErrorAs(t, nr, &nre)
	require.Nil(t, herald.NonRetriable(nil))

	ra := herald.RetryAfter(base, 3*time.Second)
	var rae *herald.RetryAfterError
	require.ErrorAs(t, ra, &rae)
	require.Equal(t, 3*time.Second, rae.Delay)
	require.ErrorIs(t, ra, base)
	require.Equal(t, time.Second, herald.RetryAfter(base, 0).(*herald.RetryAfterError).Delay)
}
