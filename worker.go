package herald

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/activities"
	"github.com/herald-run/herald/internal/heartbeat"
	"github.com/herald-run/herald/internal/stepctx"
	"github.com/herald-run/herald/internal/wire"
)

// WorkerOptions configures a Worker. App and Client are required; the zero
// value of every other field means its documented default.
type WorkerOptions struct {
	// App is the app id the functions belong to: lowercase letters, digits
	// and dashes.
	App string
	// TaskQueue is the Temporal task queue the functions run on. Default
	// "herald-<App>".
	TaskQueue string
	// HeraldURL is Herald's base URL. Default http://127.0.0.1:8288.
	HeraldURL string
	// SigningKey authenticates the worker to Herald's API; not needed against
	// `herald dev`.
	SigningKey string
	// Client is the Temporal client the worker polls with. Required.
	Client client.Client
	// Temporal holds Temporal worker options (concurrency limits and such);
	// Herald adds its interceptor to them, and its WorkerStopTimeout is
	// StopTimeout.
	Temporal worker.Options
	// StopTimeout is a stopping worker's grace period. When Run's context
	// is done (on SIGTERM, say) or Stop is called, the worker stops polling
	// at once and gives the steps in flight up to StopTimeout to finish and
	// report their results; the rest of each run continues on the other
	// workers. Steps still running after StopTimeout have their context
	// cancelled and are handed back to Temporal as failed attempts
	// (retryable; they count against the function's Retries), which another
	// worker retries after the step's backoff (a second or so), not after
	// StepTimeout. Keep it below the time your platform waits between
	// SIGTERM and SIGKILL (30 s on Kubernetes). Default DefaultStopTimeout
	// (25 s); it replaces Temporal.WorkerStopTimeout.
	//
	// A worker killed outright (SIGKILL, OOM, node loss) has no grace: its
	// steps are retried once their heartbeat timeout passes, about 20 s
	// after their last sign of life.
	StopTimeout time.Duration
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
}

// DefaultStopTimeout is WorkerOptions.StopTimeout's default: below the 30 s
// Kubernetes waits between SIGTERM and SIGKILL, with time left to hand back
// what did not finish.
const DefaultStopTimeout = 25 * time.Second

// abandonTimeout bounds how long a stopped worker spends handing back the
// steps that did not finish within StopTimeout.
const abandonTimeout = 3 * time.Second

// Worker syncs an app's functions to Herald and runs them on a Temporal task
// queue.
type Worker struct {
	opts      WorkerOptions
	functions []*Function
	steps     []any
	tw        worker.Worker
	// hb heartbeats for long steps and tracks those in flight (see package
	// internal/heartbeat).
	hb *heartbeat.Interceptor
}

// NewWorker validates opts and returns a Worker.
func NewWorker(opts WorkerOptions) (*Worker, error) {
	if opts.App == "" {
		return nil, errors.New("herald: WorkerOptions.App is required")
	}
	if opts.Client == nil {
		return nil, errors.New("herald: WorkerOptions.Client is required (a Temporal client.Client)")
	}
	if opts.TaskQueue == "" {
		opts.TaskQueue = "herald-" + opts.App
	}
	if opts.HeraldURL == "" {
		opts.HeraldURL = "http://127.0.0.1:8288"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	return &Worker{opts: opts}, nil
}

// TaskQueue returns the task queue the worker polls.
func (w *Worker) TaskQueue() string { return w.opts.TaskQueue }

// Register adds functions to the worker. It fails on a nil function or a
// duplicate id; the rest of the configuration is checked by Herald at sync.
func (w *Worker) Register(fns ...*Function) error {
	for _, f := range fns {
		if err := f.validate(); err != nil {
			return err
		}
		for _, g := range w.functions {
			if g.opts.ID == f.opts.ID {
				return fmt.Errorf("herald: function %q is registered twice", f.opts.ID)
			}
		}
		w.functions = append(w.functions, f)
	}
	return nil
}

// RegisterSteps adds the step functions the app's functions pass to
// step.Run. Each must be a named function or method returning (T, error) or
// error; its first parameter may be a context.Context.
//
// Steps are registered under their function's name (package path and name),
// so one registered twice, or two method values of one method, are refused:
// Temporal would refuse them when the worker starts.
func (w *Worker) RegisterSteps(fns ...any) error {
	for _, fn := range fns {
		name, err := stepctx.StepName(fn)
		if err != nil {
			return err
		}
		for _, have := range w.steps {
			if other, _ := stepctx.StepName(have); other == name {
				return fmt.Errorf("herald: step %s is registered twice", name)
			}
		}
		w.steps = append(w.steps, fn)
	}
	return nil
}

// Sync sends the app's function configuration to Herald, which validates it
// (every problem is listed in the error), stores it and reconciles cron
// schedules.
func (w *Worker) Sync(ctx context.Context) error {
	req := wire.SyncRequest{TaskQueue: w.opts.TaskQueue, Functions: []wire.FunctionConfig{}}
	for _, f := range w.functions {
		req.Functions = append(req.Functions, f.config())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	u := strings.TrimRight(w.opts.HeraldURL, "/") + "/v1/apps/" + url.PathEscape(w.opts.App) + "/sync"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if w.opts.SigningKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+w.opts.SigningKey)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(hreq)
	if err != nil {
		return fmt.Errorf("herald: sync app %q with %s: %w", w.opts.App, w.opts.HeraldURL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			if len(e.Problems) > 0 {
				return fmt.Errorf("herald: sync app %q: %s:\n  - %s", w.opts.App, e.Error, strings.Join(e.Problems, "\n  - "))
			}
			return fmt.Errorf("herald: sync app %q: %s", w.opts.App, e.Error)
		}
		return fmt.Errorf("herald: sync app %q: %s: %s", w.opts.App, resp.Status, raw)
	}
	var out wire.SyncResponse
	_ = json.Unmarshal(raw, &out)
	w.opts.Logger.Info("app synced", "app", w.opts.App, "functions", out.Functions, "schedules", out.Schedules)
	return nil
}

// Start syncs the app, registers its workflows and activities with Temporal
// and starts polling. It returns once the worker is polling; call Stop to
// stop it.
func (w *Worker) Start(ctx context.Context) error {
	if w.tw != nil {
		return errors.New("herald: worker already started")
	}
	if err := w.Sync(ctx); err != nil {
		return err
	}
	w.hb = heartbeat.New(w.opts.Client)
	tw := worker.New(w.opts.Client, w.opts.TaskQueue, w.temporalOptions())
	w.registerOn(tw)
	if err := tw.Start(); err != nil {
		return fmt.Errorf("herald: start worker on task queue %q: %w", w.opts.TaskQueue, err)
	}
	w.tw = tw
	w.opts.Logger.Info("worker polling", "app", w.opts.App, "task_queue", w.opts.TaskQueue, "functions", len(w.functions))
	return nil
}

// temporalOptions returns the Temporal worker options: the user's, with
// Herald's interceptor first and StopTimeout as the stop timeout.
func (w *Worker) temporalOptions() worker.Options {
	topts := w.opts.Temporal
	topts.WorkerStopTimeout = w.opts.StopTimeout
	topts.Interceptors = append([]interceptor.WorkerInterceptor{&errorInterceptor{hb: w.hb}}, topts.Interceptors...)
	return topts
}

// registrar is what both a Temporal worker and a test environment offer.
type registrar interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

func (w *Worker) registerOn(r registrar) {
	for _, f := range w.functions {
		r.RegisterWorkflowWithOptions(f.workflowFunc(w.opts.App), workflow.RegisterOptions{Name: f.opts.ID})
	}
	for _, fn := range w.steps {
		name, _ := stepctx.StepName(fn) // validated by RegisterSteps
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	api := &activities.Client{BaseURL: w.opts.HeraldURL, SigningKey: w.opts.SigningKey}
	r.RegisterActivityWithOptions(api.SendEvents, activity.RegisterOptions{Name: stepctx.ActivitySendEvents})
	r.RegisterActivityWithOptions(api.FinishRun, activity.RegisterOptions{Name: stepctx.ActivityFinishRun})
	r.RegisterActivityWithOptions(api.RegisterWait, activity.RegisterOptions{Name: stepctx.ActivityRegisterWait})
	slots := &activities.Slots{Temporal: w.opts.Client}
	r.RegisterActivityWithOptions(slots.Acquire, activity.RegisterOptions{Name: stepctx.ActivityAcquireSlot})
}

// RegisterForTest registers the worker's functions and steps, and Herald's
// own activities, on a Temporal test environment (testsuite) or any other
// registrar, so functions can be unit tested without Herald or a server.
// Add ErrorInterceptor to the environment's worker options so NonRetriable
// and RetryAfter behave as on a real worker, and steps that run longer than
// their 20 s heartbeat timeout are kept alive (the test environment enforces
// heartbeat timeouts in real time).
func (w *Worker) RegisterForTest(r interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}) {
	w.registerOn(r)
}

// ErrorInterceptor returns the worker interceptor that maps NonRetriable and
// RetryAfter to Temporal's errors and heartbeats for steps that run longer
// than a few seconds. Workers made by NewWorker install it; add it yourself
// to a testsuite environment's worker options.
func ErrorInterceptor() interceptor.WorkerInterceptor {
	return &errorInterceptor{hb: heartbeat.New(nil)}
}

// Stop stops the worker gracefully: it stops polling at once, waits for the
// tasks in flight to finish, at most StopTimeout, then cancels the steps
// still running and hands them back to Temporal, which retries them on
// another worker. It returns when all that is done.
func (w *Worker) Stop() {
	if w.tw == nil {
		return
	}
	start := time.Now()
	w.tw.Stop()
	w.tw = nil
	ctx, cancel := context.WithTimeout(context.Background(), abandonTimeout)
	defer cancel()
	n, err := w.hb.Abandon(ctx)
	if n > 0 {
		w.opts.Logger.Warn("worker stopped with steps still running after its stop timeout; they were cancelled and handed back for retry",
			"app", w.opts.App, "steps", n, "stop_timeout", w.opts.StopTimeout, "err", err)
	}
	w.opts.Logger.Info("worker stopped", "app", w.opts.App, "task_queue", w.opts.TaskQueue, "took", time.Since(start).Round(time.Millisecond))
}

// Run starts the worker and blocks until ctx is done, then stops it
// gracefully (see Stop and WorkerOptions.StopTimeout): it returns once the
// steps in flight have finished or been handed back.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}

// errorInterceptor turns Herald's step errors into Temporal's: NonRetriable
// into a non-retryable application error, RetryAfter into an application
// error with the next retry delay. Wrapped errors are found with errors.As.
//
// It also installs hb, which heartbeats for steps that run longer than a few
// seconds, so Temporal retries a step whose worker died within about 20 s
// (see package internal/heartbeat), and tracks the steps in flight for Stop.
type errorInterceptor struct {
	interceptor.WorkerInterceptorBase
	hb *heartbeat.Interceptor
}

func (e *errorInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityErrors{}
	i.Next = next
	if e.hb == nil {
		return i
	}
	return e.hb.InterceptActivity(ctx, i)
}

type activityErrors struct {
	interceptor.ActivityInboundInterceptorBase
}

func (a *activityErrors) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := a.Next.ExecuteActivity(ctx, in)
	return res, toTemporalError(err)
}

func toTemporalError(err error) error {
	if err == nil {
		return nil
	}
	var nr *NonRetriableError
	if errors.As(err, &nr) {
		return temporal.NewNonRetryableApplicationError(err.Error(), "herald.NonRetriable", err)
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), "herald.RetryAfter", temporal.ApplicationErrorOptions{NextRetryDelay: ra.Delay, Cause: err})
	}
	return err
}
