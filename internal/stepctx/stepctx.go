// Package stepctx carries a run's step settings and bookkeeping through a
// workflow.Context, from the function wrapper in the root package to the step
// package, and names the activities Herald registers on every worker.
package stepctx

import (
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald/internal/wire"
)

// Names of the activities Herald registers on every worker.
const (
	ActivitySendEvents   = "herald.SendEvents"
	ActivityFinishRun    = "herald.FinishRun"
	ActivityRegisterWait = "herald.RegisterWait"
	// ActivityAcquireSlot is a local activity: it asks a semaphore workflow
	// for a concurrency slot.
	ActivityAcquireSlot = "herald.AcquireSlot"
)

// Run is what the steps of one run need to know.
type Run struct {
	AppID      string
	FunctionID string
	RunID      string
	WorkflowID string
	TaskQueue  string
	// Retries is the number of retries after a step's first attempt.
	Retries int
	// StepTimeout bounds one attempt of a step.
	StepTimeout time.Duration
	// Trigger is the run's triggering event and Received when Herald
	// accepted it (ms); waits bind the first and match from the second.
	Trigger  wire.Event
	Received int64
	// Slots are the concurrency limits every step.Run holds a slot of.
	Slots []wire.Slot
	// used holds the step ids already taken in this run.
	used map[string]bool
}

type key struct{}

// With returns ctx carrying r.
func With(ctx workflow.Context, r *Run) workflow.Context {
	r.used = map[string]bool{}
	return workflow.WithValue(ctx, key{}, r)
}

// From returns the run ctx carries, or an error saying the step was called
// outside a Herald function.
func From(ctx workflow.Context) (*Run, error) {
	r, ok := ctx.Value(key{}).(*Run)
	if !ok || r == nil {
		return nil, fmt.Errorf("herald: steps must be called from a Herald function (created with herald.NewFunction)")
	}
	return r, nil
}

// Claim records a step id, failing when it is empty or already used in the
// run: step ids name activities, timers and events, so they must be unique.
// Workflow code runs one coroutine at a time, so no lock is needed.
func (r *Run) Claim(id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("herald: a step id must not be empty")
	}
	if r.used[id] {
		return fmt.Errorf("herald: step id %q is used twice in function %q; step ids must be unique within a run", id, r.FunctionID)
	}
	r.used[id] = true
	return nil
}

var anonymous = regexp.MustCompile(`\.func\d+$`)

// StepName returns the activity name Herald registers fn under: its fully
// qualified Go name, which is unique in a program and readable in the
// Temporal UI. Anonymous functions are refused: they have no stable name.
func StepName(fn any) (string, error) {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return "", fmt.Errorf("herald: a step function must be a func, got %T", fn)
	}
	name := runtime.FuncForPC(v.Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm")
	if name == "" || anonymous.MatchString(name) {
		return "", fmt.Errorf("herald: step function %s is anonymous; declare it as a named function or method so every worker can run it", name)
	}
	t := v.Type()
	if t.NumOut() < 1 || t.NumOut() > 2 || t.Out(t.NumOut()-1) != reflect.TypeFor[error]() {
		return "", fmt.Errorf("herald: step function %s must return (T, error) or error", name)
	}
	return name, nil
}
