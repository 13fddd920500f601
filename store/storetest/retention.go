package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// The retention part of the suite: Purge deletes exactly what the retention
// no longer keeps. The cutoff is base; "old" rows are an hour before it, and
// rows at the cutoff itself or after it are younger than the retention.

// dispatchAll claims every pending event and dispatches all but keep, with
// runs.
func dispatchAll(t *testing.T, s store.Driver, runs []store.Run, keep ...string) {
	t.Helper()
	pendingIDs := map[string]bool{}
	for _, id := range keep {
		pendingIDs[id] = true
	}
	_, err := s.ClaimEvents(ctx(t), 1000, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		c := store.Claim{Runs: runs}
		for _, e := range events {
			if !pendingIDs[e.ID] {
				c.Dispatched = append(c.Dispatched, e.ID)
			}
		}
		return c, nil
	})
	require.NoError(t, err)
}

// endedRun is a run of event eventID that finished with status at ended.
func endedRun(id, eventID, status string, ended time.Time) store.Run {
	r := runFor(id, "f", eventID, ended.Add(-time.Minute))
	r.Status, r.EndedAt = status, &ended
	return r
}

func cancellationJob(id, status string, updated time.Time) store.Cancellation {
	return store.Cancellation{ID: id, AppID: "app", FunctionID: "f", Status: status,
		CreatedAt: updated.Add(-time.Minute), UpdatedAt: updated, HeartbeatAt: updated}
}

func purge(t *testing.T, s store.Driver, before time.Time, batch int) store.PurgeCounts {
	t.Helper()
	n, err := s.Purge(ctx(t), before, batch)
	require.NoError(t, err)
	return n
}

// requireEvents checks which of ids are stored.
func requireEvents(t *testing.T, s store.Driver, stored bool, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := s.GetEvent(ctx(t), id)
		if stored {
			require.NoError(t, err, "event %s must be kept", id)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, "event %s must be purged", id)
		}
	}
}

// requireRuns checks which of ids are stored.
func requireRuns(t *testing.T, s store.Driver, stored bool, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := s.GetRun(ctx(t), id)
		if stored {
			require.NoError(t, err, "run %s must be kept", id)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, "run %s must be purged", id)
		}
	}
}

func requireCancellations(t *testing.T, s store.Driver, stored bool, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := s.GetCancellation(ctx(t), id)
		if stored {
			require.NoError(t, err, "cancellation %s must be kept", id)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, "cancellation %s must be purged", id)
		}
	}
}

func testPurge(t *testing.T, s store.Driver) {
	cutoff := base
	old := cutoff.Add(-time.Hour)
	insert(t, s, old.Add(-time.Hour),
		ev("old-done", "p/x", old),          // dispatched, no run: purged
		ev("old-pending", "p/x", old),       // never dispatched: kept
		ev("old-running", "p/x", old),       // its run is Running: kept
		ev("old-scheduled", "p/x", old),     // its run is Scheduled: kept
		ev("old-in-batch", "p/x", old),      // linked to a running batch run: kept
		ev("old-in-done-batch", "p/x", old), // linked to a finished batch run: purged
		ev("old-finished", "p/x", old),      // its run finished long ago: both purged
		ev("old-finished-late", "p/x", old), // its run finished after the cutoff: the event goes, the run stays
		ev("at-cutoff", "p/x", cutoff),      // younger than the retention: kept
		ev("young", "p/x", cutoff.Add(time.Second)),
	)
	running := runFor("r-running", "f", "old-running", old)
	running.Status = wire.RunRunning
	scheduled := runFor("r-scheduled", "g", "old-scheduled", old)
	dispatchAll(t, s, []store.Run{
		running, scheduled,
		endedRun("r-skipped", "old-finished", wire.RunSkipped, old), // skipped at dispatch
		runFor("r-late", "f", "old-finished-late", old),
	}, "old-pending")
	require.NoError(t, s.FinishRun(ctx(t), endedRun("r-late", "old-finished-late", wire.RunCompleted, cutoff.Add(time.Minute)), nil))
	// Runs of no stored event (crons, invokes) finished at various times.
	for _, r := range []store.Run{
		endedRun("r-old-failed", "", wire.RunFailed, old),
		endedRun("r-old-cancelled", "", wire.RunCancelled, old.Add(-24*time.Hour)),
		endedRun("r-at-cutoff", "", wire.RunCompleted, cutoff),
		endedRun("r-young", "", wire.RunCompleted, cutoff.Add(time.Millisecond)),
	} {
		require.NoError(t, s.FinishRun(ctx(t), r, nil))
	}
	// Batch runs: their own event is the batch's first; links list them under
	// every event of the batch.
	// The linked events here are not the runs' own events: only the link
	// keeps "old-in-batch".
	batchRunning := runFor("batch-running", "b", "elsewhere-1", old)
	batchRunning.Status = wire.RunRunning
	recordRun(t, s, batchRunning, "elsewhere-1", "old-in-batch")
	recordRun(t, s, runFor("batch-done", "b2", "elsewhere-2", old), "elsewhere-2", "old-in-done-batch", "elsewhere-3")
	require.NoError(t, s.FinishRun(ctx(t), endedRun("batch-done", "elsewhere-2", wire.RunCompleted, old), nil))
	// Bulk cancellations.
	for _, c := range []store.Cancellation{
		cancellationJob("c-old-completed", store.JobCompleted, old),
		cancellationJob("c-old-failed", store.JobFailed, old),
		cancellationJob("c-old-running", store.JobRunning, old), // still running (or to be taken over)
		cancellationJob("c-at-cutoff", store.JobCompleted, cutoff),
	} {
		require.NoError(t, s.SaveCancellation(ctx(t), c))
	}
	for _, r := range []store.Replay{
		{ID: "p-old-completed", Status: store.JobCompleted, UpdatedAt: old},
		{ID: "p-old-running", Status: store.JobRunning, UpdatedAt: old},
		{ID: "p-at-cutoff", Status: store.JobFailed, UpdatedAt: cutoff},
	} {
		r.AppID, r.FunctionID, r.From, r.To, r.CreatedAt, r.HeartbeatAt = "app", "f", old, old, old, old
		require.NoError(t, s.SaveReplay(ctx(t), r))
	}
	// Configuration, however old, is never purged.
	syncApp(t, s, "app", function("f", `{"v":1}`))
	hook := webhook("wh_old", "old")
	hook.CreatedAt, hook.UpdatedAt = old.Add(-1000*time.Hour), old.Add(-1000*time.Hour)
	require.NoError(t, s.CreateWebhook(ctx(t), hook))

	require.Equal(t, store.PurgeCounts{Events: 4, Runs: 4, RunLinks: 3, Cancellations: 2, Replays: 1}, purge(t, s, cutoff, 100))
	for id, kept := range map[string]bool{"p-old-completed": false, "p-old-running": true, "p-at-cutoff": true} {
		_, err := s.GetReplay(ctx(t), id)
		if kept {
			require.NoError(t, err, "replay %s is kept", id)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, "replay %s is purged", id)
		}
	}

	requireEvents(t, s, false, "old-done", "old-in-done-batch", "old-finished", "old-finished-late")
	requireEvents(t, s, true, "old-pending", "old-running", "old-scheduled", "old-in-batch", "at-cutoff", "young")
	requireRuns(t, s, false, "r-skipped", "r-old-failed", "r-old-cancelled", "batch-done")
	requireRuns(t, s, true, "r-running", "r-scheduled", "r-late", "r-at-cutoff", "r-young", "batch-running")
	require.Equal(t, []string{"batch-running"}, runIDs(t, s, "old-in-batch"))
	require.Equal(t, []string{"batch-running"}, runIDs(t, s, "elsewhere-1"))
	for _, id := range []string{"old-in-done-batch", "elsewhere-2", "elsewhere-3"} {
		require.Empty(t, runIDs(t, s, id), "the links of a purged run go with it")
	}
	requireCancellations(t, s, false, "c-old-completed", "c-old-failed")
	requireCancellations(t, s, true, "c-old-running", "c-at-cutoff")
	fns, err := s.ListFunctions(ctx(t))
	require.NoError(t, err)
	require.Len(t, fns, 1)
	_, err = s.GetWebhook(ctx(t), "wh_old")
	require.NoError(t, err)
	require.Equal(t, int64(1), pending(t, s), "the pending event is still pending")

	require.Zero(t, purge(t, s, cutoff, 100).Total(), "nothing else is due")

	// Once the runs end (long ago), their events and the runs go too, in
	// one call: events are checked before runs.
	require.NoError(t, s.FinishRun(ctx(t), endedRun("r-running", "old-running", wire.RunCompleted, old), nil))
	require.NoError(t, s.FinishRun(ctx(t), endedRun("batch-running", "elsewhere-1", wire.RunCancelled, old), nil))
	require.Equal(t, store.PurgeCounts{Events: 2, Runs: 2, RunLinks: 2}, purge(t, s, cutoff, 100))
	requireEvents(t, s, false, "old-running", "old-in-batch")
	requireRuns(t, s, false, "r-running", "batch-running")
	requireEvents(t, s, true, "old-scheduled", "old-pending")

	// A later cutoff takes what was younger.
	require.Equal(t, store.PurgeCounts{Events: 1, Runs: 1, Cancellations: 1, Replays: 1}, purge(t, s, cutoff.Add(time.Millisecond), 100),
		"at-cutoff, r-at-cutoff, c-at-cutoff and p-at-cutoff")
	requireEvents(t, s, false, "at-cutoff")
	requireEvents(t, s, true, "young")
	requireRuns(t, s, true, "r-young")

	_, err = s.Purge(ctx(t), cutoff, 0)
	require.ErrorIs(t, err, store.ErrPurgeBatch)
}

// Each call deletes at most batch rows per table; More says when to call
// again.
func testPurgeBatches(t *testing.T, s store.Driver) {
	old := base.Add(-time.Hour)
	var events []store.Event
	for i := range 5 {
		events = append(events, ev(fmt.Sprintf("e%d", i), "b/x", old))
	}
	insert(t, s, old.Add(-time.Hour), events...)
	dispatchAll(t, s, nil)
	for i := range 5 {
		id := fmt.Sprintf("br%d", i)
		recordRun(t, s, runFor(id, "f"+id, "", old), fmt.Sprintf("x%d-1", i), fmt.Sprintf("x%d-2", i))
		require.NoError(t, s.FinishRun(ctx(t), endedRun(id, "", wire.RunCompleted, old), nil))
	}
	for i := range 3 {
		require.NoError(t, s.SaveCancellation(ctx(t), cancellationJob(fmt.Sprintf("c%d", i), store.JobCompleted, old)))
	}
	var got []store.PurgeCounts
	var more []bool
	for range 4 {
		n := purge(t, s, base, 2)
		got, more = append(got, n), append(more, n.More(2))
	}
	require.Equal(t, []store.PurgeCounts{
		{Events: 2, Runs: 2, RunLinks: 4, Cancellations: 2},
		{Events: 2, Runs: 2, RunLinks: 4, Cancellations: 1},
		{Events: 1, Runs: 1, RunLinks: 2},
		{},
	}, got)
	require.Equal(t, []bool{true, true, false, false}, more)
}

// Replicas purging at once delete every due row once, and nothing else.
func testConcurrentPurge(t *testing.T, s store.Driver) {
	old := base.Add(-time.Hour)
	var events []store.Event
	for i := range 300 {
		events = append(events, ev(fmt.Sprintf("e%03d", i), "c/x", old))
	}
	events = append(events, ev("young", "c/x", base))
	insert(t, s, old.Add(-time.Hour), events...)
	dispatchAll(t, s, nil)
	const purgers = 4
	totals := make(chan store.PurgeCounts, purgers)
	errs := make(chan error, purgers)
	for range purgers {
		go func() {
			var sum store.PurgeCounts
			for {
				n, err := s.Purge(context.Background(), base, 10)
				if err != nil {
					errs <- err
					return
				}
				sum.Add(n)
				if !n.More(10) {
					totals <- sum
					return
				}
			}
		}()
	}
	var sum store.PurgeCounts
	for range purgers {
		select {
		case n := <-totals:
			sum.Add(n)
		case err := <-errs:
			require.NoError(t, err)
		}
	}
	// A purger that found a short batch (its peers held the rest) may stop
	// early; one more call finds what is left.
	sum.Add(purge(t, s, base, 1000))
	require.Equal(t, store.PurgeCounts{Events: 300}, sum)
	requireEvents(t, s, true, "young")
	require.Zero(t, purge(t, s, base, 1000).Total())
}
