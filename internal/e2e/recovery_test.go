package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporalx"
	"github.com/herald-run/herald/registry"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/step"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
)

// Recovery: replays, reruns and pausing, on a real dev server and Postgres.

func init() { allSteps = append(allSteps, prepare, charge) }

// counters count step executions per test key; broken makes charge decline
// for a key until the test "deploys the fix".
var (
	counters sync.Map // key -> *atomic.Int64 (prepare), key+"/charge" -> charge
	broken   sync.Map // key -> bool
)

// testKey is a key for the package-level counters and gauges that no other
// test, nor another -count iteration of the same one, shares.
func testKey(t *testing.T, prefix string) string {
	return fmt.Sprintf("%s%s-%d", prefix, t.Name(), keySeq.Add(1))
}

var keySeq atomic.Int64

func counter(key string) *atomic.Int64 {
	c, _ := counters.LoadOrStore(key, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func prepare(_ context.Context, key string) (int64, error) { return counter(key).Add(1), nil }

func charge(_ context.Context, key string) (string, error) {
	counter(key + "/charge").Add(1)
	if b, _ := broken.Load(key); b == true {
		return "", herald.NonRetriable(errors.New("card declined: the payment code is broken"))
	}
	return "charged " + key, nil
}

type chargeIn struct {
	Key string `json:"key"`
}

// chargeFn prepares, then charges: while the key is broken, its runs fail.
func chargeFn(opts herald.FunctionOpts) *herald.Function {
	return herald.NewFunction(opts, func(ctx workflow.Context, in herald.Input[chargeIn]) (string, error) {
		if _, err := step.Run[int64](ctx, "prepare", prepare, in.Event.Data.Key); err != nil {
			return "", err
		}
		return step.Run[string](ctx, "charge", charge, in.Event.Data.Key)
	})
}

func (b *bundle) postJSON(t *testing.T, path string, body any, want int, out any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	b.do(t, http.MethodPost, path, raw, want, out)
}

// replay starts a replay and waits for it to finish.
func (b *bundle) replay(t *testing.T, body map[string]any) ingest.ReplayJSON {
	t.Helper()
	var created struct {
		ID   string            `json:"id"`
		Data ingest.ReplayJSON `json:"data"`
	}
	b.postJSON(t, "/v1/replays", body, http.StatusAccepted, &created)
	require.NotEmpty(t, created.ID)
	return b.waitReplay(t, created.ID)
}

func (b *bundle) waitReplay(t *testing.T, id string) ingest.ReplayJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got struct {
			Data ingest.ReplayJSON `json:"data"`
		}
		b.do(t, http.MethodGet, "/v1/replays/"+id, nil, http.StatusOK, &got)
		if got.Data.Status != store.JobRunning {
			return got.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay %s did not finish: %+v", id, got.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReplayFailedRunsAfterTheFix(t *testing.T) {
	t.Parallel()
	key := testKey(t, "")
	broken.Store(key, true)
	b := setup(t, setupOpts{}, chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}}))
	from := time.Now().Add(-time.Second)
	ids := b.send(t, ev("test/charge", map[string]any{"key": key}), ev("test/charge", map[string]any{"key": key}))
	var failed []string
	for _, id := range ids {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Failed", runs[0].Status)
		failed = append(failed, runs[0].RunID)
	}

	// Bad requests name the field.
	var bad struct {
		Error string `json:"error"`
	}
	b.postJSON(t, "/v1/replays", map[string]any{"function_id": b.app + "/charge", "from": from.Format(time.RFC3339Nano), "statuses": []string{"Running"}}, http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "statuses")
	b.postJSON(t, "/v1/replays", map[string]any{"function_id": b.app + "/nope", "from": from.Format(time.RFC3339Nano)}, http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "function_id")
	b.postJSON(t, "/v1/replays", map[string]any{"function_id": b.app + "/charge"}, http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "from")

	broken.Store(key, false) // the fix is deployed
	job := b.replay(t, map[string]any{"function_id": b.app + "/charge", "from": from.UnixMilli(), "statuses": []string{"Failed"}})
	require.Equal(t, store.JobCompleted, job.Status, job.Error)
	require.Equal(t, int64(2), job.Matched)
	require.Equal(t, int64(2), job.Started)
	require.Equal(t, int64(0), job.Skipped)

	for i, id := range ids {
		runs := b.waitRuns(t, id, 2)
		require.Equal(t, failed[i], runs[0].RunID, "the old run stays as it was")
		require.Equal(t, "Failed", runs[0].Status)
		require.Equal(t, "Completed", runs[1].Status, runs[1].Error)
		require.Equal(t, failed[i], runs[1].ReplayOf)
		require.Equal(t, job.ID, runs[1].ReplayID)
		require.NotEqual(t, runs[0].WorkflowID, runs[1].WorkflowID, "a replayed run has a workflow of its own")
		require.JSONEq(t, fmt.Sprintf("%q", "charged "+key), string(runs[1].Output))
	}
	// Replaying again finds the two Failed runs again but its window ends
	// at its own start: the replays are not replayed.
	again := b.replay(t, map[string]any{"function_id": b.app + "/charge", "from": from.UnixMilli(), "statuses": []string{"Completed"}})
	require.Equal(t, int64(2), again.Matched, "the two completed replays of the first job")
}

func TestPauseSkipsThenResumeAndReplay(t *testing.T) {
	t.Parallel()
	key := testKey(t, "")
	b := setup(t, setupOpts{}, chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}}))
	fn := b.app + "/charge"
	var paused struct {
		Data ingest.FunctionJSON `json:"data"`
	}
	b.postJSON(t, "/v1/functions/"+fn+"/pause", nil, http.StatusOK, &paused)
	require.True(t, paused.Data.Paused)
	require.NotNil(t, paused.Data.PausedAt)
	var list struct {
		Data []ingest.FunctionJSON `json:"data"`
	}
	b.do(t, http.MethodGet, "/v1/functions", nil, http.StatusOK, &list)
	require.Len(t, list.Data, 1)
	require.True(t, list.Data[0].Paused, "GET /v1/functions shows the pause")
	b.do(t, http.MethodPost, "/v1/functions/"+b.app+"/nope/pause", nil, http.StatusNotFound, nil)
	var bad struct {
		Error string `json:"error"`
	}

	from := time.Now().Add(-time.Second)
	id := b.send(t, ev("test/charge", map[string]any{"key": key}))[0]
	runs := b.waitRuns(t, id, 1)
	require.Equal(t, "Skipped", runs[0].Status)
	require.Equal(t, "skipped: paused", runs[0].Error)
	require.Zero(t, counter(key).Load(), "a paused function runs nothing")

	// A re-sync keeps the pause (the worker syncs on every start).
	w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: b.url, Client: b.temporal})
	require.NoError(t, err)
	require.NoError(t, w.Register(chargeFn(herald.FunctionOpts{ID: "charge", Name: "Charge, re-synced", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Sync(ctx))
	b.do(t, http.MethodGet, "/v1/functions", nil, http.StatusOK, &list)
	require.True(t, list.Data[0].Paused, "a re-sync keeps the function paused")
	require.Equal(t, 2, list.Data[0].Version)

	// A replay of a paused function fails and says why.
	job := b.replay(t, map[string]any{"function_id": fn, "from": from.UnixMilli(), "statuses": []string{"Skipped"}})
	require.Equal(t, store.JobFailed, job.Status)
	require.Contains(t, job.Error, "paused")

	b.postJSON(t, "/v1/functions/"+fn+"/resume", nil, http.StatusOK, &paused)
	require.False(t, paused.Data.Paused)
	job = b.replay(t, map[string]any{"function_id": fn, "from": from.UnixMilli(), "statuses": []string{"Skipped"}})
	require.Equal(t, store.JobCompleted, job.Status, job.Error)
	require.Equal(t, int64(1), job.Started)
	runs = b.waitRuns(t, id, 2)
	require.Equal(t, "Completed", runs[1].Status, runs[1].Error)
	require.Equal(t, runs[0].RunID, runs[1].ReplayOf)
	// A skipped run has no steps to rerun from.
	b.postJSON(t, "/v1/runs/"+runs[0].RunID+"/rerun", map[string]any{"from_step": "charge"}, http.StatusConflict, &bad)
	require.Contains(t, bad.Error, "never started")

	// New events run again.
	id2 := b.send(t, ev("test/charge", map[string]any{"key": key}))[0]
	require.Equal(t, "Completed", b.waitRuns(t, id2, 1)[0].Status)
}

func TestRerunFromAStepKeepsTheStepsBefore(t *testing.T) {
	t.Parallel()
	key := testKey(t, "")
	broken.Store(key, true)
	b := setup(t, setupOpts{}, chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}}))
	id := b.send(t, ev("test/charge", map[string]any{"key": key}))[0]
	run := b.waitRuns(t, id, 1)[0]
	require.Equal(t, "Failed", run.Status)
	require.Equal(t, int64(1), counter(key).Load())
	require.Equal(t, int64(1), counter(key+"/charge").Load())

	var bad struct {
		Error string   `json:"error"`
		Steps []string `json:"steps"`
	}
	b.postJSON(t, "/v1/runs/"+run.RunID+"/rerun", map[string]any{"from_step": "nope"}, http.StatusBadRequest, &bad)
	require.Equal(t, []string{"prepare", "charge"}, bad.Steps, bad.Error)
	got, err := b.store.GetRun(context.Background(), run.RunID)
	require.NoError(t, err)
	require.Equal(t, "Failed", got.Status, "a refused rerun leaves the run as it was")

	broken.Store(key, false)
	var rerun struct {
		Data ingest.RunJSON `json:"data"`
	}
	b.postJSON(t, "/v1/runs/"+run.RunID+"/rerun", map[string]any{"from_step": "charge"}, http.StatusOK, &rerun)
	require.Equal(t, run.RunID, rerun.Data.RunID, "a rerun from a step resets the same run")
	runs := b.waitRuns(t, id, 1)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
	require.Equal(t, int64(1), counter(key).Load(), "the step before kept its result: it ran once")
	require.Equal(t, int64(2), counter(key+"/charge").Load(), "the step rerun ran again")
	// The outcome is emitted again, as a new event.
	require.Eventually(t, func() bool {
		for _, e := range b.eventsNamed(t, "herald/function.finished") {
			var d struct {
				RunID string `json:"run_id"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.RunID == run.RunID {
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond)

	// From the start: a new run, every step again.
	b.postJSON(t, "/v1/runs/"+run.RunID+"/rerun", nil, http.StatusOK, &rerun)
	require.NotEqual(t, run.RunID, rerun.Data.RunID)
	require.Equal(t, run.RunID, rerun.Data.ReplayOf)
	runs = b.waitRuns(t, id, 2)
	require.Equal(t, "Completed", runs[1].Status, runs[1].Error)
	require.Equal(t, int64(2), counter(key).Load())
}

func TestReplayOfABatchCarriesAllItsEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, flowFn(herald.FunctionOpts{
		ID: "import", Triggers: []herald.Trigger{herald.OnEvent("test/row")},
		Batch: &herald.Batch{MaxSize: 3, Timeout: 5 * time.Second},
	}))
	from := time.Now().Add(-time.Second)
	ids := b.send(t, ev("test/row", map[string]any{"seq": 1}), ev("test/row", map[string]any{"seq": 2}), ev("test/row", map[string]any{"seq": 3}))
	first := b.waitRuns(t, ids[0], 1)[0]
	var out flowOut
	require.NoError(t, json.Unmarshal(first.Output, &out))
	require.ElementsMatch(t, ids, out.IDs)

	job := b.replay(t, map[string]any{"function_id": b.app + "/import", "from": from.UnixMilli(), "statuses": []string{"Completed"}})
	require.Equal(t, store.JobCompleted, job.Status, job.Error)
	require.Equal(t, int64(1), job.Started, "one batch run, replayed once")
	for _, id := range ids {
		runs := b.waitRuns(t, id, 2)
		require.Equal(t, first.RunID, runs[1].ReplayOf, "every event of the batch lists the replay")
		var again flowOut
		require.NoError(t, json.Unmarshal(runs[1].Output, &again))
		require.ElementsMatch(t, ids, again.IDs, "the replay ran with the whole batch")
	}
}

// TestReplayJobSurvivesItsReplica: a replay whose replica died half way
// (its lease no longer renewed, its cursor saved after the first run) is
// taken over by another replica's housekeeping, which finishes it with exact
// counts and starts nothing twice.
func TestReplayJobSurvivesItsReplica(t *testing.T) {
	t.Parallel()
	key := testKey(t, "")
	broken.Store(key, true)
	b := setup(t, setupOpts{}, chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}}))
	from := time.Now().Add(-time.Second)
	var ids []string
	for range 4 {
		ids = append(ids, b.send(t, ev("test/charge", map[string]any{"key": key}))...)
	}
	for _, id := range ids {
		require.Equal(t, "Failed", b.waitRuns(t, id, 1)[0].Status)
	}
	broken.Store(key, false)

	// The dead replica's job: it had worked on the first run of its first
	// page (runs are listed newest first) and started its replay.
	ctx := context.Background()
	now := time.Now().UTC()
	job := store.Replay{ID: "rp-" + key, AppID: b.app, FunctionID: "charge", From: from, To: now, Statuses: []string{"Failed"},
		Status: store.JobRunning, CreatedAt: now, UpdatedAt: now, Owner: "dead-replica", HeartbeatAt: now.Add(-time.Hour)}
	newest, _, err := b.store.ListRuns(ctx, store.RunFilter{AppID: b.app, FunctionID: "charge", Limit: 1})
	require.NoError(t, err)
	require.Len(t, newest, 1)
	evs := []store.Event{}
	for _, eid := range []string{newest[0].EventID} {
		e, err := b.store.GetEvent(ctx, eid)
		require.NoError(t, err)
		evs = append(evs, e)
	}
	// What the dead replica did before it died, through the same code path.
	disp := replayer(t, b)
	_, err = disp.StartReplay(ctx, router.Replay{Function: b.app + "/charge", Events: evs, ReplayOf: newest[0].ID,
		ReplayID: job.ID, Key: job.ID + "/run/" + newest[0].ID, At: job.CreatedAt})
	require.NoError(t, err)
	job.Matched, job.Started, job.Cursor = 0, 0, "|0" // saved before the first run: it is repeated
	require.NoError(t, b.store.SaveReplay(ctx, job))

	// A second replica on the same store takes it over.
	startReplica(t, b)
	got := b.waitReplay(t, job.ID)
	require.Equal(t, store.JobCompleted, got.Status, got.Error)
	require.Equal(t, int64(4), got.Matched)
	require.Equal(t, int64(4), got.Started)
	for _, id := range ids {
		runs := b.waitRuns(t, id, 2)
		require.Len(t, runs, 2, "each failed run is replayed exactly once")
		require.Equal(t, "Completed", runs[1].Status, runs[1].Error)
	}
	require.Equal(t, int64(4), counter(key+"/charge").Load()-4, "four replayed charges, none twice")
}

// replayer is a router on the bundle's store, to start a replay as a replica would.
func replayer(t *testing.T, b *bundle) *router.Dispatcher {
	t.Helper()
	env, err := triggers.NewEnv()
	require.NoError(t, err)
	reg, err := registry.New(registry.Config{Store: b.store, Env: env})
	require.NoError(t, err)
	d, err := router.New(router.Config{Store: b.store, Registry: reg, Temporal: temporalx.New(b.temporal)})
	require.NoError(t, err)
	return d
}

// startReplica runs another Herald on the bundle's store, whose housekeeping
// takes stale jobs over quickly.
func startReplica(t *testing.T, b *bundle) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
			Addr:   "127.0.0.1:0", Store: b.store, Temporal: b.temporal,
			Ingest:       ingest.Config{AllowAnyEventKey: true, Jobs: ingest.JobLease{StaleAfter: 2 * time.Second}},
			Router:       router.Config{PollInterval: 100 * time.Millisecond, SystemTaskQueue: fmt.Sprintf("herald-system-e2e-%d-%d", os.Getpid(), appSeq.Add(1))},
			Housekeeping: server.Housekeeping{JobScanInterval: 200 * time.Millisecond},
			Ready:        func(_ context.Context, url string) { ready <- url },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("replica did not start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica log:\n%s", logs.String())
		}
		cancel()
		require.NoError(t, <-done)
	})
}

// A replay of events runs the function for the stored events of the window
// its triggers match now, whether or not they ran: here a trigger that was
// wrong when the events came.
func TestReplayOfEventsRunsATriggerFixedLater(t *testing.T) {
	t.Parallel()
	key := testKey(t, "")
	b := setup(t, setupOpts{}, chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge.typo")}}))
	from := time.Now().Add(-time.Second)
	ids := b.send(t, ev("test/charge", map[string]any{"key": key}), ev("test/charge", map[string]any{"key": key}), ev("test/other", map[string]any{"key": key}))
	for _, id := range ids {
		b.waitDispatched(t, id)
		require.Empty(t, b.runs(t, id), "the wrong trigger ran nothing")
	}

	// The fix: the trigger now names the events that came.
	w, err := herald.NewWorker(herald.WorkerOptions{App: b.app, HeraldURL: b.url, Client: b.temporal})
	require.NoError(t, err)
	require.NoError(t, w.Register(chargeFn(herald.FunctionOpts{ID: "charge", Triggers: []herald.Trigger{herald.OnEvent("test/charge")}})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Sync(ctx))

	var bad struct {
		Error string `json:"error"`
	}
	b.postJSON(t, "/v1/replays", map[string]any{"function_id": b.app + "/charge", "from": from.UnixMilli(), "events": true, "statuses": []string{"Failed"}}, http.StatusBadRequest, &bad)
	require.Contains(t, bad.Error, "statuses")

	job := b.replay(t, map[string]any{"function_id": b.app + "/charge", "from": from.UnixMilli(), "events": true})
	require.Equal(t, store.JobCompleted, job.Status, job.Error)
	require.Equal(t, int64(2), job.Matched, "the two events the trigger matches, not the other one")
	require.Equal(t, int64(2), job.Started)
	for _, id := range ids[:2] {
		runs := b.waitRuns(t, id, 1)
		require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
		require.Empty(t, runs[0].ReplayOf, "the event had no run to repeat")
		require.Equal(t, job.ID, runs[0].ReplayID)
	}
	require.Empty(t, b.runs(t, ids[2]))
}
