package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
)

func TestCronSchedulesFollowSyncs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, greetFn("reporter", herald.OnCron("TZ=UTC 0 3 * * *")))
	sc := b.temporal.ScheduleClient()
	id := registry.ScheduleID(b.app, "reporter", 0)

	nextHourMinute := func() (int, int) {
		desc, err := sc.GetHandle(context.Background(), id).Describe(context.Background())
		require.NoError(t, err)
		require.NotEmpty(t, desc.Info.NextActionTimes)
		next := desc.Info.NextActionTimes[0].UTC()
		return next.Hour(), next.Minute()
	}
	h, m := nextHourMinute()
	require.Equal(t, []int{3, 0}, []int{h, m}, "created by the first sync")

	resync := func(fns ...*herald.Function) {
		w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: b.url, Client: b.temporal})
		require.NoError(t, err)
		require.NoError(t, w.Register(fns...))
		require.NoError(t, w.Sync(context.Background()))
	}
	resync(greetFn("reporter", herald.OnCron("TZ=UTC 30 4 * * *")))
	h, m = nextHourMinute()
	require.Equal(t, []int{4, 30}, []int{h, m}, "updated by a sync that changed the cron")

	resync(greetFn("other", herald.OnEvent("test/x")))
	_, err := sc.GetHandle(context.Background(), id).Describe(context.Background())
	var nf *serviceerror.NotFound
	require.True(t, errors.As(err, &nf), "deleted when the function left the app: %v", err)
}

// TestTemporalRestartMidStream stops the Temporal server while events arrive
// and starts it again: every event is accepted and dispatched exactly once.
// It is not parallel: it runs alone, so no other dev server starts (and takes
// free ports) while this one restarts.
func TestTemporalRestartMidStream(t *testing.T) {
	hostPort := freeAddr(t)
	dbFile := filepath.Join(t.TempDir(), "temporal.db")
	ds, err := temporaltest.Start(context.Background(), temporaltest.Options{HostPort: hostPort, DBFile: dbFile})
	require.NoError(t, err)
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); _ = ds.Stop() })

	tc, err := client.NewLazyClient(client.Options{HostPort: hostPort, Namespace: "default"})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	b := setup(t, setupOpts{temporal: tc}, greetFn("steady", herald.OnEvent("test/steady")))

	const total = 30
	var ids []string
	for i := range total {
		ids = append(ids, b.send(t, map[string]any{"name": "test/steady", "id": fmt.Sprintf("steady-%02d", i), "data": map[string]any{"name": fmt.Sprint(i)}})...)
		switch i {
		case 10:
			mu.Lock()
			require.NoError(t, ds.Stop())
			mu.Unlock()
		case 20:
			mu.Lock()
			ds, err = temporaltest.Start(context.Background(), temporaltest.Options{HostPort: hostPort, DBFile: dbFile})
			mu.Unlock()
			require.NoError(t, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range ids {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Completed", runs[0].Status, "event %s: %s", id, runs[0].Error)
	}
	// Temporal holds exactly one workflow per event.
	require.Eventually(t, func() bool {
		resp, err := tc.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
			Query: fmt.Sprintf(`HeraldApp = %q`, b.app),
		})
		return err == nil && resp.GetCount() == total
	}, 20*time.Second, 200*time.Millisecond)
}

// TestTwoReplicasSeeEachOthersSyncs runs two Herald replicas on one Postgres:
// an app synced through one is applied at once to events sent to the other.
func TestTwoReplicasSeeEachOthersSyncs(t *testing.T) {
	t.Parallel()
	url := testdb.Schema(t)
	open := func() store.Driver {
		d, err := postgres.Open(context.Background(), url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close() })
		require.NoError(t, d.Migrate(context.Background()))
		return d
	}
	stA, stB := open(), open()
	tc := devServer.Client()
	urlA, urlB := startHerald(t, stA, tc), startHerald(t, stB, tc)
	a := &bundle{url: urlA, store: stA, temporal: tc}
	b := &bundle{url: urlB, store: stB, temporal: tc}

	// Both replicas have built a snapshot without the app.
	warm := b.send(t, map[string]any{"name": "test/warm-up"})
	b.waitDispatched(t, warm[0])
	warm = a.send(t, map[string]any{"name": "test/warm-up"})
	a.waitDispatched(t, warm[0])

	app := fmt.Sprintf("e2e-%d-%d", os.Getpid(), appSeq.Add(1))
	w, err := herald.NewWorker(herald.WorkerOptions{App: app, HeraldURL: urlA, Client: tc})
	require.NoError(t, err)
	require.NoError(t, w.Register(greetFn("replicated", herald.OnEvent("test/replicated"))))
	require.NoError(t, w.RegisterSteps(allSteps...))
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(w.Stop)

	ids := b.send(t, map[string]any{"name": "test/replicated", "data": map[string]any{"name": "r"}})
	runs := b.waitRuns(t, ids[0], 1)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
}
