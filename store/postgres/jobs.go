package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

// jobTable is the table that keeps jobs of kind; CheckJobKind has
// vouched for kind, so the name is one of Herald's own.
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
// staleBefore. The subquery locks the row it picks and skips rows another
// taker (or the owner's renewal) holds, so concurrent takers never pick the
// same job; the update's own condition is checked again on the locked row.
func (d *Driver) TakeStaleJob(ctx context.Context, kind store.JobKind, owner string, staleBefore, now time.Time) (string, error) {
	table, err := jobTable(kind)
	if err != nil {
		return "", err
	}
	var id string
	err = d.pool.QueryRow(ctx, `UPDATE `+table+` SET owner = $1, heartbeat_at = $2
		WHERE id = (SELECT id FROM `+table+` WHERE status = 'Running' AND heartbeat_at < $3
		             ORDER BY heartbeat_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		  AND status = 'Running' AND heartbeat_at < $3
		RETURNING id`, owner, now, staleBefore).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", wrapErr("take stale job", err)
	}
	return id, nil
}

// RenewJob renews owner's lease of job id.
func (d *Driver) RenewJob(ctx context.Context, kind store.JobKind, id, owner string, now time.Time) error {
	table, err := jobTable(kind)
	if err != nil {
		return err
	}
	tag, err := d.pool.Exec(ctx, `UPDATE `+table+` SET heartbeat_at = $3
		WHERE id = $1 AND owner = $2 AND status = 'Running'`, id, owner, now)
	if err != nil {
		return wrapErr("renew job", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}
