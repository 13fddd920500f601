package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/herald-run/herald/store"
)

// jobTable is the table that keeps jobs of kind.
func jobTable(kind store.JobKind) (string, error) {
	if err := store.CheckJobKind(kind); err != nil {
		return "", err
	}
	if kind == store.JobReplay {
		return "replays", nil
	}
	return "cancellations", nil
}

// TakeStaleJob takes over the stalest running job whose heartbeat is before
// staleBefore. One statement: SQLite has one writer, so the pick and the
// update cannot interleave with another taker's.
func (d *Driver) TakeStaleJob(ctx context.Context, kind store.JobKind, owner string, staleBefore, now time.Time) (string, error) {
	table, err := jobTable(kind)
	if err != nil {
		return "", err
	}
	var id string
	err = d.db.QueryRowContext(ctx, `UPDATE `+table+` SET owner = ?, heartbeat_at = ?
		WHERE id = (SELECT id FROM `+table+` WHERE status = 'Running' AND heartbeat_at < ?3
		            ORDER BY heartbeat_at LIMIT 1)
		  AND status = 'Running' AND heartbeat_at < ?3
		RETURNING id`, owner, now.UnixMilli(), staleBefore.UnixMilli()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: take stale job: %w", err)
	}
	return id, nil
}

// RenewJob renews owner's lease of job id.
func (d *Driver) RenewJob(ctx context.Context, kind store.JobKind, id, owner string, now time.Time) error {
	table, err := jobTable(kind)
	if err != nil {
		return err
	}
	res, err := d.db.ExecContext(ctx, `UPDATE `+table+` SET heartbeat_at = ?
		WHERE id = ? AND owner = ? AND status = 'Running'`, now.UnixMilli(), id, owner)
	if err != nil {
		return fmt.Errorf("sqlite: renew job: %w", err)
	}
	return leaseHeld(res, "renew job")
}
