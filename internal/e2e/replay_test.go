package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// twoSteps is a function whose steps run in the given order.
func twoSteps(first, second string) *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{ID: "two-steps", Triggers: []herald.Trigger{herald.OnEvent("test/two")}},
		func(ctx workflow.Context, in herald.Input[greeting]) (greeted, error) {
			if _, err := step.Run[string](ctx, first, greet, in.Event.Data.Name); err != nil {
				return greeted{}, err
			}
			g, err := step.Run[string](ctx, second, greet, in.Event.Data.Name)
			return greeted{Greeting: g}, err
		})
}

// CheckReplay replays recorded runs against the code: unchanged code
// replays cleanly; code whose steps were reordered is reported, run by run,
// with Temporal's non-determinism error.
func TestCheckReplayFindsReorderedSteps(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, twoSteps("greet-first", "greet-second"))
	id := b.send(t, ev("test/two", map[string]any{"name": "ada"}))[0]
	runs := b.waitRuns(t, id, 1)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)

	ctx := context.Background()
	same, err := herald.CheckReplay(ctx, herald.CheckReplayOptions{Client: b.temporal, App: b.app, Functions: []*herald.Function{twoSteps("greet-first", "greet-second")}})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"two-steps": 1}, same.Checked)
	require.Empty(t, same.Failures)
	require.NoError(t, same.Err())

	changed, err := herald.CheckReplay(ctx, herald.CheckReplayOptions{Client: b.temporal, App: b.app, Functions: []*herald.Function{twoSteps("greet-second", "greet-first")}})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"two-steps": 1}, changed.Checked)
	require.Len(t, changed.Failures, 1)
	f := changed.Failures[0]
	require.Equal(t, "two-steps", f.FunctionID)
	require.Equal(t, runs[0].WorkflowID, f.WorkflowID)
	require.Contains(t, strings.ToLower(f.Err.Error()), "nondetermin")
	require.ErrorContains(t, changed.Err(), runs[0].WorkflowID)
}
