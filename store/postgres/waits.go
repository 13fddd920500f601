package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-run/herald/store"
)

// errClaimOver is returned by a ClaimTx used after its fn returned.
var errClaimOver = errors.New("postgres: claim transaction used after its fn returned")

// claimTx reads waits, and reads and writes flow state (see flow.go), in a
// claim's transaction. A pgx.Tx serves one query at a time, so calls are
// serialized; candidates remembers the waits CandidateWaits returned (and
// locked), the only ones the claim may resolve.
type claimTx struct {
	mu         sync.Mutex
	tx         pgx.Tx
	candidates map[string]bool
	// paths holds the wait paths of the claimed events' names, read by the
	// claim statement; WaitPaths answers from it for those names.
	paths map[string][]string
	over  bool
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
	// The claim statement read the paths of its events' names: no round
	// trip for those.
	var unread []string
	for _, n := range names {
		if ps, ok := c.paths[n]; ok {
			if len(ps) > 0 {
				out[n] = ps
			}
		} else {
			unread = append(unread, n)
		}
	}
	if len(unread) == 0 {
		return out, nil
	}
	rows, err := c.tx.Query(ctx, `SELECT event_name, match_path FROM wait_paths
		WHERE event_name = ANY($1) ORDER BY event_name, match_path`, unread)
	if err != nil {
		return nil, wrapErr("wait paths", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, path string
		if err := rows.Scan(&name, &path); err != nil {
			return nil, wrapErr("wait paths", err)
		}
		out[name] = append(out[name], path)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("wait paths", err)
	}
	return out, nil
}

// candidateWaitsSQL finds the pending waits of every key with one index probe
// each (waits_pending_key_idx); the non-indexable waits of a name come with
// its key of empty path and value. A wait another claim holds is waited for,
// not skipped: skipping would let an event that claim does not resolve the
// wait with pass it by. Rows are locked in id order, so claims cannot
// deadlock on each other.
const candidateWaitsSQL = `
SELECT ` + waitColumnsW + `
  FROM unnest($1::text[], $2::text[], $3::text[]) AS k(event_name, match_path, match_value)
  JOIN waits w ON w.event_name = k.event_name AND w.match_path = k.match_path AND w.match_value = k.match_value
 WHERE w.resolved_at IS NULL AND w.expires_at > now()
 ORDER BY w.id
   FOR UPDATE OF w`

// CandidateWaits returns and locks the pending waits matching keys, and the
// non-indexable pending waits of names, oldest first (ids are ULIDs).
func (c *claimTx) CandidateWaits(ctx context.Context, names []string, keys []store.WaitKey) ([]store.Wait, error) {
	all := store.CandidateKeys(names, keys)
	if len(all) == 0 {
		return nil, nil
	}
	en, mp, mv := make([]string, len(all)), make([]string, len(all)), make([]string, len(all))
	for i, k := range all {
		en[i], mp[i], mv[i] = k.EventName, k.MatchPath, k.MatchValue
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	rows, err := c.tx.Query(ctx, candidateWaitsSQL, en, mp, mv)
	if err != nil {
		return nil, wrapErr("candidate waits", err)
	}
	waits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Wait, error) { return scanWait(row) })
	if err != nil {
		return nil, wrapErr("candidate waits", err)
	}
	for _, w := range waits {
		c.candidates[w.ID] = true
	}
	return waits, nil
}

const waitColumns = `id, kind, app_id, function_id, run_id, workflow_id, step_id, event_name, match_path, match_value,
	expr, trigger_event, since, expires_at, created_at, resolved_at, resolved_by`

const waitColumnsW = `w.id, w.kind, w.app_id, w.function_id, w.run_id, w.workflow_id, w.step_id, w.event_name,
	w.match_path, w.match_value, w.expr, w.trigger_event, w.since, w.expires_at, w.created_at, w.resolved_at, w.resolved_by`

func scanWait(row pgx.Row) (store.Wait, error) {
	var (
		w       store.Wait
		trigger []byte
	)
	err := row.Scan(&w.ID, &w.Kind, &w.AppID, &w.FunctionID, &w.RunID, &w.WorkflowID, &w.StepID, &w.EventName,
		&w.MatchPath, &w.MatchValue, &w.Expr, &trigger, &w.Since, &w.ExpiresAt, &w.CreatedAt, &w.ResolvedAt, &w.ResolvedBy)
	if trigger != nil {
		w.TriggerEvent = trigger
	}
	return w, err
}

const insertWaitsSQL = `
INSERT INTO waits (id, kind, app_id, function_id, run_id, workflow_id, step_id, event_name, match_path, match_value,
                   expr, trigger_event, since, expires_at, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::timestamptz[], $14::timestamptz[],
                     $15::timestamptz[])
ON CONFLICT (workflow_id, kind, step_id) DO NOTHING
RETURNING ` + waitColumns

// insertWaits stores waits (validated), ignoring those whose (workflow, kind,
// step) exists, then records their match paths, and returns the waits it
// inserted. The path comes after its wait: PurgeWaits removes a path only
// under a lock that waits for uncommitted wait inserts (see cleanWaitPaths).
func insertWaits(ctx context.Context, tx pgx.Tx, waits []store.Wait) ([]store.Wait, error) {
	waits = store.SortWaitsByKey(waits)
	n := len(waits)
	var (
		ids, kinds, apps, fns, runs, wfs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		steps, names, paths, values      = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		exprs                            = make([]string, n)
		triggers                         = make([]*string, n)
		since, expires, created          = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	)
	now := time.Now()
	for i, w := range waits {
		ids[i], kinds[i], apps[i], fns[i], runs[i], wfs[i] = w.ID, w.Kind, w.AppID, w.FunctionID, w.RunID, w.WorkflowID
		steps[i], names[i], paths[i], values[i], exprs[i] = w.StepID, w.EventName, w.MatchPath, w.MatchValue, w.Expr
		triggers[i], since[i], expires[i], created[i] = jsonParam(w.TriggerEvent), w.Since, w.ExpiresAt, w.CreatedAt
		if created[i].IsZero() {
			created[i] = now
		}
	}
	rows, err := tx.Query(ctx, insertWaitsSQL, ids, kinds, apps, fns, runs, wfs, steps, names, paths, values, exprs,
		triggers, since, expires, created)
	if err != nil {
		return nil, err
	}
	inserted, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Wait, error) { return scanWait(row) })
	if err != nil {
		return nil, err
	}
	type path struct{ name, path string }
	var newPaths []path
	for _, w := range inserted {
		if w.MatchPath != "" {
			newPaths = append(newPaths, path{w.EventName, w.MatchPath})
		}
	}
	if len(newPaths) == 0 {
		return inserted, nil
	}
	// Sorted and distinct: concurrent inserts of one path take turns in one
	// order, and a statement never inserts a key twice.
	slices.SortFunc(newPaths, func(a, b path) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.path, b.path))
	})
	newPaths = slices.Compact(newPaths)
	pn, pp := make([]string, len(newPaths)), make([]string, len(newPaths))
	for i, p := range newPaths {
		pn[i], pp[i] = p.name, p.path
	}
	_, err = tx.Exec(ctx, `INSERT INTO wait_paths (event_name, match_path)
		SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, pn, pp)
	return inserted, err
}

// resolveWaits applies resolutions; a wait already resolved keeps its first.
func resolveWaits(ctx context.Context, tx pgx.Tx, resolved []store.WaitResolution) error {
	if len(resolved) == 0 {
		return nil
	}
	ids, evs := make([]string, len(resolved)), make([]string, len(resolved))
	for i, r := range resolved {
		ids[i], evs[i] = r.WaitID, r.EventID
	}
	_, err := tx.Exec(ctx, `UPDATE waits w SET resolved_at = now(), resolved_by = u.event_id
		FROM unnest($1::text[], $2::text[]) AS u(id, event_id)
		WHERE w.id = u.id AND w.resolved_at IS NULL`, ids, evs)
	return err
}

// RegisterWait stores w, or returns the wait stored under its (WorkflowID,
// Kind, StepID). A concurrent registration of the same key waits for the
// first to commit and then returns its wait.
func (d *Driver) RegisterWait(ctx context.Context, w store.Wait) (store.Wait, error) {
	if err := store.ValidateWait(w); err != nil {
		return store.Wait{}, err
	}
	var out store.Wait
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		inserted, err := insertWaits(ctx, tx, []store.Wait{w})
		if err != nil {
			return err
		}
		if len(inserted) == 1 {
			out = inserted[0]
			return nil
		}
		out, err = scanWait(tx.QueryRow(ctx, `SELECT `+waitColumns+` FROM waits
			WHERE workflow_id = $1 AND kind = $2 AND step_id = $3`, w.WorkflowID, w.Kind, w.StepID))
		return err
	})
	if err != nil {
		return store.Wait{}, wrapErr("register wait", err)
	}
	return out, nil
}

// EventsSince returns the events named name received at or after since,
// oldest first.
func (d *Driver) EventsSince(ctx context.Context, name string, since time.Time, match store.WaitKey, limit int) ([]store.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: events since: limit must be positive, got %d", limit)
	}
	var (
		rows pgx.Rows
		err  error
	)
	if path := store.DataPath(match.MatchPath); path != nil && match.MatchValue != "" {
		// jsonb equality is semantic (1.0 = 1, escapes decoded), so this never
		// drops an event the caller's exact check would accept.
		rows, err = d.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
			WHERE name = $1 AND received_at >= $2 AND data #> $4::text[] = $5::jsonb
			ORDER BY received_at, seq LIMIT $3`, name, since, limit, path, match.MatchValue)
	} else {
		rows, err = d.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
			WHERE name = $1 AND received_at >= $2 ORDER BY received_at, seq LIMIT $3`, name, since, limit)
	}
	if err != nil {
		return nil, wrapErr("events since", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		e, _, err := scanEvent(row)
		return e, err
	})
	if err != nil {
		return nil, wrapErr("events since", err)
	}
	return events, nil
}

// ResolveWait resolves a pending, unexpired wait. If a claim holds the wait
// locked, it waits for that claim to commit and then sees its outcome.
func (d *Driver) ResolveWait(ctx context.Context, waitID, eventID string) (bool, error) {
	if eventID == "" {
		return false, fmt.Errorf("postgres: resolve wait %q: an event id is required", waitID)
	}
	tag, err := d.pool.Exec(ctx, `UPDATE waits SET resolved_at = now(), resolved_by = $2
		WHERE id = $1 AND resolved_at IS NULL AND expires_at > now()`, waitID, eventID)
	if err != nil {
		return false, wrapErr("resolve wait", err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetWait returns the wait of a run's step.
func (d *Driver) GetWait(ctx context.Context, workflowID, kind, stepID string) (store.Wait, error) {
	w, err := scanWait(d.pool.QueryRow(ctx, `SELECT `+waitColumns+` FROM waits
		WHERE workflow_id = $1 AND kind = $2 AND step_id = $3`, workflowID, kind, stepID))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Wait{}, store.ErrNotFound
	}
	if err != nil {
		return store.Wait{}, wrapErr("get wait", err)
	}
	return w, nil
}

// DeleteRunWaits removes a run's waits.
func (d *Driver) DeleteRunWaits(ctx context.Context, workflowID string) error {
	if _, err := d.pool.Exec(ctx, `DELETE FROM waits WHERE workflow_id = $1`, workflowID); err != nil {
		return wrapErr("delete run waits", err)
	}
	return nil
}

// purgeBatch bounds each purge transaction, so a large backlog never holds
// many row locks or one long transaction.
const purgeBatch = 5000

// purgeWaitsSQL deletes one batch. Waits a claim holds locked are skipped;
// the next purge removes them.
const purgeWaitsSQL = `
WITH doomed AS (
    SELECT id FROM waits WHERE expires_at < $1 OR resolved_at < $1
     LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM waits w USING doomed d WHERE w.id = d.id`

// PurgeWaits deletes waits expired or resolved before before, in batches,
// then removes the match paths no pending wait uses.
func (d *Driver) PurgeWaits(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := d.pool.Exec(ctx, purgeWaitsSQL, before, purgeBatch)
		if err != nil {
			return total, wrapErr("purge waits", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() == 0 {
			break
		}
	}
	if err := d.cleanWaitPaths(ctx); err != nil {
		return total, wrapErr("purge waits", err)
	}
	return total, nil
}

// cleanWaitPaths deletes the paths without pending waits. A wait being
// registered must never lose its path, and its insert is invisible here until
// it commits; so this runs under a SHARE lock on waits, which waits for
// uncommitted wait inserts (they commit, and are seen) and holds off new
// ones (they insert their path again after this commits). Registration adds
// its path after its wait, which is what makes this exact. The lock is given
// up after a short timeout: a stale path is harmless, a stalled router is not.
func (d *Driver) cleanWaitPaths(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '200ms'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE waits IN SHARE MODE`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM wait_paths p WHERE NOT EXISTS (
			SELECT 1 FROM waits w
			 WHERE w.event_name = p.event_name AND w.match_path = p.match_path AND w.resolved_at IS NULL)`)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available: try next time
		return nil
	}
	return err
}

// WaitStats counts pending waits and the non-indexable ones among them.
func (d *Driver) WaitStats(ctx context.Context) (pending, unindexed int64, err error) {
	err = d.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE match_path = '')
		FROM waits WHERE resolved_at IS NULL AND expires_at > now()`).Scan(&pending, &unindexed)
	if err != nil {
		return 0, 0, wrapErr("wait stats", err)
	}
	return pending, unindexed, nil
}
