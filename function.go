package herald

import (
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/wire"
)

// Trigger says when a function runs: on an event (OnEvent) or on a schedule
// (OnCron).
type Trigger struct {
	// Event is an event name or wildcard pattern ("app/*", "app/user.*").
	Event string
	// If is an optional CEL expression over `event`; the function runs only
	// when it is true.
	If string
	// Cron is a cron expression with an optional "TZ=Zone " prefix.
	Cron string
}

// OnEvent triggers a function on events named name, a name or a wildcard
// pattern in which `*` stands only at the end, right after "/" or ".". An
// optional CEL expression over `event` filters them, for example
// `event.data.plan == "pro"`.
func OnEvent(name string, ifExpr ...string) Trigger {
	t := Trigger{Event: name}
	if len(ifExpr) > 0 {
		t.If = ifExpr[0]
	}
	return t
}

// OnCron triggers a function on a schedule: a five-field cron expression, with
// an optional time zone prefix such as "TZ=Europe/Paris 0 9 * * 1-5". Each run
// receives a herald/scheduled.timer event.
func OnCron(expr string) Trigger { return Trigger{Cron: expr} }

// CancelOn cancels a run when a matching event arrives: the step in flight
// is not waited for (it runs on, but one that has run for more than 5 s sees
// its context cancelled at its next heartbeat), no further step starts, the
// run ends Cancelled and herald/function.cancelled is emitted.
type CancelOn struct {
	// Event is the exact name of the cancelling event.
	Event string
	// Match, such as "data.userId", requires the cancelling event's value at
	// that path to equal the triggering event's (indexed: cheap at any scale).
	Match string
	// If is a CEL condition over `event` (the triggering event) and `async`
	// (the candidate).
	If string
	// Timeout bounds how long after the run starts it can be cancelled this
	// way; 0 means as long as it runs (at most 366 days).
	Timeout time.Duration
}

// Failure is what an OnFailure handler receives.
type Failure struct {
	FunctionID string
	RunID      string
	Event      TypedEvent[json.RawMessage]
	// Error is the message of the error the run failed with.
	Error string
}

// FunctionOpts configures a function. Only ID and Triggers are required; the
// zero value of every other field means its documented default.
type FunctionOpts struct {
	// ID identifies the function within its app: lowercase letters, digits
	// and dashes. It is also the Temporal workflow type.
	ID string
	// Name is a display name; default ID.
	Name string
	// Triggers (1 to 10) say when the function runs.
	Triggers []Trigger
	// Retries is how many times a failed step is retried after its first
	// attempt, with exponential backoff from one second. 0 means the default,
	// 4 (five attempts); a negative value means no retries. An attempt lost
	// with its worker (killed, or stopped past WorkerOptions.StopTimeout)
	// counts as a failed attempt.
	Retries int
	// StepTimeout bounds one attempt of a step; an attempt that runs longer
	// is retried. Default 5 minutes. It does not delay the retry of a step
	// whose worker died: when it is longer than 20 s, an attempt also times
	// out 20 s after its last sign of life (workers heartbeat for steps that
	// run longer than 5 s); when it is 20 s or less, it notices a dead
	// worker as soon.
	StepTimeout time.Duration
	// CancelOn (up to 5) cancels a run when a matching event arrives. They are
	// registered when the run is dispatched, with no extra Temporal call.
	CancelOn []CancelOn
	// OnFailure, if set, runs in the function's workflow after the function
	// failed (after its steps' retries), before herald/function.failed is
	// emitted. It may call steps. Its own error is logged, not retried.
	OnFailure func(ctx workflow.Context, f Failure) error

	// Flow control (see flow.go). Some combinations are refused at sync:
	// Batch with CancelOn, Debounce, Singleton, Idempotency, RateLimit,
	// Throttle or Timeouts.Start (those act on one event), and Debounce with
	// Throttle, RateLimit or Idempotency.

	// Concurrency (up to 2) limits the steps executing at once; the
	// strictest limit wins.
	Concurrency []Concurrency
	Throttle    *Throttle
	RateLimit   *RateLimit
	Debounce    *Debounce
	Batch       *Batch
	Priority    *Priority
	Singleton   *Singleton
	// Idempotency is a key expression: at most one run per key per 24 hours.
	Idempotency string
	Timeouts    *Timeouts
}

// DefaultRetries is the number of step retries when FunctionOpts.Retries is 0.
const DefaultRetries = 4

// Function is a function ready to register on a Worker. Create it with
// NewFunction.
type Function struct {
	opts FunctionOpts
	// run decodes the request into the user's types and calls the handler.
	run func(ctx workflow.Context, req wire.RunRequest) (any, error)
}

// NewFunction declares a function: its configuration and its handler, a
// Temporal workflow function whose input carries event data decoded into In.
// The handler's result is encoded as JSON into the run's output. Configuration
// errors are reported by Worker.Register and by Herald at sync.
func NewFunction[In, Out any](opts FunctionOpts, handler func(ctx workflow.Context, in Input[In]) (Out, error)) *Function {
	return &Function{
		opts: opts,
		run: func(ctx workflow.Context, req wire.RunRequest) (any, error) {
			in := Input[In]{RunID: req.RunID, Attempt: int(workflow.GetInfo(ctx).Attempt)}
			var err error
			if in.Event, err = decodeEvent[In](req.Event); err != nil {
				return nil, err
			}
			if len(req.Events) == 0 {
				in.Events = []TypedEvent[In]{in.Event}
			}
			for _, e := range req.Events {
				te, err := decodeEvent[In](e)
				if err != nil {
					return nil, err
				}
				in.Events = append(in.Events, te)
			}
			return handler(ctx, in)
		},
	}
}

// ID returns the function's id.
func (f *Function) ID() string { return f.opts.ID }

// retries returns the effective retry count.
func (f *Function) retries() int {
	switch {
	case f.opts.Retries < 0:
		return 0
	case f.opts.Retries == 0:
		return DefaultRetries
	default:
		return f.opts.Retries
	}
}

func (f *Function) stepTimeout() time.Duration {
	if f.opts.StepTimeout <= 0 {
		return 5 * time.Minute
	}
	return f.opts.StepTimeout
}

// config is the function's configuration as synced to Herald.
func (f *Function) config() wire.FunctionConfig {
	c := wire.FunctionConfig{ID: f.opts.ID, Name: f.opts.Name, Retries: f.retries()}
	for _, t := range f.opts.Triggers {
		c.Triggers = append(c.Triggers, wire.TriggerConfig{Event: t.Event, If: t.If, Cron: t.Cron})
	}
	for _, co := range f.opts.CancelOn {
		c.CancelOn = append(c.CancelOn, wire.CancelOnConfig{Event: co.Event, Match: co.Match, If: co.If, TimeoutMS: co.Timeout.Milliseconds()})
	}
	f.flowConfig(&c)
	return c
}

func (f *Function) validate() error {
	if f == nil || f.run == nil {
		return fmt.Errorf("herald: nil function; create functions with herald.NewFunction")
	}
	if f.opts.ID == "" {
		return fmt.Errorf("herald: a function needs an ID")
	}
	return nil
}
