package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/herald-run/herald/store"
)

// Flow control state: limiters, idempotency keys and singletons; and batch
// runs, linked to every event of their batch.
//
// A claim holds no transaction while fn runs (see ClaimEvents), so the
// ClaimTx cannot write as it goes: it reads the stored state, keeps its own
// writes in flowWrites (and reads them back), and ClaimEvents stores them in
// the claim's write transaction. When fn fails they are dropped with the
// rest of the claim. Claims take turns (claimMu), so no other claim changes
// this state between the reads and the write. Outside claims, only FinishRun
// (releasing a singleton) and PurgeFlowState (deleting expired keys and idle
// limiters) change it, and the claim's own write over either is what the
// claim decided anyway. Times are kept in the stored unit, milliseconds, so
// a claim computes with what a later claim will read.

// flowWrites is a claim's pending flow-state writes, by key.
type flowWrites struct {
	limits     map[string]int64 // TAT, ms
	keys       map[string]heldKey
	singletons map[string]singletonHolder
}

type heldKey struct {
	runID   string
	expires int64 // ms
}

type singletonHolder struct{ runID, workflowID string }

func newFlowWrites() flowWrites {
	return flowWrites{limits: map[string]int64{}, keys: map[string]heldKey{}, singletons: map[string]singletonHolder{}}
}

// Limit applies the GCRA limiter named key.
func (c *claimTx) Limit(ctx context.Context, key string, now time.Time, emission, tolerance time.Duration, latest time.Time) (time.Time, bool, error) {
	if err := store.ValidateLimit(key, emission, tolerance); err != nil {
		return time.Time{}, false, err
	}
	if err := c.enter(); err != nil {
		return time.Time{}, false, err
	}
	defer c.mu.Unlock()
	var tat time.Time
	if ms, ok := c.flow.limits[key]; ok {
		tat = time.UnixMilli(ms).UTC()
	} else {
		var ms int64
		err := c.db.QueryRowContext(ctx, `SELECT tat FROM limits WHERE key = ?`, key).Scan(&ms)
		switch {
		case err == nil:
			tat = time.UnixMilli(ms).UTC()
		case !errors.Is(err, sql.ErrNoRows):
			return time.Time{}, false, fmt.Errorf("sqlite: limit: %w", err)
		}
	}
	startAt, next, ok := store.GCRA(tat, now, emission, tolerance, latest)
	if ok {
		c.flow.limits[key] = next.UnixMilli()
	}
	return startAt, ok, nil
}

// ReleaseLimit moves the limiter's TAT back by emission, in the claim's
// pending writes.
func (c *claimTx) ReleaseLimit(ctx context.Context, key string, emission time.Duration) error {
	if err := store.ValidateLimit(key, emission, 0); err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	ms, ok := c.flow.limits[key]
	if !ok {
		err := c.db.QueryRowContext(ctx, `SELECT tat FROM limits WHERE key = ?`, key).Scan(&ms)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sqlite: release limit: %w", err)
		}
	}
	c.flow.limits[key] = ms - emission.Milliseconds()
	return nil
}

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
	held, ok := c.flow.keys[key]
	if !ok {
		err := c.db.QueryRowContext(ctx, `SELECT run_id, expires_at FROM idempotency_keys WHERE key = ?`, key).
			Scan(&held.runID, &held.expires)
		switch {
		case err == nil:
			ok = true
		case !errors.Is(err, sql.ErrNoRows):
			return false, "", fmt.Errorf("sqlite: take key: %w", err)
		}
	}
	if ok && held.runID != runID && held.expires > now.UnixMilli() {
		return false, held.runID, nil
	}
	c.flow.keys[key] = heldKey{runID: runID, expires: expires.UnixMilli()}
	return true, runID, nil
}

// SingletonHolder returns the run holding key, or empty strings.
func (c *claimTx) SingletonHolder(ctx context.Context, key string) (string, string, error) {
	if key == "" {
		return "", "", errors.New("store: singleton holder: a key is required")
	}
	if err := c.enter(); err != nil {
		return "", "", err
	}
	defer c.mu.Unlock()
	if h, ok := c.flow.singletons[key]; ok {
		return h.runID, h.workflowID, nil
	}
	var h singletonHolder
	err := c.db.QueryRowContext(ctx, `SELECT run_id, workflow_id FROM singletons WHERE key = ?`, key).Scan(&h.runID, &h.workflowID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("sqlite: singleton holder: %w", err)
	}
	return h.runID, h.workflowID, nil
}

// SetSingleton makes runID the holder of key, replacing any holder.
func (c *claimTx) SetSingleton(_ context.Context, key, runID, workflowID string) error {
	if err := store.ValidateHolder("set singleton", key, runID); err != nil {
		return err
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.flow.singletons[key] = singletonHolder{runID: runID, workflowID: workflowID}
	return nil
}

// writeFlowState stores a claim's flow-state writes in its transaction, in
// key order.
func writeFlowState(ctx context.Context, tx *sql.Tx, w flowWrites) error {
	for _, key := range slices.Sorted(maps.Keys(w.limits)) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO limits (key, tat) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET tat = excluded.tat`, key, w.limits[key]); err != nil {
			return err
		}
	}
	for _, key := range slices.Sorted(maps.Keys(w.keys)) {
		k := w.keys[key]
		if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, run_id, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at`,
			key, k.runID, k.expires); err != nil {
			return err
		}
	}
	for _, key := range slices.Sorted(maps.Keys(w.singletons)) {
		h := w.singletons[key]
		if _, err := tx.ExecContext(ctx, `INSERT INTO singletons (key, run_id, workflow_id) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, workflow_id = excluded.workflow_id`,
			key, h.runID, h.workflowID); err != nil {
			return err
		}
	}
	return nil
}

// RecordRun stores a run started outside a claim, unless its id or its (app,
// function, event) is stored, and links it to eventIDs, in one transaction.
func (d *Driver) RecordRun(ctx context.Context, r store.Run, eventIDs []string) error {
	if err := store.ValidateRun(r); err != nil {
		return err
	}
	started := time.Now().UnixMilli()
	if !r.StartedAt.IsZero() {
		started = r.StartedAt.UnixMilli()
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, insertRunSQL, r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID, r.Status,
			jsonParam(r.Output), r.Error, started, millisParam(r.EndedAt), r.ReplayOf, r.ReplayID); err != nil {
			return err
		}
		if len(eventIDs) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO run_events (event_id, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range eventIDs {
			if id == "" {
				continue
			}
			if _, err := stmt.ExecContext(ctx, id, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: record run: %w", err)
	}
	return nil
}

// PurgeFlowState deletes expired idempotency keys and idle limiters, in
// batches, and returns how many rows it deleted.
func (d *Driver) PurgeFlowState(ctx context.Context, now time.Time) (int64, error) {
	at := now.UnixMilli()
	var total int64
	for _, query := range []string{
		`DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT ?)`,
		`DELETE FROM limits WHERE rowid IN (SELECT rowid FROM limits WHERE tat < ? LIMIT ?)`,
	} {
		for {
			res, err := d.db.ExecContext(ctx, query, at, purgeBatch)
			if err != nil {
				return total, fmt.Errorf("sqlite: purge flow state: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("sqlite: purge flow state: %w", err)
			}
			total += n
			if n == 0 {
				break
			}
		}
	}
	return total, nil
}
