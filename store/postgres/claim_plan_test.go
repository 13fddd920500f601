package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A driver plans each claim until events reaches claimCachePages, and from
// then on runs it from a generic plan made for a table that size, which
// walks the indexes: also when the table's statistics still say it is
// empty (analyzed before it filled; autovacuum off, as on the build
// machines' server), and after it is analyzed.
func TestClaimPlanWalksIndexes(t *testing.T) {
	t.Parallel()
	d, ctx := outboxDriver(t)
	analyze := func() {
		for _, table := range []string{"events", "pending_events", "wait_paths"} {
			_, err := d.pool.Exec(ctx, `ANALYZE `+table)
			require.NoError(t, err)
		}
	}
	recheck := func() bool {
		d.claimSizeAt.Store(0) // the size check is due
		return d.claimPlanCached(ctx)
	}

	analyze()
	require.False(t, recheck(), "an empty events table: claims are planned on each call")

	// Past the size, with a backlog of pending events and most of the
	// history dispatched.
	_, err := d.pool.Exec(ctx, `
WITH e AS (INSERT INTO events (id, name, data, ts, received_at, dispatched_at)
           SELECT 'plan-' || g, 'app/e' || (g % 7), '{"user":{"id":"u_12345","email":"someone@example.com"},"amount":4200}',
                  0, now(), '-infinity'
             FROM generate_series(1, 60000) g
           RETURNING seq)
INSERT INTO pending_events (seq) SELECT seq FROM e WHERE seq % 10 = 0`)
	require.NoError(t, err)
	var pages int64
	require.NoError(t, d.pool.QueryRow(ctx, `SELECT pg_relation_size('events') / current_setting('block_size')::bigint`).Scan(&pages))
	require.GreaterOrEqual(t, pages, d.claimCachePages, "the test's events must fill the table past the size")
	require.True(t, recheck(), "events holds %d pages: claims run from a cached plan", pages)
	require.True(t, d.claimPlanCached(ctx), "and keep doing so")

	explain := func() string {
		tx, err := d.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		for _, s := range claimPlanSettings {
			_, err := tx.Exec(ctx, s)
			require.NoError(t, err)
		}
		_, err = tx.Exec(ctx, `PREPARE explain_claim (int) AS `+claimEventsSQL)
		require.NoError(t, err)
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE explain_claim (100)`, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `DEALLOCATE explain_claim`) // prepared statements outlive transactions
		require.NoError(t, err)
		return strings.Join(lines, "\n")
	}
	check := func(when string) {
		t.Helper()
		plan := explain()
		require.NotContains(t, plan, "Seq Scan", "%s:\n%s", when, plan)
		require.NotContains(t, plan, "events_name_seq_idx", "%s:\n%s", when, plan)
		for _, idx := range []string{"pending_events_pkey", "events_seq_idx", "events_pending_idx"} {
			require.Contains(t, plan, idx, "%s:\n%s", when, plan)
		}
	}
	check("statistics of the empty table")
	analyze()
	check("statistics of the full table")
}
