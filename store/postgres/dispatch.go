package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

const upsertAppSQL = `
INSERT INTO apps (id, task_queue, synced_at) VALUES ($1, $2, now())
ON CONFLICT (id) DO UPDATE SET task_queue = excluded.task_queue, synced_at = excluded.synced_at`

// upsertFunctionsSQL creates new functions at version 1 and bumps the version
// of those whose config changed (jsonb equality, so key order and spacing do
// not count). Unchanged functions are not touched and not returned.
const upsertFunctionsSQL = `
INSERT INTO functions AS f (app_id, id, config, version, updated_at)
SELECT $1, u.id, u.config, 1, now() FROM unnest($2::text[], $3::jsonb[]) AS u(id, config)
ON CONFLICT (app_id, id) DO UPDATE
   SET config = excluded.config, version = f.version + 1, updated_at = excluded.updated_at
 WHERE f.config <> excluded.config
RETURNING id, version`

const functionColumns = `app_id, id, config, version, updated_at, paused_at`

// SyncApp stores app and replaces its functions in one transaction.
func (d *Driver) SyncApp(ctx context.Context, app store.App, fns []store.Function) (store.SyncResult, error) {
	if err := store.ValidateFunctionIDs(fns); err != nil {
		return store.SyncResult{}, err
	}
	// Never nil: a nil array is NULL, and "id <> ALL(NULL)" would remove nothing.
	ids := make([]string, len(fns))
	configs := make([]string, len(fns))
	for i, f := range fns {
		ids[i], configs[i] = f.ID, string(f.Config)
	}
	var res store.SyncResult
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		res = store.SyncResult{}
		// The app row is upserted first: its lock makes concurrent syncs of
		// one app take turns, so each reads the functions the last one left.
		if _, err := tx.Exec(ctx, upsertAppSQL, app.ID, app.TaskQueue); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+functionColumns+` FROM functions WHERE app_id = $1 ORDER BY id`, app.ID)
		if err != nil {
			return err
		}
		if res.Previous, err = pgx.CollectRows(rows, scanFunction); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, upsertFunctionsSQL, app.ID, ids, configs)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				id      string
				version int
			)
			if err := rows.Scan(&id, &version); err != nil {
				rows.Close()
				return err
			}
			if version == 1 {
				res.Created = append(res.Created, id)
			} else {
				res.Updated = append(res.Updated, id)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `DELETE FROM functions WHERE app_id = $1 AND id <> ALL($2::text[]) RETURNING id`, app.ID, ids)
		if err != nil {
			return err
		}
		res.Removed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return store.SyncResult{}, wrapErr("sync app", err)
	}
	slices.Sort(res.Created)
	slices.Sort(res.Updated)
	slices.Sort(res.Removed)
	return res, nil
}

func scanFunction(row pgx.CollectableRow) (store.Function, error) {
	var f store.Function
	err := row.Scan(&f.AppID, &f.ID, &f.Config, &f.Version, &f.UpdatedAt, &f.PausedAt)
	return f, err
}

// ListApps returns every app, ordered by id.
func (d *Driver) ListApps(ctx context.Context) ([]store.App, error) {
	rows, err := d.pool.Query(ctx, `SELECT id, task_queue, synced_at FROM apps ORDER BY id`)
	if err != nil {
		return nil, wrapErr("list apps", err)
	}
	apps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.App, error) {
		var a store.App
		err := row.Scan(&a.ID, &a.TaskQueue, &a.SyncedAt)
		return a, err
	})
	if err != nil {
		return nil, wrapErr("list apps", err)
	}
	return apps, nil
}

// ListFunctions returns every function, ordered by app and id.
func (d *Driver) ListFunctions(ctx context.Context) ([]store.Function, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+functionColumns+` FROM functions ORDER BY app_id, id`)
	if err != nil {
		return nil, wrapErr("list functions", err)
	}
	fns, err := pgx.CollectRows(rows, scanFunction)
	if err != nil {
		return nil, wrapErr("list functions", err)
	}
	return fns, nil
}

// ClaimEvents locks up to limit pending events (skipping rows another replica
// holds), calls fn with them while the locks are held, and records fn's claim
// (runs, dispatched events, new waits and resolutions) in the same
// transaction. fn reads waits and flow state through a ClaimTx bound to that
// transaction, so the candidate waits, limiters and keys it sees stay locked
// until the claim commits. A failing fn rolls everything back, flow state
// included. It returns how many pending rows it took: the events, and rows
// whose event is gone (deleted by hand), which it drops without calling fn.
func (d *Driver) ClaimEvents(ctx context.Context, limit int, fn func(ctx context.Context, tx store.ClaimTx, events []store.Event) (store.Claim, error)) (int, error) {
	if limit <= 0 {
		return 0, store.ErrClaimLimit
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return 0, wrapErr("claim events", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	rows, finish, err := claimRows(ctx, tx, d.claimPlanCached(ctx), limit)
	if err != nil {
		return 0, wrapErr("claim events", err)
	}
	defer func() { _ = finish() }() // a no-op once called
	var (
		events []store.Event
		seqs   []int64
		taken  int                     // pending rows taken, with those whose event is gone
		paths  = map[string][]string{} // the claimed names' wait paths
	)
	for rows.Next() {
		var (
			e     store.Event
			seq   int64
			id    *string
			ts    *int64
			recv  *time.Time
			name  string
			names []string
		)
		if err := rows.Scan(&seq, &id, &name, dataDest(&e), &ts, &e.V, &recv, &e.Trace, &names); err != nil {
			rows.Close()
			return 0, wrapErr("claim events", err)
		}
		taken++
		if id == nil {
			continue // its event was deleted: the claim just drops the row
		}
		e.ID, e.Name, e.TS, e.ReceivedAt = *id, name, *ts, *recv
		events = append(events, e)
		seqs = append(seqs, seq)
		if _, ok := paths[name]; !ok {
			paths[name] = names
		}
	}
	if err := rows.Err(); err != nil {
		return 0, wrapErr("claim events", err)
	}
	if err := finish(); err != nil {
		return 0, wrapErr("claim events", err)
	}
	if len(events) == 0 {
		if taken == 0 {
			return 0, nil
		}
		// Only rows whose events are gone (deleted by hand, say): drop them
		// rather than leave them at the head of the outbox for every claim.
		if err := tx.Commit(ctx); err != nil {
			return 0, wrapErr("claim events", err)
		}
		return taken, nil
	}
	ctl := &claimTx{tx: tx, candidates: map[string]bool{}, paths: paths}
	claim, err := fn(ctx, ctl, events)
	ctl.close()
	if err != nil {
		return 0, err
	}
	if err := recordClaim(ctx, tx, events, seqs, claim, ctl.candidates); err != nil {
		return 0, wrapErr("claim events", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, wrapErr("claim events", err)
	}
	d.claimedRows(taken)
	return taken, nil
}

// vacuumEvery is how many claimed pending_events rows make the driver
// vacuum the table, at most once per vacuumGap: under a heavy backlog the
// table is large, and a vacuum every few hundred milliseconds would cost more
// than the dead rows it removes.
const (
	vacuumEvery = 20_000
	vacuumGap   = 2 * time.Second
)

// claimedRows counts n pending_events rows deleted by a claim and, every
// vacuumEvery of them, vacuums the table in the background, one vacuum at a
// time per process. Each claimed event leaves a dead row and a dead index
// entry there, and claims read the index from its oldest end: on a server
// whose autovacuum is off or slow to reach the table they would walk more
// dead entries every minute. The table only ever holds the backlog, so the
// vacuum takes milliseconds, and it blocks neither ingest nor claims.
func (d *Driver) claimedRows(n int) {
	if d.claimed.Add(int64(n)) < vacuumEvery || time.Since(time.Unix(0, d.lastVacuum.Load())) < vacuumGap ||
		!d.vacuuming.CompareAndSwap(false, true) {
		return
	}
	d.claimed.Store(0)
	d.lastVacuum.Store(time.Now().UnixNano())
	d.vacuums.Add(1)
	go func() {
		defer d.vacuums.Done()
		defer d.vacuuming.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// SKIP_LOCKED: another replica's vacuum of it is as good. A role
		// that does not own the table gets a warning, not an error, and
		// leaves it to autovacuum; any error waits for the next round.
		_, _ = d.pool.Exec(ctx, `VACUUM (SKIP_LOCKED) pending_events`)
	}()
}

// How the claim statement is planned. Planning it costs PostgreSQL about as
// much as running it: under 100-event requests to herald serve on a stock
// server (loadgen, the two builds interleaved), claims planned on each call
// made PostgreSQL spend 24.7-26.3 µs of CPU per event, claims run from a
// cached plan 21.2-21.6 µs.
//
// A cached (generic) plan is made once per connection and kept, whatever
// the tables become. Made while they are nearly empty, every index costs the
// planner the same page or two, and it may pick one that cannot find a row
// without reading all of it (events_name_seq_idx for a seq lookup): kept as
// events grows, such a plan reads the whole index for each claimed event.
// So a driver plans the claim on each call (an unnamed statement) until the
// events table has claimCachePages pages; from then on its claims run a
// prepared statement from a generic plan (claimPlanSettings), which the
// planner then makes for a table of that size, on the indexes
// (TestClaimPlanWalksIndexes). It checks the size at most every
// claimSizeEvery, and does not switch back: a plan made for a large table
// stays right for a smaller one.
const (
	claimCachePages = 1024 // 8 MiB of event rows, some tens of thousands of events
	claimSizeEvery  = 10 * time.Second
)

// claimPlanSettings are in force while a cached claim runs, and only then:
// the other statements of the claim's transaction are planned as before. A
// generic plan, without sequential scans (wait_paths is small, but has no
// bound).
var (
	claimPlanSettings = []string{`SET LOCAL plan_cache_mode = force_generic_plan`, `SET LOCAL enable_seqscan = off`}
	claimPlanResets   = []string{`SET LOCAL plan_cache_mode TO DEFAULT`, `SET LOCAL enable_seqscan TO DEFAULT`}
)

// claimRows runs the claim statement in tx: planned for this call, or from
// the connection's cached plan, with claimPlanSettings around it, all in one
// round trip. finish must be called once the rows are read; it reports an
// error of the settings' reset.
func claimRows(ctx context.Context, tx pgx.Tx, cached bool, limit int) (rows pgx.Rows, finish func() error, err error) {
	if !cached {
		rows, err := tx.Query(ctx, claimEventsSQL, pgx.QueryExecModeExec, limit)
		return rows, func() error { return nil }, err
	}
	b := &pgx.Batch{}
	for _, s := range claimPlanSettings {
		b.Queue(s)
	}
	b.Queue(claimEventsSQL, limit)
	for _, s := range claimPlanResets {
		b.Queue(s)
	}
	br := tx.SendBatch(ctx, b)
	finished := false
	finish = func() error {
		if finished {
			return nil
		}
		finished = true
		rows.Close()
		var err error
		for range claimPlanResets {
			if _, e := br.Exec(); e != nil && err == nil {
				err = e
			}
		}
		if e := br.Close(); e != nil && err == nil {
			err = e
		}
		return err
	}
	for range claimPlanSettings {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, nil, err
		}
	}
	if rows, err = br.Query(); err != nil {
		_ = br.Close()
		return nil, nil, err
	}
	return rows, finish, nil
}

// claimPlanCached reports whether this claim runs from a cached plan,
// checking the table's size when it is due.
func (d *Driver) claimPlanCached(ctx context.Context) bool {
	if d.claimCached.Load() {
		return true
	}
	now := time.Now().UnixNano()
	last := d.claimSizeAt.Load()
	if now-last < int64(claimSizeEvery) || !d.claimSizeAt.CompareAndSwap(last, now) {
		return false
	}
	var pages int64
	err := d.pool.QueryRow(ctx, `SELECT pg_relation_size('events') / current_setting('block_size')::bigint`).Scan(&pages)
	if err == nil && pages >= d.claimCachePages {
		d.claimCached.Store(true)
		return true
	}
	return false
}

// claimEventsSQL takes the oldest pending events no other claim holds: it
// deletes their pending_events rows, which the claim's transaction keeps
// locked until it commits (or restores, if it rolls back), and reads the
// events by seq, one row per pending row taken (the event's columns are NULL
// for a row whose event is gone). It also takes the events an older replica wrote during a
// rolling upgrade (dispatched_at NULL, migration 010): it marks them the new
// way, under the same locks and rollback. That index holds no other rows, so
// its probe costs next to nothing. The = ANY(ARRAY(...)) and the LIMIT of
// the lateral read (which the planner cannot pull up into a join) keep every
// plan on the indexes. Each row also carries the match paths of its name's
// waits (wait_paths, read once per distinct name), so the router's wait
// lookup for the claim is then a single statement (CandidateWaits).
const claimEventsSQL = `
WITH c AS (
    DELETE FROM pending_events WHERE seq = ANY(ARRAY(
        SELECT seq FROM pending_events ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED))
    RETURNING seq),
legacy AS (
    UPDATE events SET dispatched_at = '-infinity' WHERE seq = ANY(ARRAY(
        SELECT seq FROM events WHERE dispatched_at IS NULL ORDER BY seq
         LIMIT greatest($1 - (SELECT count(*) FROM c), 0) FOR UPDATE SKIP LOCKED))
    RETURNING seq),
ev AS (
    SELECT t.seq, e.id, e.name, e.data, e.ts, e.v, e.received_at, e.trace
      FROM (SELECT seq FROM c UNION ALL SELECT seq FROM legacy) t
      LEFT JOIN LATERAL (SELECT id, name, data, ts, v, received_at, trace FROM events
                          WHERE events.seq = t.seq LIMIT 1) e ON true),
paths AS (
    SELECT p.event_name, array_agg(p.match_path ORDER BY p.match_path) AS paths
      FROM wait_paths p
     WHERE p.event_name = ANY(ARRAY(SELECT DISTINCT name FROM ev WHERE name IS NOT NULL))
     GROUP BY p.event_name)
SELECT ev.seq, ev.id, coalesce(ev.name, ''), ev.data, ev.ts, coalesce(ev.v, ''), ev.received_at, coalesce(ev.trace, ''),
       coalesce(paths.paths, '{}')
  FROM ev LEFT JOIN paths ON paths.event_name = ev.name
 ORDER BY ev.seq`

const insertRunsSQL = `
INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at)
SELECT u.id, u.app_id, u.function_id, nullif(u.event_id, ''), u.workflow_id, u.status, u.output, u.error, u.started_at, u.ended_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[],
              $9::timestamptz[], $10::timestamptz[])
       AS u(id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at)
ON CONFLICT DO NOTHING`

// recordClaim stores claim's runs (ignoring those that exist), registers its
// waits, applies its resolutions (only of waits in candidates, which this
// transaction holds locked) and makes the claimed events that claim does not
// list as dispatched pending again.
func recordClaim(ctx context.Context, tx pgx.Tx, events []store.Event, seqs []int64, claim store.Claim, candidates map[string]bool) error {
	for _, w := range claim.Waits {
		if err := store.ValidateWait(w); err != nil {
			return err
		}
	}
	resolved, err := store.ClaimResolutions(claim.Resolved, func(id string) bool { return candidates[id] })
	if err != nil {
		return err
	}
	if n := len(claim.Runs); n > 0 {
		var (
			ids     = make([]string, n)
			apps    = make([]string, n)
			fns     = make([]string, n)
			evs     = make([]string, n)
			wfs     = make([]string, n)
			sts     = make([]string, n)
			errs    = make([]string, n)
			outputs = make([]*string, n)
			started = make([]time.Time, n)
			ended   = make([]*time.Time, n)
		)
		now := time.Now()
		for i, r := range claim.Runs {
			if err := store.ValidateRun(r); err != nil {
				return err
			}
			ids[i], apps[i], fns[i], evs[i], wfs[i], sts[i], errs[i] = r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID, r.Status, r.Error
			outputs[i], started[i], ended[i] = jsonParam(r.Output), r.StartedAt, r.EndedAt
			if started[i].IsZero() {
				started[i] = now
			}
		}
		if _, err := tx.Exec(ctx, insertRunsSQL, ids, apps, fns, evs, wfs, sts, outputs, errs, started, ended); err != nil {
			return err
		}
	}
	done := make(map[string]bool, len(claim.Dispatched))
	for _, id := range claim.Dispatched {
		done[id] = true
	}
	var again []int64
	for i, e := range events {
		if !done[e.ID] {
			again = append(again, seqs[i])
		}
	}
	if len(again) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO pending_events (seq) SELECT unnest($1::bigint[])`, again); err != nil {
			return err
		}
	}
	if len(claim.Waits) > 0 {
		if _, err := insertWaits(ctx, tx, claim.Waits); err != nil {
			return err
		}
	}
	return resolveWaits(ctx, tx, resolved)
}

// PendingEvents counts events not yet dispatched.
func (d *Driver) PendingEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := d.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pending_events) + (SELECT count(*) FROM events WHERE dispatched_at IS NULL)`).Scan(&n); err != nil {
		return 0, wrapErr("pending events", err)
	}
	return n, nil
}

const runColumns = `id, app_id, function_id, coalesce(event_id, ''), workflow_id, status, output, error, started_at, ended_at, replay_of, replay_id`

func scanRun(row pgx.Row) (store.Run, error) {
	var (
		r      store.Run
		output []byte
	)
	err := row.Scan(&r.ID, &r.AppID, &r.FunctionID, &r.EventID, &r.WorkflowID, &r.Status, &output, &r.Error, &r.StartedAt, &r.EndedAt, &r.ReplayOf, &r.ReplayID)
	if output != nil {
		r.Output = json.RawMessage(output)
	}
	return r, err
}

// GetRun returns a run by id.
func (d *Driver) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(d.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Run{}, store.ErrNotFound
	}
	if err != nil {
		return store.Run{}, wrapErr("get run", err)
	}
	return r, nil
}

// listRunsByEventSQL selects an event's own runs and the runs linked to it,
// each once. The union of ids keeps both lookups on their indexes (an OR of
// the two conditions would scan runs).
const listRunsByEventSQL = `
SELECT ` + runColumns + ` FROM runs
 WHERE id IN (SELECT id FROM runs WHERE event_id = $1
              UNION
              SELECT run_id FROM run_events WHERE event_id = $1)
 ORDER BY started_at, id`

// ListRunsByEvent returns the runs an event started or was linked to (a
// batch), oldest first.
func (d *Driver) ListRunsByEvent(ctx context.Context, eventID string) ([]store.Run, error) {
	rows, err := d.pool.Query(ctx, listRunsByEventSQL, eventID)
	if err != nil {
		return nil, wrapErr("list runs", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row) })
	if err != nil {
		return nil, wrapErr("list runs", err)
	}
	return runs, nil
}

const finishedStatuses = `('Completed', 'Failed', 'Cancelled', 'Skipped')`

// insertFinishedRunSQL inserts a run Herald has no row for. If the run of the
// same (app, function, event) exists under another id, that row is finished
// instead, unless it already is; then nothing is returned.
const insertFinishedRunSQL = `
INSERT INTO runs AS r (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at)
VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7, $8, $9, coalesce($10::timestamptz, now()))
ON CONFLICT (app_id, function_id, event_id) WHERE replay_of = '' AND replay_id = '' DO UPDATE
   SET status = excluded.status, output = excluded.output, error = excluded.error, ended_at = excluded.ended_at
 WHERE r.status NOT IN ` + finishedStatuses + `
RETURNING id`

const insertSystemEventSQL = `
WITH e AS (
    INSERT INTO events (id, name, data, ts, v, received_at, dispatched_at) VALUES ($1, $2, $3, $4, $5, $6, '-infinity')
    ON CONFLICT (id) DO NOTHING
    RETURNING seq)
INSERT INTO pending_events (seq) SELECT seq FROM e`

// FinishRun records a run's outcome and its system event, and releases the
// run's singleton keys, in one transaction.
func (d *Driver) FinishRun(ctx context.Context, r store.Run, systemEvent *store.Event) error {
	if err := store.ValidateFinish(r); err != nil {
		return err
	}
	if systemEvent != nil {
		if err := store.ValidateForInsert([]store.Event{*systemEvent}); err != nil {
			return err
		}
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now()
	}
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return finishRun(ctx, tx, r, systemEvent) })
		// A concurrent FinishRun inserted the same run first; the retry finds
		// its row and sees it finished.
		if isUniqueViolation(err) && attempt < 2 {
			continue
		}
		if err != nil {
			return wrapErr("finish run", err)
		}
		return nil
	}
}

func finishRun(ctx context.Context, tx pgx.Tx, r store.Run, systemEvent *store.Event) error {
	// A run that ends leaves no live waits and holds no singleton key, even
	// when it was reported finished before. This comes first: it may wait for
	// a claim that holds one of the waits or keys locked, and must not hold
	// the run's row meanwhile (the claim inserts runs when it commits). A key
	// a claim handed to another run meanwhile is not deleted: the delete
	// rechecks run_id on the row the claim left.
	if r.WorkflowID != "" {
		if _, err := tx.Exec(ctx, `DELETE FROM waits WHERE workflow_id = $1`, r.WorkflowID); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM singletons WHERE run_id = $1`, r.ID); err != nil {
		return err
	}
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM runs WHERE id = $1 FOR UPDATE`, r.ID).Scan(&status)
	switch {
	case err == nil:
		if wire.RunFinished(status) {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE runs SET status = $2, output = $3, error = $4, ended_at = coalesce($5::timestamptz, now())
			WHERE id = $1`, r.ID, r.Status, jsonParam(r.Output), r.Error, r.EndedAt)
	case errors.Is(err, pgx.ErrNoRows):
		var id string
		err = tx.QueryRow(ctx, insertFinishedRunSQL, r.ID, r.AppID, r.FunctionID, r.EventID, r.WorkflowID,
			r.Status, jsonParam(r.Output), r.Error, r.StartedAt, r.EndedAt).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // this (app, function, event) already finished under another run id
		}
	}
	if err != nil || systemEvent == nil {
		return err
	}
	e := systemEvent
	_, err = tx.Exec(ctx, insertSystemEventSQL, e.ID, e.Name, string(e.Data), e.TS, e.V, e.ReceivedAt)
	return err
}

// jsonParam passes a JSON value to a jsonb parameter; empty is NULL.
func jsonParam(raw json.RawMessage) *string {
	if len(raw) == 0 {
		return nil
	}
	s := string(raw)
	return &s
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
