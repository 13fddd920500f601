package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/herald-run/herald/store"
)

func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// ListActiveRuns pages through a function's Scheduled and Running runs.
func (d *Driver) ListActiveRuns(ctx context.Context, appID, functionID string, after, before time.Time, afterID string, limit int) ([]store.Run, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE app_id = ? AND function_id = ? AND status IN ('Scheduled', 'Running') AND id > ?
		  AND (?4 IS NULL OR started_at > ?4) AND (?5 IS NULL OR started_at < ?5)
		ORDER BY id LIMIT ?6`, appID, functionID, afterID, nullMillis(after), nullMillis(before), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list active runs: %w", err)
	}
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list active runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const cancellationColumns = `id, app_id, function_id, started_after, started_before, expr, status,
	matched, cancelled, error, created_at, updated_at, owner, heartbeat_at, cursor`

// SaveCancellation upserts a bulk cancellation.
func (d *Driver) SaveCancellation(ctx context.Context, c store.Cancellation) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO cancellations (`+cancellationColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, matched = excluded.matched,
		    cancelled = excluded.cancelled, error = excluded.error, updated_at = excluded.updated_at,
		    owner = excluded.owner, heartbeat_at = excluded.heartbeat_at, cursor = excluded.cursor`,
		c.ID, c.AppID, c.FunctionID, nullMillis(c.StartedAfter), nullMillis(c.StartedBefore), c.Expr,
		c.Status, c.Matched, c.Cancelled, c.Error, c.CreatedAt.UnixMilli(), c.UpdatedAt.UnixMilli(),
		c.Owner, c.HeartbeatAt.UnixMilli(), c.Cursor)
	if err != nil {
		return fmt.Errorf("sqlite: save cancellation: %w", err)
	}
	return nil
}

// UpdateCancellation saves a running cancellation's progress if c.Owner
// still holds it.
func (d *Driver) UpdateCancellation(ctx context.Context, c store.Cancellation) error {
	res, err := d.db.ExecContext(ctx, `UPDATE cancellations
		SET status = ?, matched = ?, cancelled = ?, error = ?, cursor = ?, updated_at = ?, heartbeat_at = ?
		WHERE id = ? AND owner = ? AND status = 'Running'`,
		c.Status, c.Matched, c.Cancelled, c.Error, c.Cursor, c.UpdatedAt.UnixMilli(), c.HeartbeatAt.UnixMilli(), c.ID, c.Owner)
	if err != nil {
		return fmt.Errorf("sqlite: update cancellation: %w", err)
	}
	return leaseHeld(res, "update cancellation")
}

// leaseHeld returns ErrLeaseLost when a lease's compare-and-set changed no row.
func leaseHeld(res sql.Result, op string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if n == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// GetCancellation reads a bulk cancellation.
func (d *Driver) GetCancellation(ctx context.Context, id string) (store.Cancellation, error) {
	var (
		c                             store.Cancellation
		after, before                 sql.NullInt64
		created, updatedAt, heartbeat int64
	)
	err := d.db.QueryRowContext(ctx, `SELECT `+cancellationColumns+` FROM cancellations WHERE id = ?`, id).
		Scan(&c.ID, &c.AppID, &c.FunctionID, &after, &before, &c.Expr, &c.Status, &c.Matched, &c.Cancelled, &c.Error,
			&created, &updatedAt, &c.Owner, &heartbeat, &c.Cursor)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("sqlite: get cancellation: %w", err)
	}
	if after.Valid {
		c.StartedAfter = time.UnixMilli(after.Int64).UTC()
	}
	if before.Valid {
		c.StartedBefore = time.UnixMilli(before.Int64).UTC()
	}
	c.CreatedAt, c.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updatedAt).UTC()
	c.HeartbeatAt = time.UnixMilli(heartbeat).UTC()
	return c, nil
}
