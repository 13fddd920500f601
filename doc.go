/*
Package herald is the Go SDK of Herald, an event-driven function platform built
on Temporal.

Applications send events to Herald (POST /e/{key}). Herald stores each event
durably, matches it against the triggers of the functions that apps have
declared, and runs every matching function as a Temporal workflow on its app's
worker. A function is made of steps (package [step]): each step is a Temporal
activity, timer or child workflow, so a run survives worker restarts and
deploys, a failed step is retried on its own, and every run, with its steps,
can be inspected in the Temporal UI.

This package declares functions ([NewFunction]), their triggers and flow
control ([FunctionOpts]), and runs them ([Worker]). The examples in this
documentation run as tests, most of them by running a function in Temporal's
test environment.

# Defining a function

A function is a configuration and a handler. The handler is a Temporal
workflow function: it receives the triggering event with its data decoded into
a type of your choice ([Input], [TypedEvent]), and what it returns is the
run's output, encoded as JSON.

	type Signup struct {
		UserID string `json:"userId"`
		Email  string `json:"email"`
		Plan   string `json:"plan"`
	}

	// SendEmail is a step: a named function that Temporal runs as an activity.
	func SendEmail(ctx context.Context, to, subject string) (bool, error) { ... }

	var WelcomeEmail = herald.NewFunction(herald.FunctionOpts{
		ID:       "welcome-email",
		Triggers: []herald.Trigger{herald.OnEvent("shop/user.signup")},
	}, func(ctx workflow.Context, in herald.Input[Signup]) (WelcomeResult, error) {
		if _, err := step.Run[bool](ctx, "send-welcome", SendEmail, in.Event.Data.Email, "Welcome!"); err != nil {
			return WelcomeResult{}, err
		}
		if err := step.Sleep(ctx, "wait-a-day", 24*time.Hour); err != nil {
			return WelcomeResult{}, err
		}
		if _, err := step.Run[bool](ctx, "send-tips", SendEmail, in.Event.Data.Email, "Three tips for your first week"); err != nil {
			return WelcomeResult{}, err
		}
		return WelcomeResult{Emails: 2}, nil
	})

Only ID and Triggers are required; the zero value of every other field of
[FunctionOpts] means its documented default. The ID names the function within
its app and is its Temporal workflow type.

The handler is workflow code: Temporal replays it to rebuild a run, so it must
be deterministic. Anything that talks to the world (the network, a database,
the clock, randomness) belongs in a step. Event data that does not decode into
the handler's type fails the run with a message naming the event.

# Triggers

A function runs on events ([OnEvent]) or on a schedule ([OnCron]), with up to
ten triggers.

	herald.OnEvent("shop/order.placed")
	herald.OnEvent("shop/order.placed", `event.data.total >= 100.0`)
	herald.OnEvent("shop/*")
	herald.OnCron("TZ=Europe/Paris 0 9 * * 1-5")

An event trigger names an event, or a pattern whose `*` stands at the end,
right after "/" or ".". Its optional condition is a CEL expression over
`event`, which has the fields name, data, id, ts and v. A cron trigger is a
five-field cron expression with an optional time zone; each of its runs
receives a herald/scheduled.timer event.

[CancelOn] cancels a run when a matching event arrives, for example a
cancelled order for the run of the same order:

	CancelOn: []herald.CancelOn{{Event: "shop/order.cancelled", Match: "data.orderId"}},

Herald compiles every expression and checks every trigger when the worker
syncs the app, and refuses the sync listing every problem: a typo in a
condition is reported at deploy, not at the first event.

When a run ends, Herald emits herald/function.finished,
herald/function.failed or herald/function.cancelled, which other functions can
be triggered on.

# Steps

Package [step] holds the steps; each has an id, unique within the run, that
names its activity, timer or child workflow in the Temporal UI.

  - [step.Run] runs a named Go function as an activity and returns its result.
    The function is registered with [Worker.RegisterSteps]; it may take a
    context.Context first and returns (T, error) or error.
  - [step.Sleep] and [step.SleepUntil] pause the run with a durable timer. No
    worker is busy while a run sleeps, for a second or a month.
  - [step.WaitForEvent] pauses the run until a matching event arrives, or a
    timeout passes ("not received" is a result, not an error).
  - [step.Invoke] runs another function of the app as a child workflow and
    returns its result.
  - [step.SendEvent] sends events through Herald, with ids derived from the run
    and the step, so a retried step never sends an event twice.

Steps may run in parallel, each from its own workflow.Go goroutine.

	ev, ok, err := step.WaitForEvent[Activated](ctx, "await-activation", step.WaitOpts{
		Event:   "shop/user.activated",
		Match:   "data.userId", // the activation of this run's user
		Timeout: 7 * 24 * time.Hour,
	})

# Errors and retries

A step whose function returns an error is retried, [FunctionOpts].Retries
times after its first attempt ([DefaultRetries] by default), with an
exponential backoff from one second; [FunctionOpts].StepTimeout bounds each
attempt. Two errors change that, and both keep their cause for errors.Is and
errors.As:

  - [NonRetriable] marks an error that another attempt will not fix (a
    declined card): the step fails at once. errors.Is(err, [ErrNonRetriable])
    matches it, wherever it is wrapped.
  - [RetryAfter] sets the delay before the next attempt (an API that answered
    429 with a Retry-After), within the same retry limit.

A step calling an API that limits its callers:

	if resp.StatusCode == http.StatusTooManyRequests {
		return herald.RetryAfter(errors.New("rate limited"), time.Minute)
	}

In the handler, a failed step returns a Temporal error: the step function's
error value stayed in the activity, its message and retryability travelled
(errors.As with a *temporal.ApplicationError finds them). A handler can turn a
failure into a result, or return it and fail the run; [FunctionOpts].OnFailure
then runs, with a [Failure], before Herald records the run as failed.

# Flow control

Fields of [FunctionOpts] control how many runs start and how fast, with no
code in the handler. Each Key is a CEL expression over `event`, such as
`event.data.accountId`, whose value names the key the limit applies to; an
empty Key means one key for the whole function. Herald evaluates them when it
dispatches events, outside workflow code.

  - [Concurrency] limits the steps executing at once, across all workers.
  - [Throttle] spaces run starts out, queueing the runs over the limit.
  - [RateLimit] skips the runs over the limit.
  - [Debounce] starts one run after a burst of events, with the last one.
  - [Batch] starts one run for many events, which it receives in
    [Input].Events.
  - [Priority] orders runs waiting for a worker.
  - [Singleton] allows one active run per key.
  - Idempotency allows one run per key per 24 hours.
  - [Timeouts] skip runs that start too late and cancel those that run too
    long.

For example, usage events billed in batches of up to 100 per account:

	Batch: &herald.Batch{MaxSize: 100, Timeout: time.Minute, Key: "event.data.accountId"},

Debounce and Batch start their runs later, for the last or many events, so
Herald refuses at sync to combine either with the options that decide about
each event as it is dispatched: CancelOn, Singleton, Idempotency, RateLimit,
Throttle and Timeouts.Start. A function cannot both debounce and batch.

# Running a worker

A [Worker] serves one app: it registers its functions and steps, syncs their
configuration to Herald, and polls the app's Temporal task queue.

	temporalClient, err := client.Dial(client.Options{HostPort: "127.0.0.1:7233"})
	if err != nil {
		return err
	}
	w, err := herald.NewWorker(herald.WorkerOptions{
		App:       "shop",
		Client:    temporalClient,
		HeraldURL: "http://127.0.0.1:8288",
	})
	if err != nil {
		return err
	}
	if err := w.Register(WelcomeEmail, Onboarding); err != nil {
		return err
	}
	if err := w.RegisterSteps(SendEmail); err != nil {
		return err
	}
	return w.Run(ctx) // syncs with Herald, then polls until ctx is done

[Worker.Run] fails fast when Herald refuses the configuration. Run as many
workers of an app as you like: they share its task queue.

When ctx is done (cancel it on SIGTERM with signal.NotifyContext), Run stops
the worker gracefully: it stops polling, gives the steps in flight up to
[WorkerOptions].StopTimeout (25 s by default) to finish, hands the ones still
running back to Temporal for another worker to retry at once, and returns. A
worker that dies without stopping (SIGKILL, OOM, a lost node) loses its steps
in flight for about 20 s: the worker heartbeats for a step that runs longer
than 5 s, and Temporal retries a step 20 s after its last sign of life,
whatever its StepTimeout. An attempt lost either way counts against Retries.

# Testing functions

Functions are unit tested with Temporal's testsuite, without Herald or a
Temporal server: [Worker.RegisterForTest] registers the worker's functions,
steps and Herald's own activities on a test environment, and
[ErrorInterceptor] makes [NonRetriable] and [RetryAfter] behave as on a real
worker (and keeps steps longer than their 20 s heartbeat timeout alive). Timers fire as soon as the run waits on them, so a 24 hour sleep takes
milliseconds.

	// Herald's own activities call its API (the run's outcome, waits, sent
	// events); a stand-in server answers them.
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer api.Close()
	temporalClient, _ := client.NewLazyClient(client.Options{}) // never connects
	w, _ := herald.NewWorker(herald.WorkerOptions{App: "shop", Client: temporalClient, HeraldURL: api.URL})
	_ = w.Register(WelcomeEmail)
	_ = w.RegisterSteps(SendEmail)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{herald.ErrorInterceptor()}})
	w.RegisterForTest(env)

	env.ExecuteWorkflow(WelcomeEmail.ID(), map[string]any{
		"event": herald.TypedEvent[Signup]{ID: "evt-1", Name: "shop/user.signup", Data: Signup{Email: "ada@example.com"}},
	})
	var out WelcomeResult
	err := env.GetWorkflowResult(&out)

A run's input holds the triggering event under "event", and for a batch every
event under "events". Herald delivers the event that resolves a
[step.WaitForEvent] as the signal "herald.wait/<step id>", which a test sends
with env.SignalWorkflow. See the examples.

[step]: https://pkg.go.dev/github.com/herald-run/herald/step
[step.Run]: https://pkg.go.dev/github.com/herald-run/herald/step#Run
[step.Sleep]: https://pkg.go.dev/github.com/herald-run/herald/step#Sleep
[step.SleepUntil]: https://pkg.go.dev/github.com/herald-run/herald/step#SleepUntil
[step.WaitForEvent]: https://pkg.go.dev/github.com/herald-run/herald/step#WaitForEvent
[step.Invoke]: https://pkg.go.dev/github.com/herald-run/herald/step#Invoke
[step.SendEvent]: https://pkg.go.dev/github.com/herald-run/herald/step#SendEvent
*/
package herald
