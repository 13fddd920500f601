package server

import (
	"context"
	"log/slog"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/workflows"
)

// runSystemWorker runs the Temporal worker of Herald's own workflows
// (debounce, batch, concurrency semaphores) and the activities they call on
// taskQueue until ctx is done.
func runSystemWorker(ctx context.Context, tc *temporalx.Client, taskQueue string, disp *router.Dispatcher, log *slog.Logger) {
	tc.RunWorker(ctx, taskQueue, func(w worker.Registry) {
		workflows.Register(w)
		w.RegisterActivityWithOptions(disp.StartRun, activity.RegisterOptions{Name: wire.ActivityStartRun})
		w.RegisterActivityWithOptions(disp.ClosedWorkflows, activity.RegisterOptions{Name: wire.ActivityClosedWorkflows})
	}, log)
}
