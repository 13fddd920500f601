package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herald-run/herald/store"
)

// The retention's purge statements, one batch each. Each walks an index that
// holds only rows that may be purged (migration 008), oldest first.
// SQLite has one writer: a Purge call takes the write lock for one batch of
// each table only, so ingest waits at most that long.
const (
	// purgeEventsSQL: dispatched events received before ?1 that no
	// unfinished run references, directly or through a batch link.
	purgeEventsSQL = `
DELETE FROM events WHERE seq IN (
    SELECT e.seq FROM events e
     WHERE e.dispatched_at IS NOT NULL AND e.received_at < ?1
       AND NOT EXISTS (SELECT 1 FROM runs r
                        WHERE r.event_id = e.id AND r.status IN ('Scheduled', 'Running'))
       AND NOT EXISTS (SELECT 1 FROM run_events l JOIN runs r ON r.id = l.run_id
                        WHERE l.event_id = e.id AND r.status IN ('Scheduled', 'Running'))
     ORDER BY e.received_at
     LIMIT ?2)`

	// purgeRunsSQL: runs that finished before ?1; purgeRunLinksSQL then
	// deletes their batch links, given their ids as a JSON array.
	purgeRunsSQL = `
DELETE FROM runs WHERE rowid IN (
    SELECT rowid FROM runs
     WHERE ended_at < ?1 AND status IN ('Completed', 'Failed', 'Cancelled', 'Skipped')
     ORDER BY ended_at
     LIMIT ?2)
RETURNING id`
	purgeRunLinksSQL = `DELETE FROM run_events WHERE run_id IN (SELECT value FROM json_each(?))`

	// purgeReplaysSQL: finished replays last updated before ?1.
	purgeReplaysSQL = `
DELETE FROM replays WHERE rowid IN (
    SELECT rowid FROM replays WHERE status <> 'Running' AND updated_at < ?1
     ORDER BY updated_at
     LIMIT ?2)`

	// purgeCancellationsSQL: finished bulk cancellations last updated before ?1.
	purgeCancellationsSQL = `
DELETE FROM cancellations WHERE rowid IN (
    SELECT rowid FROM cancellations WHERE status <> 'Running' AND updated_at < ?1
     ORDER BY updated_at
     LIMIT ?2)`
)

// Purge deletes one batch of each kind of row the retention no longer keeps,
// in one transaction.
func (d *Driver) Purge(ctx context.Context, before time.Time, batch int) (store.PurgeCounts, error) {
	if batch < 1 {
		return store.PurgeCounts{}, store.ErrPurgeBatch
	}
	at := before.UnixMilli()
	var n store.PurgeCounts
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		n = store.PurgeCounts{}
		var err error
		if n.Events, err = execCount(ctx, tx, purgeEventsSQL, at, batch); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		ids, err := deleteReturningIDs(ctx, tx, purgeRunsSQL, at, batch)
		if err != nil {
			return fmt.Errorf("runs: %w", err)
		}
		if n.Runs = int64(len(ids)); len(ids) > 0 {
			list, _ := json.Marshal(ids) // a []string always marshals
			if n.RunLinks, err = execCount(ctx, tx, purgeRunLinksSQL, string(list)); err != nil {
				return fmt.Errorf("run links: %w", err)
			}
		}
		if n.Cancellations, err = execCount(ctx, tx, purgeCancellationsSQL, at, batch); err != nil {
			return fmt.Errorf("cancellations: %w", err)
		}
		if n.Replays, err = execCount(ctx, tx, purgeReplaysSQL, at, batch); err != nil {
			return fmt.Errorf("replays: %w", err)
		}
		return nil
	})
	if err != nil {
		return store.PurgeCounts{}, fmt.Errorf("sqlite: purge: %w", err)
	}
	return n, nil
}

// execCount runs a statement and returns how many rows it changed.
func execCount(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// deleteReturningIDs runs a DELETE ... RETURNING id and collects the ids.
func deleteReturningIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
