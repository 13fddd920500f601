package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ListActiveRuns pages through a function's Scheduled and Running runs.
func (d *Driver) ListActiveRuns(ctx context.Context, appID, functionID string, after, before time.Time, afterID string, limit int) ([]store.Run, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+runColumns+` FROM runs
		WHERE app_id = $1 AND function_id = $2 AND status IN ('Scheduled', 'Running') AND id > $3
		  AND ($4::timestamptz IS NULL OR started_at > $4) AND ($5::timestamptz IS NULL OR started_at < $5)
		ORDER BY id LIMIT $6`, appID, functionID, afterID, nullTime(after), nullTime(before), limit)
	if err != nil {
		return nil, wrapErr("list active runs", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row) })
	if err != nil {
		return nil, wrapErr("list active runs", err)
	}
	return runs, nil
}

const cancellationColumns = `id, app_id, function_id, started_after, started_before, expr, status,
	matched, cancelled, error, created_at, updated_at, owner, heartbeat_at, cursor`

// SaveCancellation upserts a bulk cancellation.
func (d *Driver) SaveCancellation(ctx context.Context, c store.Cancellation) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO cancellations (`+cancellationColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, matched = excluded.matched,
		    cancelled = excluded.cancelled, error = excluded.error, updated_at = excluded.updated_at,
		    owner = excluded.owner, heartbeat_at = excluded.heartbeat_at, cursor = excluded.cursor`,
		c.ID, c.AppID, c.FunctionID, nullTime(c.StartedAfter), nullTime(c.StartedBefore), c.Expr,
		c.Status, c.Matched, c.Cancelled, c.Error, c.CreatedAt, c.UpdatedAt, c.Owner, c.HeartbeatAt, c.Cursor)
	if err != nil {
		return wrapErr("save cancellation", err)
	}
	return nil
}

// UpdateCancellation saves a running cancellation's progress if c.Owner
// still holds it.
func (d *Driver) UpdateCancellation(ctx context.Context, c store.Cancellation) error {
	tag, err := d.pool.Exec(ctx, `UPDATE cancellations
		SET status = $3, matched = $4, cancelled = $5, error = $6, cursor = $7, updated_at = $8, heartbeat_at = $9
		WHERE id = $1 AND owner = $2 AND status = 'Running'`,
		c.ID, c.Owner, c.Status, c.Matched, c.Cancelled, c.Error, c.Cursor, c.UpdatedAt, c.HeartbeatAt)
	if err != nil {
		return wrapErr("update cancellation", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// GetCancellation reads a bulk cancellation.
func (d *Driver) GetCancellation(ctx context.Context, id string) (store.Cancellation, error) {
	var (
		c             store.Cancellation
		after, before *time.Time
	)
	err := d.pool.QueryRow(ctx, `SELECT `+cancellationColumns+` FROM cancellations WHERE id = $1`, id).
		Scan(&c.ID, &c.AppID, &c.FunctionID, &after, &before, &c.Expr, &c.Status, &c.Matched, &c.Cancelled, &c.Error,
			&c.CreatedAt, &c.UpdatedAt, &c.Owner, &c.HeartbeatAt, &c.Cursor)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, wrapErr("get cancellation", err)
	}
	if after != nil {
		c.StartedAfter = *after
	}
	if before != nil {
		c.StartedBefore = *before
	}
	return c, nil
}
