package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
)

func outboxDriver(t *testing.T) (*Driver, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d, err := Open(ctx, testdb.Schema(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(ctx))
	return d, ctx
}

func outboxEvents(prefix string, n int) []store.Event {
	events := make([]store.Event, n)
	now := time.Now()
	for i := range events {
		events[i] = store.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Name: "outbox/test", Data: []byte(`{"i":1}`), TS: now.UnixMilli(), ReceivedAt: now}
	}
	return events
}

// claimAll claims every pending event, marking all dispatched, and returns
// how many it claimed.
func claimAll(t *testing.T, ctx context.Context, d *Driver) int {
	t.Helper()
	total := 0
	for {
		n, err := d.ClaimEvents(ctx, 1000, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
			ids := make([]string, len(events))
			for i, e := range events {
				ids[i] = e.ID
			}
			return store.Claim{Dispatched: ids}, nil
		})
		require.NoError(t, err)
		if n == 0 {
			return total
		}
		total += n
	}
}

// Dispatch neither locks nor rewrites an event's row: a claim deletes the
// event's pending_events row, and the event row keeps its physical place and
// carries no locker or updater (xmax 0). So dispatch adds no dead event
// versions for vacuum and no index entries, and a client's retry of a send
// (the upsert) never waits behind a claim.
func TestClaimLeavesEventRowsAlone(t *testing.T) {
	t.Parallel()
	d, ctx := outboxDriver(t)
	events := outboxEvents("alone", 50)
	_, err := d.InsertEvents(ctx, events, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	type version struct{ ctid, xmax string }
	read := func() map[string]version {
		rows, err := d.pool.Query(ctx, `SELECT id, ctid::text, xmax::text FROM events`)
		require.NoError(t, err)
		out := map[string]version{}
		for rows.Next() {
			var id string
			var v version
			require.NoError(t, rows.Scan(&id, &v.ctid, &v.xmax))
			out[id] = v
		}
		require.NoError(t, rows.Err())
		return out
	}
	before := read()
	require.Len(t, before, 50)
	n, err := d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(50), n)

	require.Equal(t, 50, claimAll(t, ctx, d))
	after := read()
	for id, v := range before {
		require.Equal(t, v.ctid, after[id].ctid, "event %s was rewritten by its dispatch", id)
		require.Equal(t, "0", after[id].xmax, "event %s was locked or updated by its dispatch", id)
	}
	n, err = d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	e, err := d.GetEvent(ctx, "alone-7")
	require.NoError(t, err)
	require.True(t, e.Dispatched)
}

// Claims vacuum pending_events themselves every vacuumEvery rows, so the
// dead rows and index entries they leave do not pile up where autovacuum is
// off (as on the build machines' shared server).
func TestClaimsVacuumPendingEvents(t *testing.T) {
	t.Parallel()
	d, ctx := outboxDriver(t)
	vacuums := func() int64 {
		var n int64
		// The statistics of another backend's vacuum reach this one within
		// about a second; a fresh snapshot of them each time.
		require.NoError(t, pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT vacuum_count FROM pg_stat_user_tables
				WHERE relid = 'pending_events'::regclass`).Scan(&n)
		}))
		return n
	}
	start := vacuums()
	for round := range 2 {
		_, err := d.InsertEvents(ctx, outboxEvents(fmt.Sprintf("vac%d", round), vacuumEvery/2+100), time.Now().Add(-time.Hour))
		require.NoError(t, err)
		claimAll(t, ctx, d)
	}
	d.vacuums.Wait()
	require.Eventually(t, func() bool { return vacuums() > start }, 10*time.Second, 100*time.Millisecond,
		"no vacuum of pending_events after %d claimed rows", vacuumEvery+200)
}

// During a rolling upgrade a replica of the previous version writes events
// the old way: no pending_events row, dispatched_at NULL. The router claims
// them too, marks them, and keeps one it does not dispatch pending.
func TestClaimTakesEventsOfAnOlderReplica(t *testing.T) {
	t.Parallel()
	forEachClaimPlan(t, testClaimTakesEventsOfAnOlderReplica)
}

// forEachClaimPlan runs test on a driver that plans each claim and on one
// that runs them from a cached plan.
func forEachClaimPlan(t *testing.T, test func(t *testing.T, d *Driver, ctx context.Context)) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cached=%v", cached), func(t *testing.T) {
			t.Parallel()
			d, ctx := outboxDriver(t)
			if cached {
				d.claimCachePages = 0
			}
			test(t, d, ctx)
			require.Equal(t, cached, d.claimCached.Load())
		})
	}
}

func testClaimTakesEventsOfAnOlderReplica(t *testing.T, d *Driver, ctx context.Context) {
	_, err := d.pool.Exec(ctx, `INSERT INTO events (id, name, data, ts, received_at)
		VALUES ('old-a', 'outbox/old', '{}', 0, now()), ('old-b', 'outbox/old', '{}', 0, now())`)
	require.NoError(t, err)
	_, err = d.InsertEvents(ctx, outboxEvents("new", 2), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	n, err := d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	e, err := d.GetEvent(ctx, "old-a")
	require.NoError(t, err)
	require.False(t, e.Dispatched)

	var claimed []string
	_, err = d.ClaimEvents(ctx, 10, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		for _, e := range events {
			claimed = append(claimed, e.ID)
		}
		// old-b is not done: it stays pending.
		return store.Claim{Dispatched: []string{"old-a", "new-0", "new-1"}}, nil
	})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"old-a", "old-b", "new-0", "new-1"}, claimed)
	n, err = d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	for id, want := range map[string]bool{"old-a": true, "old-b": false, "new-0": true} {
		e, err := d.GetEvent(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, e.Dispatched, id)
	}
	// The next claim takes old-b, now through pending_events, and a claim
	// never takes more than its limit from the two sources together.
	_, err = d.pool.Exec(ctx, `INSERT INTO events (id, name, data, ts, received_at)
		SELECT 'old-more-' || g, 'outbox/old', '{}', 0, now() FROM generate_series(1, 5) g`)
	require.NoError(t, err)
	claimed = nil
	_, err = d.ClaimEvents(ctx, 3, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		ids := make([]string, len(events))
		for i, e := range events {
			ids[i] = e.ID
		}
		claimed = ids
		return store.Claim{Dispatched: ids}, nil
	})
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	require.Contains(t, claimed, "old-b")
	require.Equal(t, 6-3, claimAll(t, ctx, d))
}

// A pending row whose event is gone (an operator deleted or truncated
// events) never blocks the outbox: a claim drops it, passes fn only the
// events that exist, and counts the row in what it took.
func TestClaimDropsRowsWhoseEventIsGone(t *testing.T) {
	t.Parallel()
	forEachClaimPlan(t, testClaimDropsRowsWhoseEventIsGone)
}

func testClaimDropsRowsWhoseEventIsGone(t *testing.T, d *Driver, ctx context.Context) {
	_, err := d.InsertEvents(ctx, outboxEvents("gone", 6), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	_, err = d.pool.Exec(ctx, `DELETE FROM events WHERE id IN ('gone-0', 'gone-1', 'gone-2', 'gone-4')`)
	require.NoError(t, err)

	// The oldest three pending rows have no event: nothing for fn, and the
	// rows are gone.
	n, err := d.ClaimEvents(ctx, 3, func(context.Context, store.ClaimTx, []store.Event) (store.Claim, error) {
		t.Fatal("fn called without events")
		return store.Claim{}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	pending, err := d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), pending)

	var got []string
	n, err = d.ClaimEvents(ctx, 10, func(_ context.Context, _ store.ClaimTx, events []store.Event) (store.Claim, error) {
		for _, e := range events {
			got = append(got, e.ID)
			require.Equal(t, "outbox/test", e.Name)
			require.JSONEq(t, `{"i":1}`, string(e.Data))
			require.NotZero(t, e.TS)
			require.False(t, e.ReceivedAt.IsZero())
		}
		return store.Claim{Dispatched: got}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, []string{"gone-3", "gone-5"}, got)
	pending, err = d.PendingEvents(ctx)
	require.NoError(t, err)
	require.Zero(t, pending)
}
