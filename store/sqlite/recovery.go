package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/herald-run/herald/store"
)

// SetFunctionPaused pauses or resumes a function and moves its app's sync
// time, in one transaction.
func (d *Driver) SetFunctionPaused(ctx context.Context, appID, functionID string, pausedAt *time.Time) (store.Function, error) {
	var f store.Function
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE functions SET paused_at = CASE WHEN ? IS NULL THEN NULL ELSE coalesce(paused_at, ?) END
			WHERE app_id = ? AND id = ?`, millisParam(pausedAt), millisParam(pausedAt), appID, functionID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		f, err = scanFunction(tx.QueryRowContext(ctx, `SELECT `+functionColumns+` FROM functions WHERE app_id = ? AND id = ?`, appID, functionID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE apps SET synced_at = max(?, synced_at + 1) WHERE id = ?`, time.Now().UnixMilli(), appID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return f, err
	}
	if err != nil {
		return f, fmt.Errorf("sqlite: set function paused: %w", err)
	}
	return f, nil
}

// ListRuns pages through runs, newest first.
func (d *Driver) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error) {
	started, afterID, more, err := store.DecodeRunCursor(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if f.AppID != "" {
		where, args = append(where, "app_id = ?"), append(args, f.AppID)
	}
	if f.FunctionID != "" {
		where, args = append(where, "function_id = ?"), append(args, f.FunctionID)
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	if !f.StartedAfter.IsZero() {
		where, args = append(where, "started_at >= ?"), append(args, f.StartedAfter.UnixMilli())
	}
	if !f.StartedBefore.IsZero() {
		where, args = append(where, "started_at < ?"), append(args, f.StartedBefore.UnixMilli())
	}
	if more {
		ms := started.UnixMilli()
		where, args = append(where, "(started_at < ? OR started_at = ? AND id < ?)"), append(args, ms, ms, afterID)
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.EffectiveLimit()
	q += " ORDER BY started_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list runs: %w", err)
	}
	defer rows.Close()
	var runs []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: list runs: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: list runs: %w", err)
	}
	next := ""
	if len(runs) > limit {
		runs = runs[:limit]
		last := runs[limit-1]
		next = store.EncodeRunCursor(last.StartedAt, last.ID)
	}
	return runs, next, nil
}

// RunEventIDs returns a run's own event, then the other events of its batch.
func (d *Driver) RunEventIDs(ctx context.Context, runID string) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT event_id FROM (
		  SELECT event_id, 0 AS o FROM runs WHERE id = ? AND event_id IS NOT NULL
		  UNION
		  SELECT event_id, 1 FROM run_events WHERE run_id = ?)
		ORDER BY o, event_id`, runID, runID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: run events: %w", err)
	}
	defer rows.Close()
	var (
		ids  []string
		seen = map[string]bool{}
	)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: run events: %w", err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: run events: %w", err)
	}
	return ids, nil
}

// ReopenRun makes a run Running again.
func (d *Driver) ReopenRun(ctx context.Context, runID string) error {
	res, err := d.db.ExecContext(ctx, `UPDATE runs SET status = 'Running', ended_at = NULL, output = NULL, error = '' WHERE id = ?`, runID)
	if err != nil {
		return fmt.Errorf("sqlite: reopen run: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ListWaits pages through pending waits, newest first.
func (d *Driver) ListWaits(ctx context.Context, f store.WaitFilter, now time.Time) ([]store.Wait, string, error) {
	limit := f.EffectiveLimit()
	rows, err := d.db.QueryContext(ctx, `SELECT `+waitColumns+` FROM waits
		WHERE resolved_at IS NULL AND expires_at > ?
		  AND (? = '' OR app_id = ?) AND (? = '' OR function_id = ?) AND (? = '' OR id < ?)
		ORDER BY id DESC LIMIT ?`, now.UnixMilli(), f.AppID, f.AppID, f.FunctionID, f.FunctionID, f.Cursor, f.Cursor, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list waits: %w", err)
	}
	defer rows.Close()
	var ws []store.Wait
	for rows.Next() {
		w, err := scanWait(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: list waits: %w", err)
		}
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: list waits: %w", err)
	}
	next := ""
	if len(ws) > limit {
		ws = ws[:limit]
		next = ws[limit-1].ID
	}
	return ws, next, nil
}

const replayColumns = `id, app_id, function_id, from_at, to_at, statuses, events, expr, status,
	matched, started, skipped, error, created_at, updated_at, owner, heartbeat_at, cursor`

// SaveReplay upserts a replay.
func (d *Driver) SaveReplay(ctx context.Context, r store.Replay) error {
	statuses, _ := json.Marshal(r.Statuses)
	if r.Statuses == nil {
		statuses = []byte("[]")
	}
	_, err := d.db.ExecContext(ctx, `INSERT INTO replays (`+replayColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, matched = excluded.matched, started = excluded.started,
		    skipped = excluded.skipped, error = excluded.error, updated_at = excluded.updated_at,
		    owner = excluded.owner, heartbeat_at = excluded.heartbeat_at, cursor = excluded.cursor`,
		r.ID, r.AppID, r.FunctionID, r.From.UnixMilli(), r.To.UnixMilli(), string(statuses), r.Events, r.Expr, r.Status,
		r.Matched, r.Started, r.Skipped, r.Error, r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli(), r.Owner, r.HeartbeatAt.UnixMilli(), r.Cursor)
	if err != nil {
		return fmt.Errorf("sqlite: save replay: %w", err)
	}
	return nil
}

// UpdateReplay saves a running replay's progress if r.Owner still holds it.
func (d *Driver) UpdateReplay(ctx context.Context, r store.Replay) error {
	res, err := d.db.ExecContext(ctx, `UPDATE replays
		SET status = ?, matched = ?, started = ?, skipped = ?, error = ?, cursor = ?, updated_at = ?, heartbeat_at = ?
		WHERE id = ? AND owner = ? AND status = 'Running'`,
		r.Status, r.Matched, r.Started, r.Skipped, r.Error, r.Cursor, r.UpdatedAt.UnixMilli(), r.HeartbeatAt.UnixMilli(), r.ID, r.Owner)
	if err != nil {
		return fmt.Errorf("sqlite: update replay: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// GetReplay reads a replay.
func (d *Driver) GetReplay(ctx context.Context, id string) (store.Replay, error) {
	var (
		r                                 store.Replay
		statuses                          string
		from, to, created, updated, heart int64
	)
	err := d.db.QueryRowContext(ctx, `SELECT `+replayColumns+` FROM replays WHERE id = ?`, id).
		Scan(&r.ID, &r.AppID, &r.FunctionID, &from, &to, &statuses, &r.Events, &r.Expr, &r.Status,
			&r.Matched, &r.Started, &r.Skipped, &r.Error, &created, &updated, &r.Owner, &heart, &r.Cursor)
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: get replay: %w", err)
	}
	if err := json.Unmarshal([]byte(statuses), &r.Statuses); err != nil {
		return r, fmt.Errorf("sqlite: get replay: statuses: %w", err)
	}
	r.From, r.To = time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC()
	r.CreatedAt, r.UpdatedAt, r.HeartbeatAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC(), time.UnixMilli(heart).UTC()
	return r, nil
}

// FlowTx runs fn with a ClaimTx; its flow-state writes are written in one
// transaction when fn returns nil. It takes turns with claims.
func (d *Driver) FlowTx(ctx context.Context, fn func(ctx context.Context, tx store.ClaimTx) error) error {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	ctl := &claimTx{db: d.db, candidates: map[string]bool{}, flow: newFlowWrites()}
	err := fn(ctx, ctl)
	ctl.close()
	if err != nil {
		return err
	}
	if err := d.inTx(ctx, func(tx *sql.Tx) error { return writeFlowState(ctx, tx, ctl.flow) }); err != nil {
		return fmt.Errorf("sqlite: flow transaction: %w", err)
	}
	return nil
}
