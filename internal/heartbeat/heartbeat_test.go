package heartbeat

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// The test environment runs activities in real time and enforces their
// heartbeat timeouts (the SDK's own throttling of heartbeats included), so
// these tests use short timeouts: a heartbeat timeout of 400 ms, and an
// interceptor that heartbeats after 100 ms, every 100 ms.
const (
	testHeartbeatTimeout = 400 * time.Millisecond
	testAfter            = 100 * time.Millisecond
	testEvery            = 100 * time.Millisecond
)

// beat is one heartbeat the server received.
type beat struct {
	at      time.Time
	details string
}

type bundle struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	mu    sync.Mutex
	beats []beat
}

// setup returns a test environment whose worker has hb (none when nil) and
// a workflow "run" that executes activity "act" with opts.
func setup(t *testing.T, hb *Interceptor, opts workflow.ActivityOptions, act any, wopts worker.Options) *bundle {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	b := &bundle{t: t, env: suite.NewTestWorkflowEnvironment()}
	if hb != nil {
		wopts.Interceptors = []interceptor.WorkerInterceptor{hb}
	}
	b.env.SetWorkerOptions(wopts)
	b.env.SetTestTimeout(30 * time.Second)
	b.env.RegisterActivityWithOptions(act, activity.RegisterOptions{Name: "act"})
	b.env.RegisterWorkflowWithOptions(func(ctx workflow.Context) (string, error) {
		ctx = workflow.WithActivityOptions(ctx, opts)
		var out string
		err := workflow.ExecuteActivity(ctx, "act").Get(ctx, &out)
		return out, err
	}, workflow.RegisterOptions{Name: "run"})
	b.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var d string
		if details.HasValues() {
			_ = details.Get(&d)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.beats = append(b.beats, beat{at: time.Now(), details: d})
	})
	return b
}

func (b *bundle) run() (string, error) {
	b.env.ExecuteWorkflow("run")
	require.True(b.t, b.env.IsWorkflowCompleted())
	var out string
	if err := b.env.GetWorkflowError(); err != nil {
		return "", err
	}
	require.NoError(b.t, b.env.GetWorkflowResult(&out))
	return out, nil
}

func (b *bundle) heartbeats() []beat {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]beat(nil), b.beats...)
}

// long is the activity options of a step whose heartbeat timeout is shorter
// than its start-to-close timeout: no retry, so a heartbeat timeout fails
// the workflow.
var long = workflow.ActivityOptions{
	StartToCloseTimeout: 10 * time.Second,
	HeartbeatTimeout:    testHeartbeatTimeout,
	RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
}

// sleeper is an activity that sleeps d, recording when it started.
type sleeper struct {
	d       time.Duration
	started time.Time
}

func (s *sleeper) Run(ctx context.Context) (string, error) {
	s.started = time.Now()
	select {
	case <-time.After(s.d):
		return "done", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func TestWithoutHeartbeatsALongActivityTimesOut(t *testing.T) {
	t.Parallel()
	// The control for the tests below: the environment does enforce the
	// heartbeat timeout. (It does not retry a timed-out attempt, as the
	// server does under the retry policy: the fault tests show that.)
	s := &sleeper{d: 1500 * time.Millisecond}
	b := setup(t, nil, long, s.Run, worker.Options{})
	_, err := b.run()
	var te *temporal.TimeoutError
	require.ErrorAs(t, err, &te)
	require.Equal(t, enumspb.TIMEOUT_TYPE_HEARTBEAT, te.TimeoutType())
}

func TestALongActivityIsKeptAlive(t *testing.T) {
	t.Parallel()
	s := &sleeper{d: 1500 * time.Millisecond}
	b := setup(t, newInterceptor(nil, testAfter, testEvery), long, s.Run, worker.Options{})
	out, err := b.run()
	require.NoError(t, err)
	require.Equal(t, "done", out)
	beats := b.heartbeats()
	// 1.5 s, at most one heartbeat per throttle window (0.8 × 400 ms).
	require.GreaterOrEqual(t, len(beats), 3, "heartbeats: %v", beats)
	require.GreaterOrEqual(t, beats[0].at.Sub(s.started), testAfter, "the first heartbeat comes after the threshold")
}

func TestAQuickActivityCostsNoHeartbeat(t *testing.T) {
	t.Parallel()
	s := &sleeper{d: testAfter / 2}
	b := setup(t, newInterceptor(nil, testAfter, testEvery), long, s.Run, worker.Options{})
	_, err := b.run()
	require.NoError(t, err)
	require.Empty(t, b.heartbeats())
}

func TestNoHeartbeatWithoutAUsefulHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]workflow.ActivityOptions{
		"no heartbeat timeout": {StartToCloseTimeout: 10 * time.Second},
		// Temporal caps the heartbeat timeout to the start-to-close timeout,
		// which then notices a dead worker as soon.
		"heartbeat timeout as long as start-to-close": {StartToCloseTimeout: 2 * time.Second, HeartbeatTimeout: 2 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := &sleeper{d: 5 * testAfter}
			b := setup(t, newInterceptor(nil, testAfter, testEvery), opts, s.Run, worker.Options{})
			_, err := b.run()
			require.NoError(t, err)
			require.Empty(t, b.heartbeats())
		})
	}
}

// progress is an activity that records its own progress once, then works.
func progress(ctx context.Context) (string, error) {
	activity.RecordHeartbeat(ctx, "page-7")
	select {
	case <-time.After(time.Second):
		return "done", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func TestKeepAliveRepeatsTheActivitysOwnDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, newInterceptor(nil, testAfter, testEvery), long, progress, worker.Options{})
	_, err := b.run()
	require.NoError(t, err)
	beats := b.heartbeats()
	require.GreaterOrEqual(t, len(beats), 2, "the activity's heartbeat and the interceptor's")
	for _, bt := range beats {
		require.Equal(t, "page-7", bt.details, "a keep-alive heartbeat must not erase the activity's progress")
	}
}

func TestLocalActivitiesAreLeftAlone(t *testing.T) {
	t.Parallel()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	hb := newInterceptor(nil, testAfter, testEvery)
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{hb}})
	s := &sleeper{d: 3 * testAfter}
	env.RegisterActivityWithOptions(s.Run, activity.RegisterOptions{Name: "act"})
	env.ExecuteWorkflow(func(ctx workflow.Context) (string, error) {
		ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
		var out string
		err := workflow.ExecuteLocalActivity(ctx, "act").Get(ctx, &out)
		return out, err
	})
	require.NoError(t, env.GetWorkflowError())
	require.Zero(t, hb.Running())
}

// fakeCompleter records the attempts handed back.
type fakeCompleter struct {
	mu     sync.Mutex
	tokens [][]byte
	errs   []error
	reply  error
}

func (f *fakeCompleter) CompleteActivity(_ context.Context, token []byte, result any, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if result != nil {
		panic("a handed-back attempt has no result")
	}
	f.tokens = append(f.tokens, token)
	f.errs = append(f.errs, err)
	return f.reply
}

// blocker is an activity that runs until released or cancelled.
type blocker struct {
	started chan []byte // its task token, once running
	release chan struct{}
}

func (b *blocker) Run(ctx context.Context) (string, error) {
	b.started <- activity.GetInfo(ctx).TaskToken
	select {
	case <-b.release:
		return "done", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func TestAbandonHandsBackWhatIsStillRunning(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{}
	hb := newInterceptor(fc, testAfter, testEvery)
	bl := &blocker{started: make(chan []byte, 1), release: make(chan struct{})}
	b := setup(t, hb, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second}, bl.Run, worker.Options{})
	type result struct {
		running, n int
		err        error
	}
	abandoned := make(chan result, 1)
	go func() {
		<-bl.started
		r := result{running: hb.Running()}
		r.n, r.err = hb.Abandon(context.Background())
		abandoned <- r
		close(bl.release)
	}()
	out, err := b.run()
	require.NoError(t, err, "the test environment's activity goes on: Abandon reports, it does not stop anything")
	require.Equal(t, "done", out)
	r := <-abandoned
	require.Equal(t, result{running: 1, n: 1}, r)
	require.Len(t, fc.errs, 1)
	require.NotEmpty(t, fc.tokens[0])
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, fc.errs[0], &appErr)
	require.Equal(t, "herald.WorkerStopped", appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Zero(t, hb.Running())

	// A finished attempt is not handed back.
	n, err := hb.Abandon(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestAnAttemptCancelledByTheWorkersShutdownIsHandedBack(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{reply: serviceerror.NewNotFound("already reported")}
	hb := newInterceptor(fc, testAfter, testEvery)
	bl := &blocker{started: make(chan []byte, 1), release: make(chan struct{})}
	// The SDK cancels the context every activity runs under with this cause
	// when its worker's stop timeout has passed.
	root, cancel := context.WithCancelCause(context.Background())
	b := setup(t, hb, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}},
		bl.Run, worker.Options{BackgroundActivityContext: root})
	var token []byte
	go func() {
		token = <-bl.started
		cancel(worker.ErrWorkerShutdown)
	}()
	_, err := b.run()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, "herald.WorkerStopped", appErr.Type(), "the attempt fails as stopped, retryable")
	require.ErrorContains(t, err, context.Canceled.Error(), "the activity's own error is the cause")

	// It returned, but the process may exit before the SDK reports it: the
	// stopping worker reports it too. The server refusing a second report
	// is no error.
	require.Equal(t, 1, hb.Running())
	n, err := hb.Abandon(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, [][]byte{token}, fc.tokens)
}

func TestAbandonReportsWhatFailed(t *testing.T) {
	t.Parallel()
	fc := &fakeCompleter{reply: errors.New("connection refused")}
	hb := newInterceptor(fc, testAfter, testEvery)
	hb.running[&attempt{token: []byte("t1")}] = struct{}{}
	n, err := hb.Abandon(context.Background())
	require.Equal(t, 1, n)
	require.ErrorContains(t, err, "connection refused")
}

func TestFor(t *testing.T) {
	t.Parallel()
	require.Equal(t, Timeout, For(5*time.Minute))
	require.Equal(t, Timeout, For(0), "no start-to-close timeout")
	require.Zero(t, For(Timeout), "the start-to-close timeout notices a dead worker as soon")
	require.Zero(t, For(10*time.Second))
}
