package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

// Flow control state: limiters, idempotency keys and singletons, read and
// written in a claim's transaction, so what a claim decided commits with its
// runs or not at all; and batch runs, linked to every event of their batch.

// Limit applies the GCRA limiter named key. Its row is locked until the claim
// commits: a concurrent claim calling Limit on the same key waits, then sees
// the TAT this claim left.
func (c *claimTx) Limit(ctx context.Context, key string, now time.Time, emission, tolerance time.Duration, latest time.Time) (time.Time, bool, error) {
	if err := store.ValidateLimit(key, emission, tolerance); err != nil {
		return time.Time{}, false, err
	}
	if err := c.enter(); err != nil {
		return time.Time{}, false, err
	}
	defer c.mu.Unlock()
	// A refused request changes nothing, so the common case under load (a
	// key over its limit) is one locking read and no write. A missing row is
	// inserted at its new TAT; when a concurrent claim inserted it first, the
	// insert waits for that claim to commit and the next read locks its row.
	for attempt := 0; attempt < 3; attempt++ {
		var tat time.Time
		err := c.tx.QueryRow(ctx, `SELECT tat FROM limits WHERE key = $1 FOR UPDATE`, key).Scan(&tat)
		switch {
		case err == nil:
			startAt, next, ok := store.GCRA(tat, now, emission, tolerance, latest)
			if ok {
				if _, err := c.tx.Exec(ctx, `UPDATE limits SET tat = $2 WHERE key = $1`, key, next); err != nil {
					return time.Time{}, false, wrapErr("limit", err)
				}
			}
			return startAt, ok, nil
		case errors.Is(err, pgx.ErrNoRows):
			startAt, next, ok := store.GCRA(time.Time{}, now, emission, tolerance, latest)
			if !ok {
				// latest is before now: refused whatever the state, and
				// there is no state to lock.
				return startAt, false, nil
			}
			tag, err := c.tx.Exec(ctx, `INSERT INTO limits (key, tat) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, next)
			if err != nil {
				return time.Time{}, false, wrapErr("limit", err)
			}
			if tag.RowsAffected() == 1 {
				return startAt, true, nil
			}
		default:
			return time.Time{}, false, wrapErr("limit", err)
		}
	}
	// Each retry means the row appeared and then vanished again (a purge of
	// an idle limiter between our statements); that cannot go on.
	return time.Time{}, false, fmt.Errorf("postgres: limit %q: the row keeps changing under the claim", key)
}

// ReleaseLimit moves the limiter's TAT back by emission.
func (c *claimTx) ReleaseLimit(ctx context.Context, key string, emission time.Duration) error {
	if err := store.ValidateLimit(key, emission, 0); err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if _, err := c.tx.Exec(ctx, `UPDATE limits SET tat = tat - $2::interval WHERE key = $1`, key, emission); err != nil {
		return wrapErr("release limit", err)
	}
	return nil
}

// takeKeySQL takes a key that is free, expired, or already held by the same
// run. The conflicting row is locked even when the WHERE refuses the update,
// so the holder read next cannot change before the claim commits; a
// concurrent insert of the same key is waited for.
const takeKeySQL = `
INSERT INTO idempotency_keys AS k (key, run_id, expires_at) VALUES ($1, $2, $4)
ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
 WHERE k.expires_at <= $3 OR k.run_id = excluded.run_id
RETURNING run_id`

// TakeKey records that runID holds the idempotency key until expires, unless
// another run holds it unexpired; it returns the holder either way.
func (c *claimTx) TakeKey(ctx context.Context, key, runID string, now, expires time.Time) (bool, string, error) {
	if err := store.ValidateHolder("take key", key, runID); err != nil {
		return false, "", err
	}
	if err := c.enter(); err != nil {
		return false, "", err
	}
	defer c.mu.Unlock()
	var holder string
	err := c.tx.QueryRow(ctx, takeKeySQL, key, runID, now, expires).Scan(&holder)
	if err == nil {
		return true, holder, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, "", wrapErr("take key", err)
	}
	if err := c.tx.QueryRow(ctx, `SELECT run_id FROM idempotency_keys WHERE key = $1`, key).Scan(&holder); err != nil {
		return false, "", wrapErr("take key", err)
	}
	return false, holder, nil
}

// singletonLockClass is the first half of the transaction advisory lock
// (singletonLockClass, hashtext(key)) that serializes claims on a singleton
// key. The two-part form has its own key space, apart from the migration lock.
const singletonLockClass int32 = 0x486c_5367 // "HlSg"

// lockSingleton makes claims on one singleton key take turns until the claim
// commits. A row lock alone would not do: while no run holds the key there
// is no row to lock, and two claims would both see the key free.
func (c *claimTx) lockSingleton(ctx context.Context, key string) error {
	_, err := c.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, singletonLockClass, key)
	return err
}

// SingletonHolder returns the run holding key, or empty strings. The key is
// locked until the claim commits (see lockSingleton), and so is its row, so
// FinishRun of the holder waits for the claim too.
func (c *claimTx) SingletonHolder(ctx context.Context, key string) (string, string, error) {
	if key == "" {
		return "", "", errors.New("store: singleton holder: a key is required")
	}
	if err := c.enter(); err != nil {
		return "", "", err
	}
	defer c.mu.Unlock()
	if err := c.lockSingleton(ctx, key); err != nil {
		return "", "", wrapErr("singleton holder", err)
	}
	var runID, workflowID string
	err := c.tx.QueryRow(ctx, `SELECT run_id, workflow_id FROM singletons WHERE key = $1 FOR UPDATE`, key).Scan(&runID, &workflowID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", wrapErr("singleton holder", err)
	}
	return runID, workflowID, nil
}

// SetSingleton makes runID the holder of key, replacing any holder.
func (c *claimTx) SetSingleton(ctx context.Context, key, runID, workflowID string) error {
	if err := store.ValidateHolder("set singleton", key, runID); err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	// Also here, for a claim that sets a holder without reading it first.
	if err := c.lockSingleton(ctx, key); err != nil {
		return wrapErr("set singleton", err)
	}
	_, err := c.tx.Exec(ctx, `INSERT INTO singletons (key, run_id, workflow_id) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, workflow_id = excluded.workflow_id`, key, runID, workflowID)
	if err != nil {
		return wrapErr("set singleton", err)
	}
	return nil
}

const insertRunSQL = `
INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at, replay_of, replay_id)
VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT DO NOTHING`

// RecordRun stores a run started outside a claim, unless its id or its (app,
// function, event) is stored, and links it to eventIDs, in one transaction.
func (d *Driver) RecordRun(ctx context.Context, r store.Run, eventIDs []string) error {
	if err := store.ValidateRun(r); err != nil {
		return err
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now()
	}
	// Sorted and distinct: concurrent retries insert their links in one order.
	links := make([]string, 0, len(eventIDs))
	for _, id := range eventIDs {
		if id != "" {
			links = append(links, id)
		}
	}
	slices.Sort(links)
	links = slices.Compact(links)
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertRunSQL, r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID, r.Status,
			jsonParam(r.Output), r.Error, r.StartedAt, r.EndedAt, r.ReplayOf, r.ReplayID); err != nil {
			return err
		}
		if len(links) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO run_events (event_id, run_id)
			SELECT e, $2 FROM unnest($1::text[]) AS e ON CONFLICT DO NOTHING`, links, r.ID)
		return err
	})
	if err != nil {
		return wrapErr("record run", err)
	}
	return nil
}

// purgeKeysSQL and purgeLimitsSQL delete one batch each. Rows a claim holds
// locked are skipped (the claim is using them); the next purge sees them.
const (
	purgeKeysSQL = `
WITH doomed AS (
    SELECT key FROM idempotency_keys WHERE expires_at <= $1
     LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM idempotency_keys k USING doomed d WHERE k.key = d.key`
	purgeLimitsSQL = `
WITH doomed AS (
    SELECT key FROM limits WHERE tat < $1
     LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM limits l USING doomed d WHERE l.key = d.key`
)

// PurgeFlowState deletes expired idempotency keys and idle limiters, in
// batches, and returns how many rows it deleted.
func (d *Driver) PurgeFlowState(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for _, query := range []string{purgeKeysSQL, purgeLimitsSQL} {
		for {
			tag, err := d.pool.Exec(ctx, query, now, purgeBatch)
			if err != nil {
				return total, wrapErr("purge flow state", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() == 0 {
				break
			}
		}
	}
	return total, nil
}
