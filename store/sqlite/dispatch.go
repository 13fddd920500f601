package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

const functionColumns = `app_id, id, config, version, updated_at, paused_at`

func scanFunction(row scanner) (store.Function, error) {
	var (
		f       store.Function
		config  string
		updated int64
		paused  sql.NullInt64
	)
	if err := row.Scan(&f.AppID, &f.ID, &config, &f.Version, &updated, &paused); err != nil {
		return f, err
	}
	if paused.Valid {
		t := time.UnixMilli(paused.Int64).UTC()
		f.PausedAt = &t
	}
	f.Config = json.RawMessage(config)
	f.UpdatedAt = time.UnixMilli(updated).UTC()
	return f, nil
}

// SyncApp stores app and replaces its functions in one transaction. Configs
// are stored as sent and compared in canonical form, so a worker that sends
// the same config with other key order or spacing does not bump the version.
func (d *Driver) SyncApp(ctx context.Context, app store.App, fns []store.Function) (store.SyncResult, error) {
	if err := store.ValidateFunctionIDs(fns); err != nil {
		return store.SyncResult{}, err
	}
	canon := make([][]byte, len(fns))
	for i, f := range fns {
		c, err := canonicalJSON(f.Config)
		if err != nil {
			return store.SyncResult{}, fmt.Errorf("sqlite: sync app: function %q config: %w: %v", f.ID, store.ErrInvalidData, err)
		}
		canon[i] = c
	}
	now := time.Now().UnixMilli()
	var res store.SyncResult
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		res = store.SyncResult{}
		if _, err := tx.ExecContext(ctx, `INSERT INTO apps (id, task_queue, synced_at) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET task_queue = excluded.task_queue, synced_at = excluded.synced_at`,
			app.ID, app.TaskQueue, now); err != nil {
			return err
		}
		var err error
		res.Previous, err = queryFunctions(ctx, tx, `SELECT `+functionColumns+` FROM functions WHERE app_id = ? ORDER BY id`, app.ID)
		if err != nil {
			return err
		}
		prev := make(map[string]store.Function, len(res.Previous))
		for _, f := range res.Previous {
			prev[f.ID] = f
		}
		for i, f := range fns {
			old, ok := prev[f.ID]
			delete(prev, f.ID)
			if !ok {
				if _, err := tx.ExecContext(ctx, `INSERT INTO functions (app_id, id, config, version, updated_at) VALUES (?, ?, ?, 1, ?)`,
					app.ID, f.ID, string(f.Config), now); err != nil {
					return err
				}
				res.Created = append(res.Created, f.ID)
				continue
			}
			if oldCanon, err := canonicalJSON(old.Config); err == nil && bytes.Equal(oldCanon, canon[i]) {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE functions SET config = ?, version = version + 1, updated_at = ?
				WHERE app_id = ? AND id = ?`, string(f.Config), now, app.ID, f.ID); err != nil {
				return err
			}
			res.Updated = append(res.Updated, f.ID)
		}
		for id := range prev {
			if _, err := tx.ExecContext(ctx, `DELETE FROM functions WHERE app_id = ? AND id = ?`, app.ID, id); err != nil {
				return err
			}
			res.Removed = append(res.Removed, id)
		}
		return nil
	})
	if err != nil {
		return store.SyncResult{}, fmt.Errorf("sqlite: sync app: %w", err)
	}
	slices.Sort(res.Created)
	slices.Sort(res.Updated)
	slices.Sort(res.Removed)
	return res, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryFunctions(ctx context.Context, q queryer, query string, args ...any) ([]store.Function, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Function
	for rows.Next() {
		f, err := scanFunction(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// ListApps returns every app, ordered by id.
func (d *Driver) ListApps(ctx context.Context) ([]store.App, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT id, task_queue, synced_at FROM apps ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list apps: %w", err)
	}
	defer rows.Close()
	var out []store.App
	for rows.Next() {
		var (
			a      store.App
			synced int64
		)
		if err := rows.Scan(&a.ID, &a.TaskQueue, &synced); err != nil {
			return nil, fmt.Errorf("sqlite: list apps: %w", err)
		}
		a.SyncedAt = time.UnixMilli(synced).UTC()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list apps: %w", err)
	}
	return out, nil
}

// ListFunctions returns every function, ordered by app and id.
func (d *Driver) ListFunctions(ctx context.Context) ([]store.Function, error) {
	fns, err := queryFunctions(ctx, d.db, `SELECT `+functionColumns+` FROM functions ORDER BY app_id, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list functions: %w", err)
	}
	return fns, nil
}

// ClaimEvents reads up to limit pending events, calls fn with them, and then
// records fn's claim in one write transaction. The write lock is not held
// while fn runs (it calls Temporal and may take seconds; ingest would stall),
// so claimers in this process take turns instead (see Driver.claimMu). An
// event re-accepted while fn ran is not marked dispatched: its new version is
// still pending. fn's ClaimTx reads waits outside the write transaction too;
// nothing else resolves a wait concurrently except ResolveWait, and a
// resolution only applies to a wait still unresolved when the claim records.
// Its flow-state writes are kept until then (see flow.go) and dropped when
// fn fails.
func (d *Driver) ClaimEvents(ctx context.Context, limit int, fn func(ctx context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error)) (int, error) {
	if limit <= 0 {
		return 0, store.ErrClaimLimit
	}
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	events, err := d.pendingEvents(ctx, limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: claim events: %w", err)
	}
	if len(events) == 0 {
		return 0, nil
	}
	ctl := &claimTx{db: d.db, candidates: map[string]bool{}, flow: newFlowWrites()}
	claim, err := fn(ctx, ctl, events)
	ctl.close()
	if err != nil {
		return 0, err
	}
	for _, r := range claim.Runs {
		if err := store.ValidateRun(r); err != nil {
			return 0, err
		}
	}
	for _, w := range claim.Waits {
		if err := store.ValidateWait(w); err != nil {
			return 0, err
		}
	}
	resolved, err := store.ClaimResolutions(claim.Resolved, func(id string) bool { return ctl.candidates[id] })
	if err != nil {
		return 0, err
	}
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		if err := recordClaim(ctx, tx, events, claim); err != nil {
			return err
		}
		if _, err := insertWaits(ctx, tx, claim.Waits); err != nil {
			return err
		}
		if err := resolveWaits(ctx, tx, resolved); err != nil {
			return err
		}
		return writeFlowState(ctx, tx, ctl.flow)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: claim events: %w", err)
	}
	return len(events), nil
}

func (d *Driver) pendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE dispatched_at IS NULL ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, _, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

const insertRunSQL = `INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at, replay_of, replay_id)
VALUES (?, ?, ?, nullif(?, ''), ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`

// recordClaim stores claim's runs (ignoring those that exist) and marks its
// dispatched events, only among events, and only if each is still the
// version that was read (same received_at, still pending).
func recordClaim(ctx context.Context, tx *sql.Tx, events []store.Event, claim store.Claim) error {
	if len(claim.Runs) > 0 {
		stmt, err := tx.PrepareContext(ctx, insertRunSQL)
		if err != nil {
			return err
		}
		defer stmt.Close()
		now := time.Now().UnixMilli()
		for _, r := range claim.Runs {
			started := now
			if !r.StartedAt.IsZero() {
				started = r.StartedAt.UnixMilli()
			}
			if _, err := stmt.ExecContext(ctx, r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID, r.Status,
				jsonParam(r.Output), r.Error, started, millisParam(r.EndedAt), r.ReplayOf, r.ReplayID); err != nil {
				return err
			}
		}
	}
	if len(claim.Dispatched) == 0 {
		return nil
	}
	received := make(map[string]int64, len(events))
	for _, e := range events {
		received[e.ID] = e.ReceivedAt.UnixMilli()
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE events SET dispatched_at = ?
		WHERE id = ? AND received_at = ? AND dispatched_at IS NULL`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	now := time.Now().UnixMilli()
	for _, id := range claim.Dispatched {
		at, ok := received[id]
		if !ok {
			continue
		}
		if _, err := stmt.ExecContext(ctx, now, id, at); err != nil {
			return err
		}
	}
	return nil
}

// PendingEvents counts events not yet dispatched.
func (d *Driver) PendingEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE dispatched_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: pending events: %w", err)
	}
	return n, nil
}

const runColumns = `id, app_id, function_id, coalesce(event_id, ''), workflow_id, status, output, error, started_at, ended_at, replay_of, replay_id`

func scanRun(row scanner) (store.Run, error) {
	var (
		r       store.Run
		output  sql.NullString
		started int64
		ended   sql.NullInt64
	)
	if err := row.Scan(&r.ID, &r.AppID, &r.FunctionID, &r.EventID, &r.WorkflowID, &r.Status, &output, &r.Error, &started, &ended, &r.ReplayOf, &r.ReplayID); err != nil {
		return r, err
	}
	if output.Valid {
		r.Output = json.RawMessage(output.String)
	}
	r.StartedAt = time.UnixMilli(started).UTC()
	if ended.Valid {
		t := time.UnixMilli(ended.Int64).UTC()
		r.EndedAt = &t
	}
	return r, nil
}

// GetRun returns a run by id.
func (d *Driver) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(d.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Run{}, store.ErrNotFound
	}
	if err != nil {
		return store.Run{}, fmt.Errorf("sqlite: get run: %w", err)
	}
	return r, nil
}

// ListRunsByEvent returns the runs an event started or was linked to (a
// batch), oldest first, each once. The union of ids keeps both lookups on
// their indexes.
func (d *Driver) ListRunsByEvent(ctx context.Context, eventID string) ([]store.Run, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE id IN (SELECT id FROM runs WHERE event_id = ? UNION SELECT run_id FROM run_events WHERE event_id = ?)
		ORDER BY started_at, id`, eventID, eventID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	return out, nil
}

// insertFinishedRunSQL inserts a run Herald has no row for. If the run of the
// same (app, function, event) exists under another id, that row is finished
// instead, unless it already is; then nothing is returned.
const insertFinishedRunSQL = `
INSERT INTO runs AS r (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at)
VALUES (?, ?, ?, nullif(?, ''), ?, ?, ?, ?, ?, ?)
ON CONFLICT (app_id, function_id, event_id) WHERE replay_of = '' AND replay_id = '' DO UPDATE
   SET status = excluded.status, output = excluded.output, error = excluded.error, ended_at = excluded.ended_at
 WHERE r.status NOT IN ('Completed', 'Failed', 'Cancelled', 'Skipped')
RETURNING id`

// FinishRun records a run's outcome and its system event, and releases the
// run's singleton keys, in one transaction. The transaction takes the write
// lock when it begins, so the read of the run's status and the write that
// depends on it cannot interleave with another.
func (d *Driver) FinishRun(ctx context.Context, r store.Run, systemEvent *store.Event) error {
	if err := store.ValidateFinish(r); err != nil {
		return err
	}
	if systemEvent != nil {
		if err := store.ValidateForInsert([]store.Event{*systemEvent}); err != nil {
			return err
		}
	}
	now := time.Now()
	if r.StartedAt.IsZero() {
		r.StartedAt = now
	}
	if r.EndedAt == nil {
		r.EndedAt = &now
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		// A run that ends leaves no live waits and holds no singleton key,
		// even when it was reported finished before.
		if r.WorkflowID != "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM waits WHERE workflow_id = ?`, r.WorkflowID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM singletons WHERE run_id = ?`, r.ID); err != nil {
			return err
		}
		var status string
		err := tx.QueryRowContext(ctx, `SELECT status FROM runs WHERE id = ?`, r.ID).Scan(&status)
		switch {
		case err == nil:
			if wire.RunFinished(status) {
				return nil
			}
			_, err = tx.ExecContext(ctx, `UPDATE runs SET status = ?, output = ?, error = ?, ended_at = ? WHERE id = ?`,
				r.Status, jsonParam(r.Output), r.Error, r.EndedAt.UnixMilli(), r.ID)
		case errors.Is(err, sql.ErrNoRows):
			var id string
			err = tx.QueryRowContext(ctx, insertFinishedRunSQL, r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID,
				r.Status, jsonParam(r.Output), r.Error, r.StartedAt.UnixMilli(), r.EndedAt.UnixMilli()).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				return nil // this (app, function, event) already finished under another run id
			}
		}
		if err != nil || systemEvent == nil {
			return err
		}
		e := systemEvent
		_, err = tx.ExecContext(ctx, `INSERT INTO events (id, name, data, ts, v, received_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, e.ID, e.Name, string(e.Data), e.TS, e.V, e.ReceivedAt.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: finish run: %w", err)
	}
	return nil
}

// jsonParam stores a JSON value as text; empty is NULL.
func jsonParam(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return string(raw)
}

func millisParam(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// canonicalJSON returns raw re-encoded with sorted keys, no spacing and every
// number in one form (digits and exponent), so two encodings of one value
// compare equal byte for byte, as Postgres jsonb equality would have them.
// Numbers are compared exactly, not as float64.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return json.Marshal(canonicalNumbers(v))
}

func canonicalNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		return json.Number(canonicalNumber(string(x)))
	case map[string]any:
		for k, e := range x {
			x[k] = canonicalNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonicalNumbers(e)
		}
	}
	return v
}

// canonicalNumber rewrites a JSON number literal as its significant digits
// and a base-ten exponent: "1.50", "15e-1" and "0.15E1" all become "15e-1".
func canonicalNumber(s string) string {
	sign := ""
	rest := s
	if strings.HasPrefix(rest, "-") {
		sign, rest = "-", rest[1:]
	}
	exp := 0
	if i := strings.IndexAny(rest, "eE"); i >= 0 {
		e, err := strconv.Atoi(rest[i+1:])
		if err != nil || e > 1<<30 || e < -(1<<30) {
			return s // an exponent too large to move; compare it as written
		}
		rest, exp = rest[:i], e
	}
	whole, frac, _ := strings.Cut(rest, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return "0"
	}
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	return sign + trimmed + "e" + strconv.Itoa(exp)
}
