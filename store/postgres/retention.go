package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

// The retention's purge statements, one batch each. Each walks an index that
// holds only rows that may be purged (migration 008), oldest first, locks
// what it picks FOR UPDATE SKIP LOCKED (rows another replica's purge, a claim
// or a re-accepted event hold are left for a later batch) and deletes those
// rows by primary key in the same statement. A batch's three statements share
// one short transaction, so it holds its row locks for milliseconds. The ORDER BY keeps the planner on the age index and
// the = ANY(ARRAY(...)) on the primary key, whatever it estimates: a generic
// plan must never scan the table.
const (
	// purgeEventsSQL: dispatched events (no pending_events row) received
	// before $1 that no unfinished run references, directly or through a
	// batch link. The lock rechecks the arrival on the row's latest version,
	// so an event re-accepted meanwhile is left alone; a claim in progress
	// has not committed its delete of the pending row, so its events still
	// count as pending. (A scalar subquery, not NOT EXISTS: the planner
	// cannot turn it into a join that reads all of pending_events, which
	// holds the whole backlog during an outage.)
	purgeEventsSQL = `
DELETE FROM events WHERE id = ANY(ARRAY(
    SELECT e.id FROM events e
     WHERE e.received_at < $1 AND e.dispatched_at IS NOT NULL
       AND (SELECT p.seq FROM pending_events p WHERE p.seq = e.seq) IS NULL
       AND NOT EXISTS (SELECT 1 FROM runs r
                        WHERE r.event_id = e.id AND r.status IN ('Scheduled', 'Running'))
       AND NOT EXISTS (SELECT 1 FROM run_events l JOIN runs r ON r.id = l.run_id
                        WHERE l.event_id = e.id AND r.status IN ('Scheduled', 'Running'))
     ORDER BY e.received_at
     LIMIT $2 FOR UPDATE OF e SKIP LOCKED))`

	// purgeRunsSQL: runs that finished before $1, and their batch links.
	purgeRunsSQL = `
WITH doomed AS (
    SELECT ARRAY(SELECT id FROM runs
                  WHERE ended_at < $1 AND status IN ` + finishedStatuses + `
                  ORDER BY ended_at
                  LIMIT $2 FOR UPDATE SKIP LOCKED) AS ids),
links AS (DELETE FROM run_events WHERE run_id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1),
gone AS (DELETE FROM runs WHERE id = ANY((SELECT ids FROM doomed)::text[]) RETURNING 1)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM links)`

	// purgeReplaysSQL: finished replays last updated before $1.
	purgeReplaysSQL = `
DELETE FROM replays WHERE id = ANY(ARRAY(
    SELECT id FROM replays
     WHERE status <> 'Running' AND updated_at < $1
     ORDER BY updated_at
     LIMIT $2 FOR UPDATE SKIP LOCKED))`

	// purgeCancellationsSQL: finished bulk cancellations last updated before $1.
	purgeCancellationsSQL = `
DELETE FROM cancellations WHERE id = ANY(ARRAY(
    SELECT id FROM cancellations
     WHERE status <> 'Running' AND updated_at < $1
     ORDER BY updated_at
     LIMIT $2 FOR UPDATE SKIP LOCKED))`
)

// purgeSettings are the purge transaction's own settings.
//
// It commits asynchronously: it does not wait for its WAL to reach the
// disk, so ingest's commits, which do, never queue behind the purge's
// flushes. A purge lost in a crash is redone by the next round.
//
// It compiles nothing (JIT). The statements walk indexes and stop at a
// batch, but the planner prices the events statement by every row older
// than the cutoff that its filters might reject, past jit_above_cost (on by
// default since PostgreSQL 12) once the table holds a few hundred thousand
// events. A stock server then spent 130-250 ms compiling it, each
// housekeeping round on each replica, to run it in a tenth of a
// millisecond.
const purgeSettings = `SET LOCAL synchronous_commit = off; SET LOCAL jit = off`

// Purge deletes one batch of each kind of row the retention no longer keeps,
// in one short transaction with purgeSettings.
func (d *Driver) Purge(ctx context.Context, before time.Time, batch int) (store.PurgeCounts, error) {
	if batch < 1 {
		return store.PurgeCounts{}, store.ErrPurgeBatch
	}
	var n store.PurgeCounts
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		n = store.PurgeCounts{}
		if _, err := tx.Exec(ctx, purgeSettings); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, purgeEventsSQL, before, batch)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		n.Events = tag.RowsAffected()
		if err := tx.QueryRow(ctx, purgeRunsSQL, before, batch).Scan(&n.Runs, &n.RunLinks); err != nil {
			return fmt.Errorf("runs: %w", err)
		}
		tag, err = tx.Exec(ctx, purgeCancellationsSQL, before, batch)
		if err != nil {
			return fmt.Errorf("cancellations: %w", err)
		}
		n.Cancellations = tag.RowsAffected()
		tag, err = tx.Exec(ctx, purgeReplaysSQL, before, batch)
		if err != nil {
			return fmt.Errorf("replays: %w", err)
		}
		n.Replays = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return store.PurgeCounts{}, wrapErr("purge", err)
	}
	return n, nil
}
