package e2e

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/examples/demo/demoapp"
	"github.com/herald-run/herald/step"
)

// The functions the end-to-end tests run. Each test uses its own app id, so
// workflow ids and task queues never collide between tests.

type greeting struct {
	Name string `json:"name"`
	Plan string `json:"plan"`
}

type greeted struct {
	Greeting string `json:"greeting"`
	Attempt  int    `json:"attempt"`
}

func greet(_ context.Context, name string) (string, error) { return "hello " + name, nil }

func flakyThird(ctx context.Context) (int, error) {
	if a := int(activity.GetInfo(ctx).Attempt); a <= 2 {
		return a, fmt.Errorf("attempt %d fails", a)
	}
	return int(activity.GetInfo(ctx).Attempt), nil
}

func declined(context.Context) error {
	return herald.NonRetriable(errors.New("card declined"))
}

func greetFn(id string, triggers ...herald.Trigger) *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: id, Triggers: triggers},
		func(ctx workflow.Context, in herald.Input[greeting]) (greeted, error) {
			g, err := step.Run[string](ctx, "greet", greet, in.Event.Data.Name)
			return greeted{Greeting: g, Attempt: in.Attempt}, err
		})
}

func flakyFn() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "flaky", Triggers: []herald.Trigger{herald.OnEvent("test/flaky")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (map[string]int, error) {
			n, err := step.Run[int](ctx, "charge", flakyThird)
			return map[string]int{"attempts": n}, err
		})
}

func declineFn() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{
		ID: "decline", Triggers: []herald.Trigger{herald.OnEvent("test/decline")},
		OnFailure: func(ctx workflow.Context, f herald.Failure) error {
			_, err := step.SendEvent(ctx, "report", herald.Event{Name: "test/declined", Data: map[string]string{"run_id": f.RunID, "error": f.Error}})
			return err
		},
	}, func(ctx workflow.Context, in herald.Input[map[string]any]) (string, error) {
		_, err := step.Run[struct{}](ctx, "charge", declined)
		return "", err
	})
}

// senderFn sends one event from a step; receiverFn counts what it receives.
func senderFn() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "sender", Triggers: []herald.Trigger{herald.OnEvent("test/send")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) ([]string, error) {
			return step.SendEvent(ctx, "fan-out", herald.Event{Name: "test/sent", Data: map[string]any{"from": in.Event.ID}})
		})
}

func parentFn() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "parent", Triggers: []herald.Trigger{herald.OnEvent("test/parent")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (map[string]any, error) {
			child, err := step.Invoke[greeted](ctx, "call-child", "child", greeting{Name: "from parent"})
			return map[string]any{"child": child}, err
		})
}

func sleeperFn() *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "sleeper", Triggers: []herald.Trigger{herald.OnEvent("test/sleep")}},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (string, error) {
			if err := step.Sleep(ctx, "nap", time.Hour); err != nil {
				return "", err
			}
			return "woke", nil
		})
}

var allSteps = []any{greet, flakyThird, declined, tracked, stamp, batchIDs, demoapp.RecordUser}

type activation struct {
	Activated bool   `json:"activated"`
	By        string `json:"by,omitempty"`
}

// waiterFn waits for test/activated matching data.userId, with an optional
// extra condition, for timeout_s seconds (default 60).
func waiterFn(id, ifExpr string, cancelOn ...herald.CancelOn) *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: id, Triggers: []herald.Trigger{herald.OnEvent("test/signup")}, CancelOn: cancelOn},
		func(ctx workflow.Context, in herald.Input[map[string]any]) (activation, error) {
			timeout := 60 * time.Second
			if t, ok := in.Event.Data["timeout_s"].(float64); ok {
				timeout = time.Duration(t * float64(time.Second))
			}
			ev, ok, err := step.WaitForEvent[map[string]any](ctx, "await", step.WaitOpts{
				Event: "test/activated", Match: "data.userId", If: ifExpr, Timeout: timeout,
			})
			if err != nil || !ok {
				return activation{}, err
			}
			by, _ := ev.Data["by"].(string)
			return activation{Activated: true, By: by}, nil
		})
}
