package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// The Dispatcher part of the suite: apps and functions, claiming events, runs.

func function(id, config string) store.Function {
	return store.Function{ID: id, Config: json.RawMessage(config)}
}

func syncApp(t *testing.T, s store.Driver, app string, fns ...store.Function) store.SyncResult {
	t.Helper()
	res, err := s.SyncApp(ctx(t), store.App{ID: app, TaskQueue: app + "-queue"}, fns)
	require.NoError(t, err)
	return res
}

// functions returns the stored functions as "app/id@version".
func storedFunctions(t *testing.T, s store.Driver) []string {
	t.Helper()
	fns, err := s.ListFunctions(ctx(t))
	require.NoError(t, err)
	out := []string{}
	for _, f := range fns {
		out = append(out, fmt.Sprintf("%s/%s@%d", f.AppID, f.ID, f.Version))
	}
	return out
}

func previousIDs(res store.SyncResult) []string {
	out := []string{}
	for _, f := range res.Previous {
		out = append(out, fmt.Sprintf("%s/%s@%d", f.AppID, f.ID, f.Version))
	}
	return out
}

func testSyncApp(t *testing.T, s store.Driver) {
	res := syncApp(t, s, "shop", function("b", `{"x":1}`), function("a", `{"n":1.50,"k":["v"]}`))
	require.Equal(t, []string{"a", "b"}, res.Created)
	require.Empty(t, res.Updated)
	require.Empty(t, res.Removed)
	require.Empty(t, res.Previous, "a new app has no previous functions")
	require.Equal(t, []string{"shop/a@1", "shop/b@1"}, storedFunctions(t, s))

	before, err := s.ListFunctions(ctx(t))
	require.NoError(t, err)
	require.JSONEq(t, `{"n":1.5,"k":["v"]}`, string(before[0].Config))
	require.False(t, before[0].UpdatedAt.IsZero())

	// a: same value, other key order, spacing and number form; b changes; c is new.
	res = syncApp(t, s, "shop", function("a", `{ "k" : ["v"], "n": 1.5 }`), function("b", `{"x":2}`), function("c", `{}`))
	require.Equal(t, []string{"c"}, res.Created)
	require.Equal(t, []string{"b"}, res.Updated, "only a changed config bumps the version")
	require.Empty(t, res.Removed)
	require.Equal(t, []string{"shop/a@1", "shop/b@1"}, previousIDs(res))
	require.JSONEq(t, `{"x":1}`, string(res.Previous[1].Config), "previous holds the config before the sync")
	require.Equal(t, []string{"shop/a@1", "shop/b@2", "shop/c@1"}, storedFunctions(t, s))

	after, err := s.ListFunctions(ctx(t))
	require.NoError(t, err)
	require.True(t, before[0].UpdatedAt.Equal(after[0].UpdatedAt), "an unchanged function is not touched")
	require.JSONEq(t, `{"x":2}`, string(after[1].Config))

	// Unchanged: nothing happens.
	res = syncApp(t, s, "shop", function("a", `{"k":["v"],"n":1.5}`), function("b", `{"x":2}`), function("c", `{}`))
	require.Empty(t, res.Created)
	require.Empty(t, res.Updated)
	require.Empty(t, res.Removed)
	require.Len(t, res.Previous, 3)

	// b changes again, a and c go away.
	res = syncApp(t, s, "shop", function("b", `{"x":3}`))
	require.Equal(t, []string{"b"}, res.Updated)
	require.Equal(t, []string{"a", "c"}, res.Removed)
	require.Equal(t, []string{"shop/b@3"}, storedFunctions(t, s))

	// A removed function that comes back starts over at version 1.
	res = syncApp(t, s, "shop", function("a", `{}`), function("b", `{"x":3}`))
	require.Equal(t, []string{"a"}, res.Created)
	require.Equal(t, []string{"shop/a@1", "shop/b@3"}, storedFunctions(t, s))

	res = syncApp(t, s, "shop")
	require.Equal(t, []string{"a", "b"}, res.Removed, "syncing no functions removes them all")
	require.Empty(t, storedFunctions(t, s))

	apps, err := s.ListApps(ctx(t))
	require.NoError(t, err)
	require.Len(t, apps, 1)
	require.Equal(t, "shop", apps[0].ID)
	require.Equal(t, "shop-queue", apps[0].TaskQueue)
	require.False(t, apps[0].SyncedAt.IsZero())
}

func testSyncAppUpdatesApp(t *testing.T, s store.Driver) {
	_, err := s.SyncApp(ctx(t), store.App{ID: "a", TaskQueue: "q1"}, []store.Function{function("f", `{}`)})
	require.NoError(t, err)
	_, err = s.SyncApp(ctx(t), store.App{ID: "a", TaskQueue: "q2"}, []store.Function{function("f", `{}`)})
	require.NoError(t, err)
	apps, err := s.ListApps(ctx(t))
	require.NoError(t, err)
	require.Len(t, apps, 1)
	require.Equal(t, "q2", apps[0].TaskQueue)

	_, err = s.SyncApp(ctx(t), store.App{ID: "a", TaskQueue: "q2"}, []store.Function{function("f", `{}`), function("f", `{"x":1}`)})
	require.Error(t, err, "a function named twice is refused")
	require.Equal(t, []string{"a/f@1"}, storedFunctions(t, s), "a refused sync changes nothing")
}

func testSyncAppsIsolated(t *testing.T, s store.Driver) {
	syncApp(t, s, "b", function("z", `{}`), function("a", `{}`))
	syncApp(t, s, "a", function("m", `{}`), function("a", `{}`))
	require.Equal(t, []string{"a/a@1", "a/m@1", "b/a@1", "b/z@1"}, storedFunctions(t, s), "ordered by app, then id")

	res := syncApp(t, s, "a", function("a", `{"changed":true}`))
	require.Equal(t, []string{"a"}, res.Updated)
	require.Equal(t, []string{"m"}, res.Removed)
	require.Equal(t, []string{"a/a@1", "a/m@1"}, previousIDs(res), "previous holds only this app's functions")
	require.Equal(t, []string{"a/a@2", "b/a@1", "b/z@1"}, storedFunctions(t, s), "another app's functions are untouched")

	syncApp(t, s, "b")
	require.Equal(t, []string{"a/a@2"}, storedFunctions(t, s))

	apps, err := s.ListApps(ctx(t))
	require.NoError(t, err)
	require.Len(t, apps, 2)
	require.Equal(t, "a", apps[0].ID)
	require.Equal(t, "b", apps[1].ID)
}

// runFor is the run a router would record for event e and function fnID.
func runFor(runID, fnID, eventID string, started time.Time) store.Run {
	return store.Run{
		ID: runID, AppID: "app", FunctionID: fnID, EventID: eventID,
		WorkflowID: "app/" + fnID + "/" + eventID, Status: wire.RunScheduled, StartedAt: started,
	}
}

// claimAll is a claim function that records one run of function "f" for every
// event and dispatches them all.
func claimAll(runPrefix string) func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
	return func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		var c store.Claim
		for _, e := range events {
			c.Runs = append(c.Runs, runFor(runPrefix+e.ID, "f", e.ID, base))
			c.Dispatched = append(c.Dispatched, e.ID)
		}
		return c, nil
	}
}

func pending(t *testing.T, s store.Driver) int64 {
	t.Helper()
	n, err := s.PendingEvents(ctx(t))
	require.NoError(t, err)
	return n
}

func eventIDs(events []store.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func runIDs(t *testing.T, s store.Driver, eventID string) []string {
	t.Helper()
	runs, err := s.ListRunsByEvent(ctx(t), eventID)
	require.NoError(t, err)
	out := []string{}
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func insertSeries(t *testing.T, s store.Driver, n int) {
	t.Helper()
	for i := range n {
		e := ev(fmt.Sprintf("c%03d", i), "claim/x", base.Add(time.Duration(i)*time.Second))
		e.V = "v1"
		insert(t, s, base.Add(-time.Hour), e)
	}
}

func testClaimOldestFirst(t *testing.T, s store.Driver) {
	insertSeries(t, s, 5)
	require.EqualValues(t, 5, pending(t, s))

	var got []store.Event
	n, err := s.ClaimEvents(ctx(t), 3, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got = events
		return claimAll("r-")(c, tx, events)
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, []string{"c000", "c001", "c002"}, eventIDs(got))
	e := got[1]
	require.Equal(t, "claim/x", e.Name)
	require.JSONEq(t, `{"id":"c001","n":1}`, string(e.Data))
	require.Equal(t, base.Add(time.Second).UnixMilli(), e.TS)
	require.Equal(t, "v1", e.V)
	require.True(t, base.Add(time.Second).Equal(e.ReceivedAt))
	require.False(t, e.Dispatched)

	require.EqualValues(t, 2, pending(t, s))
	stored, err := s.GetEvent(ctx(t), "c000")
	require.NoError(t, err)
	require.True(t, stored.Dispatched, "a dispatched event is marked")
	run, err := s.GetRun(ctx(t), "r-c000")
	require.NoError(t, err)
	require.Equal(t, store.Run{
		ID: "r-c000", AppID: "app", FunctionID: "f", EventID: "c000", WorkflowID: "app/f/c000",
		Status: wire.RunScheduled, StartedAt: run.StartedAt,
	}, run)
	require.True(t, base.Equal(run.StartedAt))

	n, err = s.ClaimEvents(ctx(t), 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got = events
		return claimAll("r-")(c, tx, events)
	})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{"c003", "c004"}, eventIDs(got))
	require.Zero(t, pending(t, s))

	_, err = s.ClaimEvents(ctx(t), 0, claimAll("r-"))
	require.ErrorIs(t, err, store.ErrClaimLimit)
}

func testClaimEmpty(t *testing.T, s store.Driver) {
	n, err := s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		require.FailNow(t, "fn called with no pending events")
		return store.Claim{}, nil
	})
	require.NoError(t, err)
	require.Zero(t, n)

	insertSeries(t, s, 1)
	_, err = s.ClaimEvents(ctx(t), 10, claimAll("r-"))
	require.NoError(t, err)
	n, err = s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		require.FailNow(t, "fn called with only dispatched events")
		return store.Claim{}, nil
	})
	require.NoError(t, err)
	require.Zero(t, n)
}

func testClaimFnError(t *testing.T, s store.Driver) {
	insertSeries(t, s, 3)
	boom := errors.New("temporal is down")
	n, err := s.ClaimEvents(ctx(t), 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		claim, _ := claimAll("r-")(c, tx, events)
		return claim, boom
	})
	require.ErrorIs(t, err, boom)
	require.Zero(t, n)
	require.EqualValues(t, 3, pending(t, s), "events stay pending when fn fails")
	require.Empty(t, runIDs(t, s, "c000"), "no run is recorded when fn fails")
	_, err = s.GetRun(ctx(t), "r-c000")
	require.ErrorIs(t, err, store.ErrNotFound)

	var got []store.Event
	n, err = s.ClaimEvents(ctx(t), 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got = events
		return claimAll("r-")(c, tx, events)
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, []string{"c000", "c001", "c002"}, eventIDs(got), "the failed batch is claimed again")
}

func testClaimPartial(t *testing.T, s store.Driver) {
	insertSeries(t, s, 4)
	n, err := s.ClaimEvents(ctx(t), 3, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		// c001 is done, c000 and c002 are not; ids outside the batch are ignored.
		return store.Claim{
			Runs:       []store.Run{runFor("r1", "f", "c001", base)},
			Dispatched: []string{"c001", "c003", "nope"},
		}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.EqualValues(t, 3, pending(t, s))
	for id, done := range map[string]bool{"c000": false, "c001": true, "c002": false, "c003": false} {
		e, err := s.GetEvent(ctx(t), id)
		require.NoError(t, err)
		require.Equal(t, done, e.Dispatched, id)
	}

	var got []store.Event
	_, err = s.ClaimEvents(ctx(t), 10, func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		got = events
		return store.Claim{}, nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"c000", "c002", "c003"}, eventIDs(got))
}

func testClaimDuplicateRun(t *testing.T, s store.Driver) {
	insertSeries(t, s, 1)
	// First pass: a run for f is recorded but the event is not done (say a
	// second function's start failed).
	_, err := s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		return store.Claim{Runs: []store.Run{runFor("first", "f", "c000", base)}}, nil
	})
	require.NoError(t, err)

	// Second pass: the router starts f again under a new run id (ignored), and
	// g twice in one batch (the second ignored).
	_, err = s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		return store.Claim{
			Runs: []store.Run{
				runFor("second", "f", "c000", base.Add(time.Second)),
				runFor("g1", "g", "c000", base.Add(time.Second)),
				runFor("g2", "g", "c000", base.Add(time.Second)),
			},
			Dispatched: []string{"c000"},
		}, nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"first", "g1"}, runIDs(t, s, "c000"))
	_, err = s.GetRun(ctx(t), "second")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, pending(t, s))
}

// An event id accepted again after the dedupe window is pending again, but
// its function does not run a second time for it.
func testRedispatchAfterRearm(t *testing.T, s store.Driver) {
	insert(t, s, base.Add(-time.Hour), ev("again", "r/x", base))
	n, err := s.ClaimEvents(ctx(t), 10, claimAll("one-"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, pending(t, s))

	later := base.Add(48 * time.Hour)
	require.Equal(t, []bool{true}, insert(t, s, later.Add(-24*time.Hour), ev("again", "r/x", later)))
	require.EqualValues(t, 1, pending(t, s), "the re-accepted event is pending again")

	n, err = s.ClaimEvents(ctx(t), 10, claimAll("two-"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, pending(t, s))
	require.Equal(t, []string{"one-again"}, runIDs(t, s, "again"))
}

// Claimers running at once never share an event: each event is in exactly
// one successful claim.
func testConcurrentClaims(t *testing.T, s store.Driver) {
	const events, claimers = 200, 4
	batch := make([]store.Event, events)
	for i := range batch {
		batch[i] = ev(fmt.Sprintf("cc%03d", i), "cc/x", base.Add(time.Duration(i)*time.Millisecond))
	}
	insert(t, s, base.Add(-time.Hour), batch...)

	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, claimers)
	)
	record := func(c context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error) {
		mu.Lock()
		for _, e := range events {
			claimed[e.ID]++
		}
		mu.Unlock()
		time.Sleep(time.Millisecond) // hold the claim while others try
		return claimAll("run-")(c, tx, events)
	}
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.ClaimEvents(context.Background(), 7, record)
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// A claimer stops when the rest is locked by others; those commit their
	// batches, so nothing may be left.
	require.Zero(t, pending(t, s))
	require.Len(t, claimed, events)
	for id, n := range claimed {
		require.Equal(t, 1, n, "event %s claimed %d times", id, n)
		require.Equal(t, []string{"run-" + id}, runIDs(t, s, id))
	}
}

func testGetAndListRuns(t *testing.T, s store.Driver) {
	_, err := s.GetRun(ctx(t), "missing")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Empty(t, runIDs(t, s, "e1"))

	insert(t, s, base.Add(-time.Hour), ev("e1", "l/x", base))
	_, err = s.ClaimEvents(ctx(t), 10, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		ended := base.Add(time.Minute)
		skipped := runFor("b", "skipped", "e1", base.Add(time.Second))
		skipped.Status, skipped.Error, skipped.EndedAt = wire.RunSkipped, "rate limited", &ended
		return store.Claim{Runs: []store.Run{
			runFor("c", "late", "e1", base.Add(2*time.Second)),
			skipped,
			runFor("z", "first", "e1", base),
			runFor("a", "tie", "e1", base.Add(time.Second)),
			runFor("other", "f", "e2", base),
		}}, nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"z", "a", "b", "c"}, runIDs(t, s, "e1"), "oldest first, then by id")

	r, err := s.GetRun(ctx(t), "b")
	require.NoError(t, err)
	require.Equal(t, wire.RunSkipped, r.Status)
	require.Equal(t, "rate limited", r.Error)
	require.Nil(t, r.Output)
	require.NotNil(t, r.EndedAt)
	require.True(t, base.Add(time.Minute).Equal(*r.EndedAt))
}

func finished(id, status string, output string, ended time.Time) store.Run {
	r := runFor(id, "f", "e1", base)
	r.Status, r.EndedAt = status, &ended
	if output != "" {
		r.Output = json.RawMessage(output)
	}
	return r
}

func systemEvent(id, name string) *store.Event {
	e := ev(id, name, base.Add(time.Hour))
	return &e
}

func testFinishRun(t *testing.T, s store.Driver) {
	insert(t, s, base.Add(-time.Hour), ev("e1", "shop/order", base))
	_, err := s.ClaimEvents(ctx(t), 10, claimAll("run-"))
	require.NoError(t, err)

	done := finished("run-e1", wire.RunCompleted, `{"total":42,"items":["a"]}`, base.Add(time.Minute))
	done.StartedAt = base.Add(time.Hour) // not what FinishRun records for an existing run
	require.NoError(t, s.FinishRun(ctx(t), done, systemEvent("sys-1", "herald/function.finished")))

	r, err := s.GetRun(ctx(t), "run-e1")
	require.NoError(t, err)
	require.Equal(t, wire.RunCompleted, r.Status)
	require.JSONEq(t, `{"total":42,"items":["a"]}`, string(r.Output))
	require.Empty(t, r.Error)
	require.True(t, base.Equal(r.StartedAt), "started_at stays as recorded")
	require.NotNil(t, r.EndedAt)
	require.True(t, base.Add(time.Minute).Equal(*r.EndedAt))
	require.Equal(t, "app/f/e1", r.WorkflowID)

	sys, err := s.GetEvent(ctx(t), "sys-1")
	require.NoError(t, err)
	require.Equal(t, "herald/function.finished", sys.Name)
	require.False(t, sys.Dispatched, "the system event is pending for the router")

	// Finishing again (a retried report, or a late cancel) changes nothing.
	again := finished("run-e1", wire.RunFailed, "", base.Add(2*time.Minute))
	again.Error = "late"
	require.NoError(t, s.FinishRun(ctx(t), again, systemEvent("sys-2", "herald/function.failed")))
	r2, err := s.GetRun(ctx(t), "run-e1")
	require.NoError(t, err)
	require.Equal(t, r.Status, r2.Status)
	require.Empty(t, r2.Error)
	require.True(t, r.EndedAt.Equal(*r2.EndedAt))
	_, err = s.GetEvent(ctx(t), "sys-2")
	require.ErrorIs(t, err, store.ErrNotFound, "a finished run stores no second system event")

	// A system event whose id is stored already is not stored twice.
	insert(t, s, base.Add(-time.Hour), ev("e2", "shop/order", base))
	_, err = s.ClaimEvents(ctx(t), 10, claimAll("run-"))
	require.NoError(t, err)
	dup := systemEvent("sys-1", "herald/changed")
	f2 := finished("run-e2", wire.RunFailed, "", base.Add(time.Minute))
	f2.EventID, f2.Error = "e2", "boom"
	require.NoError(t, s.FinishRun(ctx(t), f2, dup))
	sys, err = s.GetEvent(ctx(t), "sys-1")
	require.NoError(t, err)
	require.Equal(t, "herald/function.finished", sys.Name)
	r, err = s.GetRun(ctx(t), "run-e2")
	require.NoError(t, err)
	require.Equal(t, wire.RunFailed, r.Status)
	require.Equal(t, "boom", r.Error)
	require.Nil(t, r.Output)

	require.Error(t, s.FinishRun(ctx(t), finished("run-x", wire.RunRunning, "", base), nil),
		"a status that is not final is refused")
}

func testFinishUnknownRun(t *testing.T, s store.Driver) {
	// An invoked run: Herald has no row for it, but it has an event.
	invoked := finished("temporal-run-1", wire.RunCompleted, `"ok"`, base.Add(time.Minute))
	invoked.EventID = "invoke-event"
	invoked.StartedAt = base.Add(time.Second)
	require.NoError(t, s.FinishRun(ctx(t), invoked, nil))
	r, err := s.GetRun(ctx(t), "temporal-run-1")
	require.NoError(t, err)
	require.Equal(t, "invoke-event", r.EventID)
	require.Equal(t, wire.RunCompleted, r.Status)
	require.JSONEq(t, `"ok"`, string(r.Output))
	require.True(t, base.Add(time.Second).Equal(r.StartedAt))
	require.Equal(t, []string{"temporal-run-1"}, runIDs(t, s, "invoke-event"))

	// Cron runs have no event; each one is its own run.
	for _, id := range []string{"cron-1", "cron-2"} {
		cron := finished(id, wire.RunCompleted, "", base.Add(time.Minute))
		cron.EventID = ""
		cron.EndedAt = nil // now
		require.NoError(t, s.FinishRun(ctx(t), cron, systemEvent("sys-"+id, "herald/function.finished")))
		r, err := s.GetRun(ctx(t), id)
		require.NoError(t, err)
		require.Empty(t, r.EventID)
		require.NotNil(t, r.EndedAt)
		_, err = s.GetEvent(ctx(t), "sys-"+id)
		require.NoError(t, err)
	}

	// A report under another run id for an (app, function, event) that has a
	// run finishes that run, once.
	insert(t, s, base.Add(-time.Hour), ev("e1", "x/y", base))
	_, err = s.ClaimEvents(ctx(t), 10, claimAll("herald-"))
	require.NoError(t, err)
	require.NoError(t, s.FinishRun(ctx(t), finished("temporal-id", wire.RunCancelled, "", base.Add(time.Minute)), systemEvent("s1", "herald/function.cancelled")))
	require.Equal(t, []string{"herald-e1"}, runIDs(t, s, "e1"))
	r, err = s.GetRun(ctx(t), "herald-e1")
	require.NoError(t, err)
	require.Equal(t, wire.RunCancelled, r.Status)
	_, err = s.GetEvent(ctx(t), "s1")
	require.NoError(t, err)

	require.NoError(t, s.FinishRun(ctx(t), finished("temporal-id-2", wire.RunCompleted, "", base.Add(time.Minute)), systemEvent("s2", "herald/function.finished")))
	r, err = s.GetRun(ctx(t), "herald-e1")
	require.NoError(t, err)
	require.Equal(t, wire.RunCancelled, r.Status)
	_, err = s.GetEvent(ctx(t), "s2")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetRun(ctx(t), "temporal-id-2")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// Concurrent reports of one run's outcome record it once and store one
// system event.
func testConcurrentFinish(t *testing.T, s store.Driver) {
	const reporters = 6
	var wg sync.WaitGroup
	errs := make(chan error, reporters)
	for i := range reporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cron := finished("cron", wire.RunCompleted, fmt.Sprintf(`{"by":%d}`, i), base.Add(time.Minute))
			cron.EventID = ""
			errs <- s.FinishRun(context.Background(), cron, systemEvent(fmt.Sprintf("sys-%d", i), "herald/function.finished"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	sys := listAll(t, s, store.EventFilter{Name: "herald/function.finished"})
	require.Len(t, sys, 1, "one outcome, one system event")
	r, err := s.GetRun(ctx(t), "cron")
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"by":%s}`, sys[0][len("sys-"):]), string(r.Output), "the stored outcome is the one whose event was stored")
}

// Postgres cannot store \u0000 in jsonb; then nothing is stored and the error
// says it was the data.
func testFinishRunInvalidOutput(t *testing.T, s store.Driver) {
	r := finished("nul", wire.RunCompleted, `{"s":"\u0000"}`, base.Add(time.Minute))
	err := s.FinishRun(ctx(t), r, systemEvent("sys-nul", "herald/function.finished"))
	if err != nil {
		require.ErrorIs(t, err, store.ErrInvalidData)
		_, err := s.GetEvent(ctx(t), "sys-nul")
		require.ErrorIs(t, err, store.ErrNotFound, "a failed call stores nothing")
		_, err = s.GetRun(ctx(t), "nul")
		require.ErrorIs(t, err, store.ErrNotFound)
		return
	}
	_, err = s.GetRun(ctx(t), "nul")
	require.NoError(t, err)
}
