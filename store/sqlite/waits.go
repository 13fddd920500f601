package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herald-run/herald/store"
)

// errClaimOver is returned by a ClaimTx used after its fn returned.
var errClaimOver = errors.New("sqlite: claim transaction used after its fn returned")

// claimTx reads waits and flow state for a claim. SQLite has no row locks:
// the claim does not hold a transaction while fn runs, and Herald runs one
// router per database, so these are plain reads; flow-state writes wait in
// flow for the claim's write transaction (see flow.go). candidates remembers
// the waits CandidateWaits returned, the only ones the claim may resolve.
type claimTx struct {
	mu         sync.Mutex
	db         *sql.DB
	candidates map[string]bool
	flow       flowWrites
	over       bool
}

func (c *claimTx) close() {
	c.mu.Lock()
	c.over = true
	c.mu.Unlock()
}

// enter guards every call on the claim: calls are serialized, and none runs
// after the claim's fn returned. On success the caller holds c.mu and
// releases it when done.
func (c *claimTx) enter() error {
	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		return errClaimOver
	}
	return nil
}

// WaitPaths returns the match paths registered for names, each sorted.
func (c *claimTx) WaitPaths(ctx context.Context, names []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(names) == 0 {
		return out, nil
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	stmt, err := c.db.PrepareContext(ctx, `SELECT match_path FROM wait_paths WHERE event_name = ? ORDER BY match_path`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: wait paths: %w", err)
	}
	defer stmt.Close()
	for _, name := range slices.Compact(slices.Sorted(slices.Values(names))) {
		rows, err := stmt.QueryContext(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("sqlite: wait paths: %w", err)
		}
		for rows.Next() {
			var path string
			if err := rows.Scan(&path); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: wait paths: %w", err)
			}
			out[name] = append(out[name], path)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("sqlite: wait paths: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: wait paths: %w", err)
		}
	}
	return out, nil
}

// CandidateWaits returns the pending waits matching keys, and the
// non-indexable pending waits of names, oldest first (ids are ULIDs). Each key
// is one probe of waits_pending_key_idx; the non-indexable waits of a name are
// those under its key of empty path and value.
func (c *claimTx) CandidateWaits(ctx context.Context, names []string, keys []store.WaitKey) ([]store.Wait, error) {
	all := store.CandidateKeys(names, keys)
	if len(all) == 0 {
		return nil, nil
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	stmt, err := c.db.PrepareContext(ctx, `SELECT `+waitColumns+` FROM waits
		WHERE event_name = ? AND match_path = ? AND match_value = ? AND resolved_at IS NULL AND expires_at > ?`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: candidate waits: %w", err)
	}
	defer stmt.Close()
	now := time.Now().UnixMilli()
	var out []store.Wait
	for _, k := range all {
		rows, err := stmt.QueryContext(ctx, k.EventName, k.MatchPath, k.MatchValue, now)
		if err != nil {
			return nil, fmt.Errorf("sqlite: candidate waits: %w", err)
		}
		for rows.Next() {
			w, err := scanWait(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: candidate waits: %w", err)
			}
			out = append(out, w)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("sqlite: candidate waits: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: candidate waits: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b store.Wait) int { return cmp.Compare(a.ID, b.ID) })
	for _, w := range out {
		c.candidates[w.ID] = true
	}
	return out, nil
}

const waitColumns = `id, kind, app_id, function_id, run_id, workflow_id, step_id, event_name, match_path, match_value,
	expr, trigger_event, since, expires_at, created_at, resolved_at, resolved_by`

func scanWait(row scanner) (store.Wait, error) {
	var (
		w                       store.Wait
		trigger                 sql.NullString
		since, expires, created int64
		resolved                sql.NullInt64
	)
	if err := row.Scan(&w.ID, &w.Kind, &w.AppID, &w.FunctionID, &w.RunID, &w.WorkflowID, &w.StepID, &w.EventName,
		&w.MatchPath, &w.MatchValue, &w.Expr, &trigger, &since, &expires, &created, &resolved, &w.ResolvedBy); err != nil {
		return w, err
	}
	if trigger.Valid {
		w.TriggerEvent = json.RawMessage(trigger.String)
	}
	w.Since = time.UnixMilli(since).UTC()
	w.ExpiresAt = time.UnixMilli(expires).UTC()
	w.CreatedAt = time.UnixMilli(created).UTC()
	if resolved.Valid {
		t := time.UnixMilli(resolved.Int64).UTC()
		w.ResolvedAt = &t
	}
	return w, nil
}

const insertWaitSQL = `
INSERT INTO waits (id, kind, app_id, function_id, run_id, workflow_id, step_id, event_name, match_path, match_value,
                   expr, trigger_event, since, expires_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_id, kind, step_id) DO NOTHING
RETURNING ` + waitColumns

// insertWaits stores waits (validated), ignoring those whose (workflow, kind,
// step) exists, records their match paths, and returns the waits it inserted.
func insertWaits(ctx context.Context, tx *sql.Tx, waits []store.Wait) ([]store.Wait, error) {
	if len(waits) == 0 {
		return nil, nil
	}
	stmt, err := tx.PrepareContext(ctx, insertWaitSQL)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	paths, err := tx.PrepareContext(ctx, `INSERT INTO wait_paths (event_name, match_path) VALUES (?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer paths.Close()
	now := time.Now()
	var inserted []store.Wait
	for _, w := range waits {
		created := w.CreatedAt
		if created.IsZero() {
			created = now
		}
		got, err := scanWait(stmt.QueryRowContext(ctx, w.ID, w.Kind, w.AppID, w.FunctionID, w.RunID, w.WorkflowID, w.StepID,
			w.EventName, w.MatchPath, w.MatchValue, w.Expr, jsonParam(w.TriggerEvent), w.Since.UnixMilli(),
			w.ExpiresAt.UnixMilli(), created.UnixMilli()))
		if errors.Is(err, sql.ErrNoRows) {
			continue // its (workflow, kind, step) exists
		}
		if err != nil {
			return nil, err
		}
		inserted = append(inserted, got)
		if w.MatchPath != "" {
			if _, err := paths.ExecContext(ctx, w.EventName, w.MatchPath); err != nil {
				return nil, err
			}
		}
	}
	return inserted, nil
}

// resolveWaits applies resolutions; a wait already resolved keeps its first.
func resolveWaits(ctx context.Context, tx *sql.Tx, resolved []store.WaitResolution) error {
	if len(resolved) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE waits SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	now := time.Now().UnixMilli()
	for _, r := range resolved {
		if _, err := stmt.ExecContext(ctx, now, r.EventID, r.WaitID); err != nil {
			return err
		}
	}
	return nil
}

// RegisterWait stores w, or returns the wait stored under its (WorkflowID,
// Kind, StepID).
func (d *Driver) RegisterWait(ctx context.Context, w store.Wait) (store.Wait, error) {
	if err := store.ValidateWait(w); err != nil {
		return store.Wait{}, err
	}
	var out store.Wait
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		inserted, err := insertWaits(ctx, tx, []store.Wait{w})
		if err != nil {
			return err
		}
		if len(inserted) == 1 {
			out = inserted[0]
			return nil
		}
		out, err = scanWait(tx.QueryRowContext(ctx, `SELECT `+waitColumns+` FROM waits
			WHERE workflow_id = ? AND kind = ? AND step_id = ?`, w.WorkflowID, w.Kind, w.StepID))
		return err
	})
	if err != nil {
		return store.Wait{}, fmt.Errorf("sqlite: register wait: %w", err)
	}
	return out, nil
}

// EventsSince returns the events named name received at or after since,
// oldest first.
func (d *Driver) EventsSince(ctx context.Context, name string, since time.Time, match store.WaitKey, limit int) ([]store.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: events since: limit must be positive, got %d", limit)
	}
	var (
		rows *sql.Rows
		err  error
	)
	path := store.DataPath(match.MatchPath)
	if v := match.MatchValue; path != nil && v != "" && v[0] != '{' && v[0] != '[' {
		// Scalars only: json_extract compares them by value (12.0 = 12, escapes
		// decoded); objects would compare as text, which could drop a match.
		rows, err = d.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
			WHERE name = ? AND received_at >= ? AND json_extract(data, ?) = json_extract(?, '$')
			ORDER BY received_at, seq LIMIT ?`, name, since.UnixMilli(), "$."+strings.Join(path, "."), v, limit)
	} else {
		rows, err = d.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
			WHERE name = ? AND received_at >= ? ORDER BY received_at, seq LIMIT ?`, name, since.UnixMilli(), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: events since: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, _, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: events since: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: events since: %w", err)
	}
	return out, nil
}

// ResolveWait resolves a pending, unexpired wait.
func (d *Driver) ResolveWait(ctx context.Context, waitID, eventID string) (bool, error) {
	if eventID == "" {
		return false, fmt.Errorf("sqlite: resolve wait %q: an event id is required", waitID)
	}
	now := time.Now().UnixMilli()
	res, err := d.db.ExecContext(ctx, `UPDATE waits SET resolved_at = ?, resolved_by = ?
		WHERE id = ? AND resolved_at IS NULL AND expires_at > ?`, now, eventID, waitID, now)
	if err != nil {
		return false, fmt.Errorf("sqlite: resolve wait: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: resolve wait: %w", err)
	}
	return n == 1, nil
}

// GetWait returns the wait of a run's step.
func (d *Driver) GetWait(ctx context.Context, workflowID, kind, stepID string) (store.Wait, error) {
	w, err := scanWait(d.db.QueryRowContext(ctx, `SELECT `+waitColumns+` FROM waits
		WHERE workflow_id = ? AND kind = ? AND step_id = ?`, workflowID, kind, stepID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Wait{}, store.ErrNotFound
	}
	if err != nil {
		return store.Wait{}, fmt.Errorf("sqlite: get wait: %w", err)
	}
	return w, nil
}

// DeleteRunWaits removes a run's waits.
func (d *Driver) DeleteRunWaits(ctx context.Context, workflowID string) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM waits WHERE workflow_id = ?`, workflowID); err != nil {
		return fmt.Errorf("sqlite: delete run waits: %w", err)
	}
	return nil
}

// purgeBatch bounds each purge transaction: SQLite has one writer, and ingest
// must not wait behind one long delete.
const purgeBatch = 5000

// PurgeWaits deletes waits expired or resolved before before, in batches,
// then removes the match paths no pending wait uses. Every write takes the
// database's write lock, so the path cleanup cannot race a registration.
func (d *Driver) PurgeWaits(ctx context.Context, before time.Time) (int64, error) {
	at := before.UnixMilli()
	var total int64
	for {
		res, err := d.db.ExecContext(ctx, `DELETE FROM waits WHERE rowid IN (
			SELECT rowid FROM waits WHERE expires_at < ? OR resolved_at < ? LIMIT ?)`, at, at, purgeBatch)
		if err != nil {
			return total, fmt.Errorf("sqlite: purge waits: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sqlite: purge waits: %w", err)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if _, err := d.db.ExecContext(ctx, `DELETE FROM wait_paths WHERE NOT EXISTS (
		SELECT 1 FROM waits w WHERE w.event_name = wait_paths.event_name AND w.match_path = wait_paths.match_path
		   AND w.resolved_at IS NULL)`); err != nil {
		return total, fmt.Errorf("sqlite: purge waits: %w", err)
	}
	return total, nil
}

// WaitStats counts pending waits and the non-indexable ones among them.
func (d *Driver) WaitStats(ctx context.Context) (pending, unindexed int64, err error) {
	err = d.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(match_path = ''), 0)
		FROM waits WHERE resolved_at IS NULL AND expires_at > ?`, time.Now().UnixMilli()).Scan(&pending, &unindexed)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: wait stats: %w", err)
	}
	return pending, unindexed, nil
}
