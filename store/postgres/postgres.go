// Package postgres is Herald's production storage driver, on PostgreSQL through
// pgx/v5. Several Herald replicas may share one database.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockID is the advisory lock that serializes concurrent migrations.
const migrationLockID = 0x4865_7261_6c64 // "Herald"

// Driver implements store.Driver on a pgx connection pool.
type Driver struct {
	pool *pgxpool.Pool

	// Claims delete pending_events rows; every vacuumEvery of them the
	// driver vacuums the table itself (see vacuumPending).
	claimed    atomic.Int64
	vacuuming  atomic.Bool
	lastVacuum atomic.Int64 // UnixNano of the last vacuum's start
	vacuums    sync.WaitGroup

	// Claims run from a cached plan once events holds claimCachePages
	// pages (see claimPlanCached).
	claimCachePages int64
	claimCached     atomic.Bool
	claimSizeAt     atomic.Int64 // UnixNano of the last size check
}

var _ store.Driver = (*Driver)(nil)

// Open connects to the database at url (a postgres:// URL or DSN). It does not
// apply migrations; call Migrate.
func Open(ctx context.Context, url string) (*Driver, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	// Claimers hold a connection across their Temporal calls; leave room for
	// ingest's flushers and the API beside them.
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	return &Driver{pool: pool, claimCachePages: claimCachePages}, nil
}

// Pool exposes the connection pool to Herald's own tools (benchmarks, test
// harnesses). Application code goes through the store.Driver methods.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// Close closes the pool.
func (d *Driver) Close() error {
	d.vacuums.Wait()
	d.pool.Close()
	return nil
}

// Ping checks that a connection can be made and used.
func (d *Driver) Ping(ctx context.Context) error {
	return d.pool.Ping(ctx)
}

// Migrate applies pending migrations under an advisory lock, so replicas
// starting together do not race.
func (d *Driver) Migrate(ctx context.Context) error {
	migrations, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must be released even if ctx is done.
		_, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLockID)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS herald_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM herald_migrations`)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	for _, v := range versions {
		applied[int(v)] = true
	}
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO herald_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// insertEventsSQL accepts again the events whose ids were accepted before $8
// (past the dedupe window): their rows take the new content and are pending
// again.
const insertEventsSQL = `
WITH e AS (
    INSERT INTO events AS e (id, name, data, ts, v, received_at, trace, dispatched_at)
    SELECT *, '-infinity'::timestamptz FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::text[], $6::timestamptz[], $7::text[])
    ON CONFLICT (id) DO UPDATE
       SET name = excluded.name, data = excluded.data, ts = excluded.ts, v = excluded.v,
           received_at = excluded.received_at, trace = excluded.trace, dispatched_at = '-infinity'
     WHERE e.received_at < $8
    RETURNING seq, id),
p AS (INSERT INTO pending_events (seq) SELECT seq FROM e ON CONFLICT DO NOTHING)
SELECT id FROM e`

// InsertEvents stores events in one transaction. Events whose ids Herald just
// generated go in with a plain insert; events with a client's id go through
// an upsert that implements deduplication. Each statement also makes its new
// events pending (pending_events). A batch of only one kind is a single
// statement.
func (d *Driver) InsertEvents(ctx context.Context, events []store.Event, dedupeSince time.Time) ([]bool, error) {
	inserted := make([]bool, len(events))
	if len(events) == 0 {
		return inserted, nil
	}
	if err := store.ValidateForInsert(events); err != nil {
		return nil, err
	}
	var fresh, keyed []int
	for _, i := range store.FirstOccurrences(events) {
		if events[i].Fresh {
			fresh = append(fresh, i)
		} else {
			keyed = append(keyed, i)
		}
	}
	var err error
	switch {
	case len(keyed) == 0:
		err = insertFresh(ctx, d.pool, events, fresh)
	case len(fresh) == 0:
		err = upsertEvents(ctx, d.pool, events, keyed, dedupeSince, inserted)
	default:
		err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			if err := insertFresh(ctx, tx, events, fresh); err != nil {
				return err
			}
			return upsertEvents(ctx, tx, events, keyed, dedupeSince, inserted)
		})
	}
	if err != nil {
		return nil, wrapErr("insert events", err)
	}
	for _, i := range fresh {
		inserted[i] = true
	}
	return inserted, nil
}

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func insertFresh(ctx context.Context, q querier, events []store.Event, idx []int) error {
	rows, err := q.Query(ctx, insertFreshSQL, eventColumnsOf(events, idx)...)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// eventColumnsOf returns the events at idx as one array per column, the
// arguments of the unnest inserts.
func eventColumnsOf(events []store.Event, idx []int) []any {
	var (
		ids   = make([]string, len(idx))
		names = make([]string, len(idx))
		datas = make([]string, len(idx))
		tss   = make([]int64, len(idx))
		vs    = make([]string, len(idx))
		recvd = make([]time.Time, len(idx))
		trcs  = make([]string, len(idx))
	)
	for j, i := range idx {
		e := &events[i]
		ids[j], names[j], datas[j], tss[j], vs[j], recvd[j], trcs[j] = e.ID, e.Name, string(e.Data), e.TS, e.V, e.ReceivedAt, e.Trace
	}
	return []any{ids, names, datas, tss, vs, recvd, trcs}
}

const insertFreshSQL = `
WITH e AS (
    INSERT INTO events (id, name, data, ts, v, received_at, trace, dispatched_at)
    SELECT *, '-infinity'::timestamptz FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::text[], $6::timestamptz[], $7::text[])
    RETURNING seq)
INSERT INTO pending_events (seq) SELECT seq FROM e`

// upsertEvents inserts events with a client's id in one statement: new ids
// go in, ids accepted before dedupeSince are accepted again, and the ids it
// wrote are marked in inserted. The ids within the window are duplicates.
// The statement locks an existing row only for a duplicate, and no claim
// holds event rows locked (claims lock pending_events), so a client retrying
// a send never waits behind a dispatch.
func upsertEvents(ctx context.Context, q querier, events []store.Event, idx []int, dedupeSince time.Time, inserted []bool) error {
	pos := make(map[string]int, len(idx))
	for _, i := range idx {
		pos[events[i].ID] = i
	}
	rows, err := q.Query(ctx, insertEventsSQL, append(eventColumnsOf(events, idx), dedupeSince)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		inserted[pos[id]] = true
	}
	return rows.Err()
}

// eventColumns reads an event of the table events (unaliased); dispatched is
// whether it has left pending_events (and, for a row an older replica wrote,
// whether the router marked it: see migration 010).
const eventColumns = `seq, id, name, data, ts, v, received_at,
	dispatched_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pending_events p WHERE p.seq = events.seq), trace`

func scanEvent(row pgx.Row) (store.Event, int64, error) {
	var (
		e   store.Event
		seq int64
	)
	err := row.Scan(&seq, &e.ID, &e.Name, dataDest(&e), &e.TS, &e.V, &e.ReceivedAt, &e.Dispatched, &e.Trace)
	return e, seq, err
}

// dataDest is where a scan puts an event's jsonb data: its bytes, copied as
// they come. Scanned into a json.RawMessage, pgx would run json.Unmarshal
// over them (validating JSON that PostgreSQL already validated): a seventh
// of herald serve's CPU under 100-event requests went there, in the claims.
func dataDest(e *store.Event) *[]byte { return (*[]byte)(&e.Data) }

// GetEvent returns one event by id.
func (d *Driver) GetEvent(ctx context.Context, id string) (store.Event, error) {
	e, _, err := scanEvent(d.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Event{}, store.ErrNotFound
	}
	if err != nil {
		return store.Event{}, wrapErr("get event", err)
	}
	return e, nil
}

// ListEvents pages through events newest first.
func (d *Driver) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error) {
	before, limit, err := f.Page()
	if err != nil {
		return nil, "", err
	}
	var after, until *time.Time
	if !f.ReceivedAfter.IsZero() {
		after = &f.ReceivedAfter
	}
	if !f.ReceivedBefore.IsZero() {
		until = &f.ReceivedBefore
	}
	var name *string
	if f.Name != "" {
		name = &f.Name
	}
	var cursor *int64
	if before > 0 {
		cursor = &before
	}
	rows, err := d.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE ($1::text IS NULL OR name = $1)
		  AND ($2::timestamptz IS NULL OR received_at > $2)
		  AND ($3::timestamptz IS NULL OR received_at < $3)
		  AND ($4::bigint IS NULL OR seq < $4)
		ORDER BY seq DESC
		LIMIT $5`, name, after, until, cursor, limit+1)
	if err != nil {
		return nil, "", wrapErr("list events", err)
	}
	defer rows.Close()
	var (
		out  []store.Event
		seqs []int64
	)
	for rows.Next() {
		e, seq, err := scanEvent(rows)
		if err != nil {
			return nil, "", wrapErr("list events", err)
		}
		out = append(out, e)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrapErr("list events", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodeCursor(seqs[limit-1])
	}
	return out, next, nil
}

// wrapErr names the operation and marks data errors (SQLSTATE class 22, such as
// a JSON value Postgres cannot store) as store.ErrInvalidData.
func wrapErr(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22" {
		return fmt.Errorf("postgres: %s: %w: %s", op, store.ErrInvalidData, pgErr.Message)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}
