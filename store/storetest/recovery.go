package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
)

// The Recovery part of the suite: pausing, run and wait listings, replays.

func testPauseSurvivesSync(t *testing.T, s store.Driver) {
	syncApp(t, s, "shop", function("a", `{"x":1}`), function("b", `{"x":1}`))
	apps, err := s.ListApps(ctx(t))
	require.NoError(t, err)
	syncedBefore := apps[0].SyncedAt

	at := base.Add(time.Hour)
	f, err := s.SetFunctionPaused(ctx(t), "shop", "a", &at)
	require.NoError(t, err)
	require.NotNil(t, f.PausedAt)
	require.True(t, f.PausedAt.Equal(at))
	later := at.Add(time.Hour)
	f, err = s.SetFunctionPaused(ctx(t), "shop", "a", &later)
	require.NoError(t, err)
	require.True(t, f.PausedAt.Equal(at), "pausing a paused function keeps the first pause time")
	apps, err = s.ListApps(ctx(t))
	require.NoError(t, err)
	require.True(t, apps[0].SyncedAt.After(syncedBefore), "a pause moves the app's sync time so replicas reload")

	// A sync that changes the function keeps it paused.
	syncApp(t, s, "shop", function("a", `{"x":2}`), function("b", `{"x":1}`))
	fns, err := s.ListFunctions(ctx(t))
	require.NoError(t, err)
	require.Len(t, fns, 2)
	require.NotNil(t, fns[0].PausedAt, "shop/a stays paused through a sync")
	require.Equal(t, 2, fns[0].Version)
	require.Nil(t, fns[1].PausedAt)

	f, err = s.SetFunctionPaused(ctx(t), "shop", "a", nil)
	require.NoError(t, err)
	require.Nil(t, f.PausedAt)
	_, err = s.SetFunctionPaused(ctx(t), "shop", "nope", &at)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testListRunsFiltersAndPages(t *testing.T, s store.Driver) {
	for i := range 7 {
		status := "Completed"
		if i%2 == 1 {
			status = "Failed"
		}
		fn := "a"
		if i == 6 {
			fn = "b"
		}
		started := base.Add(time.Duration(i) * time.Minute)
		end := started.Add(time.Second)
		require.NoError(t, s.RecordRun(ctx(t), store.Run{ID: fmt.Sprintf("run-%d", i), AppID: "shop", FunctionID: fn,
			EventID: fmt.Sprintf("ev-%d", i), WorkflowID: fmt.Sprintf("wf-%d", i), Status: status,
			StartedAt: started, EndedAt: &end}, nil))
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		runs, next, err := s.ListRuns(ctx(t), store.RunFilter{AppID: "shop", FunctionID: "a", Limit: 2, Cursor: cursor})
		require.NoError(t, err)
		require.LessOrEqual(t, len(runs), 2)
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, []string{"run-5", "run-4", "run-3", "run-2", "run-1", "run-0"}, got, "newest first, every page once")

	runs, _, err := s.ListRuns(ctx(t), store.RunFilter{Statuses: []string{"Failed"}})
	require.NoError(t, err)
	require.Equal(t, []string{"run-5", "run-3", "run-1"}, idsOf(runs))
	runs, _, err = s.ListRuns(ctx(t), store.RunFilter{StartedAfter: base.Add(2 * time.Minute), StartedBefore: base.Add(4 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, []string{"run-3", "run-2"}, idsOf(runs), "the window is [after, before)")
	_, _, err = s.ListRuns(ctx(t), store.RunFilter{Cursor: "bogus"})
	require.ErrorIs(t, err, store.ErrInvalidCursor)
}

func idsOf(runs []store.Run) []string {
	out := []string{}
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func testReplayRunsAndReopen(t *testing.T, s store.Driver) {
	end := base.Add(time.Second)
	orig := store.Run{ID: "run-1", AppID: "shop", FunctionID: "a", EventID: "ev-1", WorkflowID: "wf-1",
		Status: "Failed", Error: "boom", StartedAt: base, EndedAt: &end}
	require.NoError(t, s.RecordRun(ctx(t), orig, []string{"ev-2", "ev-0"}))
	// An ordinary run of the same (app, function, event) is refused as before...
	require.NoError(t, s.RecordRun(ctx(t), store.Run{ID: "run-dup", AppID: "shop", FunctionID: "a", EventID: "ev-1",
		WorkflowID: "wf-dup", Status: "Running", StartedAt: base}, nil))
	_, err := s.GetRun(ctx(t), "run-dup")
	require.ErrorIs(t, err, store.ErrNotFound)
	// ...but a replay and a rerun of it are new runs.
	replay := store.Run{ID: "run-r", AppID: "shop", FunctionID: "a", EventID: "ev-1", WorkflowID: "wf-r",
		Status: "Running", StartedAt: base.Add(time.Minute), ReplayOf: "run-1", ReplayID: "rp-1"}
	require.NoError(t, s.RecordRun(ctx(t), replay, []string{"ev-0", "ev-2"}))
	rerun := store.Run{ID: "run-x", AppID: "shop", FunctionID: "a", EventID: "ev-1", WorkflowID: "wf-x",
		Status: "Running", StartedAt: base.Add(2 * time.Minute), ReplayOf: "run-1"}
	require.NoError(t, s.RecordRun(ctx(t), rerun, nil))
	got, err := s.GetRun(ctx(t), "run-r")
	require.NoError(t, err)
	require.Equal(t, "run-1", got.ReplayOf)
	require.Equal(t, "rp-1", got.ReplayID)
	runs, err := s.ListRunsByEvent(ctx(t), "ev-1")
	require.NoError(t, err)
	require.Equal(t, []string{"run-1", "run-r", "run-x"}, idsOf(runs))
	ids, err := s.RunEventIDs(ctx(t), "run-1")
	require.NoError(t, err)
	require.Equal(t, []string{"ev-1", "ev-0", "ev-2"}, ids, "own event first, then the batch's others")
	ids, err = s.RunEventIDs(ctx(t), "nope")
	require.NoError(t, err)
	require.Empty(t, ids)

	// Reopen, then a finish records the new outcome.
	require.NoError(t, s.ReopenRun(ctx(t), "run-1"))
	got, err = s.GetRun(ctx(t), "run-1")
	require.NoError(t, err)
	require.Equal(t, "Running", got.Status)
	require.Nil(t, got.EndedAt)
	require.Empty(t, got.Error)
	done := base.Add(time.Hour)
	require.NoError(t, s.FinishRun(ctx(t), store.Run{ID: "run-1", AppID: "shop", FunctionID: "a", EventID: "ev-1",
		WorkflowID: "wf-1", Status: "Completed", Output: []byte(`{"ok":true}`), EndedAt: &done}, nil))
	got, err = s.GetRun(ctx(t), "run-1")
	require.NoError(t, err)
	require.Equal(t, "Completed", got.Status)
	require.JSONEq(t, `{"ok":true}`, string(got.Output))
	require.ErrorIs(t, s.ReopenRun(ctx(t), "nope"), store.ErrNotFound)
}

func testListWaitsPending(t *testing.T, s store.Driver) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(id, fn string, expires time.Time) store.Wait {
		return store.Wait{ID: id, Kind: store.WaitKindWait, AppID: "shop", FunctionID: fn, RunID: "run-" + id,
			WorkflowID: "wf-" + id, StepID: "s", EventName: "shop/paid", Since: now.Add(-time.Minute), ExpiresAt: expires, CreatedAt: now}
	}
	for _, w := range []store.Wait{mk("w1", "a", now.Add(time.Hour)), mk("w2", "a", now.Add(time.Hour)),
		mk("w3", "b", now.Add(time.Hour)), mk("w4", "a", now.Add(-time.Second))} {
		_, err := s.RegisterWait(ctx(t), w)
		require.NoError(t, err)
	}
	ok, err := s.ResolveWait(ctx(t), "w2", "ev")
	require.NoError(t, err)
	require.True(t, ok)
	ws, next, err := s.ListWaits(ctx(t), store.WaitFilter{}, now)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Equal(t, []string{"w3", "w1"}, waitIDs(ws), "pending only (not resolved, not expired), newest first")
	ws, next, err = s.ListWaits(ctx(t), store.WaitFilter{AppID: "shop", FunctionID: "a"}, now)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Equal(t, []string{"w1"}, waitIDs(ws))
	ws, next, err = s.ListWaits(ctx(t), store.WaitFilter{Limit: 1}, now)
	require.NoError(t, err)
	require.Equal(t, []string{"w3"}, waitIDs(ws))
	ws, _, err = s.ListWaits(ctx(t), store.WaitFilter{Limit: 1, Cursor: next}, now)
	require.NoError(t, err)
	require.Equal(t, []string{"w1"}, waitIDs(ws))
}

func testReplayJobLease(t *testing.T, s store.Driver) {
	t0 := base
	r := store.Replay{ID: "rp", AppID: "shop", FunctionID: "a", From: t0.Add(-time.Hour), To: t0,
		Statuses: []string{"Failed", "Skipped"}, Expr: `event.data.n > 0`, Status: store.JobRunning,
		CreatedAt: t0, UpdatedAt: t0, Owner: "owner-a", HeartbeatAt: t0}
	require.NoError(t, s.SaveReplay(ctx(t), r))
	got, err := s.GetReplay(ctx(t), "rp")
	require.NoError(t, err)
	require.Equal(t, []string{"Failed", "Skipped"}, got.Statuses)
	require.True(t, got.From.Equal(r.From) && got.To.Equal(r.To))
	require.Equal(t, r.Expr, got.Expr)

	r.Matched, r.Started, r.Cursor, r.UpdatedAt = 3, 2, "c|1", t0.Add(time.Second)
	require.NoError(t, s.UpdateReplay(ctx(t), r))
	id, err := s.TakeStaleJob(ctx(t), store.JobReplay, "owner-b", t0.Add(time.Minute), t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "rp", id)
	require.ErrorIs(t, s.UpdateReplay(ctx(t), r), store.ErrLeaseLost, "the old owner lost the job")
	_, err = s.TakeStaleJob(ctx(t), store.JobCancellation, "owner-c", t0.Add(time.Hour), t0.Add(time.Hour))
	require.ErrorIs(t, err, store.ErrNotFound, "kinds are kept apart")
	got, err = s.GetReplay(ctx(t), "rp")
	require.NoError(t, err)
	require.Equal(t, "owner-b", got.Owner)
	require.Equal(t, int64(3), got.Matched)
	require.Equal(t, "c|1", got.Cursor)
	_, err = s.GetReplay(ctx(t), "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testFlowTx(t *testing.T, s store.Driver) {
	now := base
	admit := func() bool {
		var ok bool
		require.NoError(t, s.FlowTx(ctx(t), func(ctx context.Context, tx store.ClaimTx) error {
			var err error
			_, ok, err = tx.Limit(ctx, "rate/x", now, time.Minute, 0, now)
			return err
		}))
		return ok
	}
	require.True(t, admit())
	require.False(t, admit(), "the first admission was committed")
	// A failing fn rolls back.
	boom := fmt.Errorf("boom")
	require.ErrorIs(t, s.FlowTx(ctx(t), func(ctx context.Context, tx store.ClaimTx) error {
		_, _, err := tx.Limit(ctx, "rate/y", now, time.Minute, 0, now)
		require.NoError(t, err)
		return boom
	}), boom)
	require.NoError(t, s.FlowTx(ctx(t), func(ctx context.Context, tx store.ClaimTx) error {
		_, ok, err := tx.Limit(ctx, "rate/y", now, time.Minute, 0, now)
		require.True(t, ok, "the failed transaction admitted nothing")
		return err
	}))
}
