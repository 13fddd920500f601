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

// SaveCancellation upserts a bulk cancellation.
func (d *Driver) SaveCancellation(ctx context.Context, c store.Cancellation) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO cancellations
		(id, app_id, function_id, started_after, started_before, expr, status, matched, cancelled, error, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, matched = excluded.matched,
		    cancelled = excluded.cancelled, error = excluded.error, updated_at = excluded.updated_at`,
		c.ID, c.AppID, c.FunctionID, nullTime(c.StartedAfter), nullTime(c.StartedBefore), c.Expr,
		c.Status, c.Matched, c.Cancelled, c.Error, c.CreatedAt, c.UpdatedAt)
	if err != nil {
		return wrapErr("save cancellation", err)
	}
	return nil
}

// GetCancellation reads a bulk cancellation.
func (d *Driver) GetCancellation(ctx context.Context, id string) (store.Cancellation, error) {
	var (
		c             store.Cancellation
		after, before *time.Time
	)
	err := d.pool.QueryRow(ctx, `SELECT id, app_id, function_id, started_after, started_before, expr, status,
		matched, cancelled, error, created_at, updated_at FROM cancellations WHERE id = $1`, id).
		Scan(&c.ID, &c.AppID, &c.FunctionID, &after, &before, &c.Expr, &c.Status, &c.Matched, &c.Cancelled, &c.Error, &c.CreatedAt, &c.UpdatedAt)
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
