package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/testdb"
)

// The purge statements walk their age indexes and delete by primary key, in
// the custom plans and in the generic plan a prepared statement switches to:
// a batch never scans events or runs, however large. (How the events purge
// checks for unfinished runs is the planner's choice: at this size it may
// hash the few batch links rather than probe them.)
func TestPurgeUsesIndexes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Open(ctx, testdb.Schema(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(ctx))
	// 20,000 events and runs a second apart, 5% of them older than the
	// cutoff; ids in no particular order; some runs unfinished, some linked.
	for _, q := range []string{
		`INSERT INTO events (id, name, data, ts, received_at, dispatched_at)
		 SELECT md5(g::text), 'n/' || (g % 50), '{}', 0, now() - g * interval '1 second', '-infinity'
		   FROM generate_series(1, 20000) g`,
		`INSERT INTO pending_events (seq)
		 SELECT e.seq FROM generate_series(4, 20000, 4) g JOIN events e ON e.id = md5(g::text)`,
		`INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, started_at, ended_at)
		 SELECT 'r' || g, 'a', 'f', md5(g::text), 'wf' || g,
		        CASE WHEN g % 10 = 0 THEN 'Running' ELSE 'Completed' END, now() - g * interval '1 second',
		        CASE WHEN g % 10 = 0 THEN NULL ELSE now() - g * interval '1 second' END
		   FROM generate_series(1, 20000) g`,
		`INSERT INTO run_events (run_id, event_id) SELECT 'r' || g, 'x' || g FROM generate_series(1, 20000, 7) g`,
		`INSERT INTO replays (id, app_id, function_id, from_at, to_at, status, created_at, updated_at, heartbeat_at)
		 SELECT 'p' || g, 'a', 'f', now(), now(), CASE WHEN g % 10 = 0 THEN 'Running' ELSE 'Completed' END,
		        now() - g * interval '1 minute', now() - g * interval '1 minute', now() - g * interval '1 minute'
		   FROM generate_series(1, 20000) g`,
		`INSERT INTO cancellations (id, app_id, function_id, status, created_at, updated_at, heartbeat_at)
		 SELECT 'c' || g, 'a', 'f', CASE WHEN g % 10 = 0 THEN 'Running' ELSE 'Completed' END,
		        now() - g * interval '1 minute', now() - g * interval '1 minute', now() - g * interval '1 minute'
		   FROM generate_series(1, 20000) g`,
		`ANALYZE`,
	} {
		_, err := d.pool.Exec(ctx, q)
		require.NoError(t, err)
	}
	cutoff := time.Now().Add(-19000 * time.Second)
	for name, c := range map[string]struct {
		sql      string
		want     []string
		scanless []string
	}{
		"events":        {purgeEventsSQL, []string{"events_received_idx", "events_pkey", "pending_events_pkey"}, []string{"events", "runs", "pending_events"}},
		"runs":          {purgeRunsSQL, []string{"runs_ended_idx", "runs_pkey", "run_events_run_idx"}, []string{"runs", "run_events"}},
		"cancellations": {purgeCancellationsSQL, []string{"cancellations_finished_idx", "cancellations_pkey"}, []string{"cancellations"}},
		"replays":       {purgeReplaysSQL, []string{"replays_finished_idx", "replays_pkey"}, []string{"replays"}},
	} {
		for _, mode := range []string{"auto", "force_generic_plan"} {
			plan := explainPurge(t, ctx, d, mode, c.sql, cutoff)
			for _, w := range c.want {
				require.Contains(t, plan, w, "%s, %s:\n%s", name, mode, plan)
			}
			for _, table := range c.scanless {
				require.NotContains(t, plan, "Seq Scan on "+table+" ", "%s, %s:\n%s", name, mode, plan)
			}
		}
	}
}

// The purge's transaction compiles nothing, even where PostgreSQL would
// compile every statement (jit_above_cost 0), on servers with JIT.
func TestPurgeCompilesNothing(t *testing.T) {
	t.Parallel()
	d, ctx := outboxDriver(t)
	var available bool
	require.NoError(t, d.pool.QueryRow(ctx, `SELECT pg_jit_available()`).Scan(&available))
	if !available {
		t.Skip("this PostgreSQL has no JIT")
	}
	explain := func(settings string) string {
		var lines []string
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL jit = on; SET LOCAL jit_above_cost = 0`); err != nil {
				return err
			}
			if settings != "" {
				if _, err := tx.Exec(ctx, settings); err != nil {
					return err
				}
			}
			rows, err := tx.Query(ctx, `EXPLAIN (ANALYZE) `+purgeEventsSQL, time.Now().Add(-48*time.Hour), 1000)
			if err != nil {
				return err
			}
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		require.NoError(t, err)
		return strings.Join(lines, "\n")
	}
	// The check can fail: without the settings, the same statement compiles.
	require.Contains(t, explain(""), "JIT:")
	require.NotContains(t, explain(purgeSettings), "JIT:")
}

// explainPurge returns the plan of one purge statement, prepared as pgx
// prepares it, with a 1,000-row batch.
func explainPurge(t *testing.T, ctx context.Context, d *Driver, mode, sql string, cutoff time.Time) string {
	t.Helper()
	var lines []string
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('plan_cache_mode', $1, true)`, mode); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `PREPARE explain_purge (timestamptz, int) AS `+sql); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) EXECUTE explain_purge ($1, $2)`, pgx.QueryExecModeSimpleProtocol, cutoff, 1000)
		if err != nil {
			return err
		}
		if lines, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DEALLOCATE explain_purge`)
		return err
	})
	require.NoError(t, err)
	return fmt.Sprintln(strings.Join(lines, "\n"))
}
