package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

// SetFunctionPaused pauses or resumes a function and moves its app's sync
// time, in one transaction.
func (d *Driver) SetFunctionPaused(ctx context.Context, appID, functionID string, pausedAt *time.Time) (store.Function, error) {
	var f store.Function
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE functions SET paused_at = CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE coalesce(paused_at, $3) END
			WHERE app_id = $1 AND id = $2 RETURNING `+functionColumns, appID, functionID, pausedAt)
		if err != nil {
			return err
		}
		fns, err := pgx.CollectRows(rows, scanFunction)
		if err != nil {
			return err
		}
		if len(fns) == 0 {
			return store.ErrNotFound
		}
		f = fns[0]
		_, err = tx.Exec(ctx, `UPDATE apps SET synced_at = greatest(now(), synced_at + interval '1 microsecond') WHERE id = $1`, appID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return f, err
	}
	if err != nil {
		return f, wrapErr("set function paused", err)
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
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.AppID != "" {
		where = append(where, "app_id = "+arg(f.AppID))
	}
	if f.FunctionID != "" {
		where = append(where, "function_id = "+arg(f.FunctionID))
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status = ANY("+arg(f.Statuses)+"::text[])")
	}
	if !f.StartedAfter.IsZero() {
		where = append(where, "started_at >= "+arg(f.StartedAfter))
	}
	if !f.StartedBefore.IsZero() {
		where = append(where, "started_at < "+arg(f.StartedBefore))
	}
	if more {
		where = append(where, "(started_at, id) < ("+arg(started)+", "+arg(afterID)+")")
	}
	q := `SELECT ` + runColumns + ` FROM runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.EffectiveLimit()
	q += " ORDER BY started_at DESC, id DESC LIMIT " + arg(limit+1)
	rows, err := d.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", wrapErr("list runs", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row) })
	if err != nil {
		return nil, "", wrapErr("list runs", err)
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
	rows, err := d.pool.Query(ctx, `SELECT event_id FROM (
		  SELECT event_id, 0 AS o FROM runs WHERE id = $1 AND event_id IS NOT NULL
		  UNION
		  SELECT event_id, 1 FROM run_events WHERE run_id = $1) AS e
		ORDER BY o, event_id`, runID)
	if err != nil {
		return nil, wrapErr("run events", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrapErr("run events", err)
	}
	return dedupe(ids), nil
}

// dedupe drops repeated ids, keeping the first of each.
func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// ReopenRun makes a run Running again.
func (d *Driver) ReopenRun(ctx context.Context, runID string) error {
	tag, err := d.pool.Exec(ctx, `UPDATE runs SET status = 'Running', ended_at = NULL, output = NULL, error = '' WHERE id = $1`, runID)
	if err != nil {
		return wrapErr("reopen run", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ListWaits pages through pending waits, newest first.
func (d *Driver) ListWaits(ctx context.Context, f store.WaitFilter, now time.Time) ([]store.Wait, string, error) {
	limit := f.EffectiveLimit()
	rows, err := d.pool.Query(ctx, `SELECT `+waitColumns+` FROM waits
		WHERE resolved_at IS NULL AND expires_at > $1
		  AND ($2 = '' OR app_id = $2) AND ($3 = '' OR function_id = $3) AND ($4 = '' OR id < $4)
		ORDER BY id DESC LIMIT $5`, now, f.AppID, f.FunctionID, f.Cursor, limit+1)
	if err != nil {
		return nil, "", wrapErr("list waits", err)
	}
	ws, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Wait, error) { return scanWait(row) })
	if err != nil {
		return nil, "", wrapErr("list waits", err)
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
	_, err := d.pool.Exec(ctx, `INSERT INTO replays (`+replayColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, matched = excluded.matched, started = excluded.started,
		    skipped = excluded.skipped, error = excluded.error, updated_at = excluded.updated_at,
		    owner = excluded.owner, heartbeat_at = excluded.heartbeat_at, cursor = excluded.cursor`,
		r.ID, r.AppID, r.FunctionID, r.From, r.To, string(statuses), r.Events, r.Expr, r.Status,
		r.Matched, r.Started, r.Skipped, r.Error, r.CreatedAt, r.UpdatedAt, r.Owner, r.HeartbeatAt, r.Cursor)
	if err != nil {
		return wrapErr("save replay", err)
	}
	return nil
}

// UpdateReplay saves a running replay's progress if r.Owner still holds it.
func (d *Driver) UpdateReplay(ctx context.Context, r store.Replay) error {
	tag, err := d.pool.Exec(ctx, `UPDATE replays
		SET status = $3, matched = $4, started = $5, skipped = $6, error = $7, cursor = $8, updated_at = $9, heartbeat_at = $10
		WHERE id = $1 AND owner = $2 AND status = 'Running'`,
		r.ID, r.Owner, r.Status, r.Matched, r.Started, r.Skipped, r.Error, r.Cursor, r.UpdatedAt, r.HeartbeatAt)
	if err != nil {
		return wrapErr("update replay", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrLeaseLost
	}
	return nil
}

// GetReplay reads a replay.
func (d *Driver) GetReplay(ctx context.Context, id string) (store.Replay, error) {
	var (
		r        store.Replay
		statuses string
	)
	err := d.pool.QueryRow(ctx, `SELECT `+replayColumns+` FROM replays WHERE id = $1`, id).
		Scan(&r.ID, &r.AppID, &r.FunctionID, &r.From, &r.To, &statuses, &r.Events, &r.Expr, &r.Status,
			&r.Matched, &r.Started, &r.Skipped, &r.Error, &r.CreatedAt, &r.UpdatedAt, &r.Owner, &r.HeartbeatAt, &r.Cursor)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	if err != nil {
		return r, wrapErr("get replay", err)
	}
	if err := json.Unmarshal([]byte(statuses), &r.Statuses); err != nil {
		return r, fmt.Errorf("postgres: get replay: statuses: %w", err)
	}
	return r, nil
}

// FlowTx runs fn with a ClaimTx in a transaction of its own.
func (d *Driver) FlowTx(ctx context.Context, fn func(ctx context.Context, tx store.ClaimTx) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return wrapErr("flow transaction", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	ctl := &claimTx{tx: tx, candidates: map[string]bool{}}
	err = fn(ctx, ctl)
	ctl.close()
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return wrapErr("flow transaction", err)
	}
	return nil
}
