package server

import (
	"context"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/workflows"
)

// runSystemWorker runs the Temporal worker of Herald's own workflows
// (debounce, batch, concurrency semaphores) on taskQueue until ctx is done.
// Temporal may be down when Herald starts: it keeps trying to start.
func runSystemWorker(ctx context.Context, c client.Client, taskQueue string, disp *router.Dispatcher, log *slog.Logger) {
	w := worker.New(c, taskQueue, worker.Options{})
	workflows.Register(w)
	w.RegisterActivityWithOptions(disp.StartRun, activity.RegisterOptions{Name: wire.ActivityStartRun})
	w.RegisterActivityWithOptions(disp.ClosedWorkflows, activity.RegisterOptions{Name: wire.ActivityClosedWorkflows})
	backoff := time.Second
	for {
		err := w.Start()
		if err == nil {
			break
		}
		log.Warn("Herald's system worker could not start; retrying", "task_queue", taskQueue, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	log.Debug("system worker polling", "task_queue", taskQueue)
	<-ctx.Done()
	w.Stop()
}
