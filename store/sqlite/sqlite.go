// Package sqlite is Herald's embedded storage driver, on modernc.org/sqlite (pure
// Go, no cgo). It is the default for `herald dev`: one process, one file, nothing
// to install.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/herald-run/herald/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Driver implements store.Driver on one SQLite database file.
type Driver struct {
	db *sql.DB
	// claimMu makes ClaimEvents calls take turns. SQLite has no row locks to
	// claim with, and its write lock must not be held while the router's fn
	// runs, so claimers in this process are serialized instead (Herald runs
	// one router per SQLite database).
	claimMu sync.Mutex
}

var _ store.Driver = (*Driver)(nil)

// Open opens (creating if needed) the database file at path. The special path
// ":memory:" opens a private in-memory database. It does not apply migrations;
// call Migrate.
func Open(ctx context.Context, path string) (*Driver, error) {
	q := url.Values{}
	// WAL lets readers proceed while a write commits; FULL sync makes every
	// acknowledged commit survive a power cut, which is the ingest contract.
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	if path == ":memory:" {
		dsn = "file::memory:?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// SQLite has one writer at a time; a single connection serializes writes in
	// Go instead of in busy-wait loops, and an in-memory database must not be
	// split across connections.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return &Driver{db: db}, nil
}

// Close closes the database.
func (d *Driver) Close() error { return d.db.Close() }

// Ping checks the database is usable.
func (d *Driver) Ping(ctx context.Context) error { return d.db.PingContext(ctx) }

// Migrate applies pending migrations.
func (d *Driver) Migrate(ctx context.Context) error {
	migrations, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	if _, err := d.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS herald_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for _, m := range migrations {
		err := d.inTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM herald_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO herald_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migration %d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

func (d *Driver) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// insertChunk keeps each statement under SQLite's bound-parameter limit.
const insertChunk = 500

// InsertEvents stores events in one transaction.
func (d *Driver) InsertEvents(ctx context.Context, events []store.Event, dedupeSince time.Time) ([]bool, error) {
	inserted := make([]bool, len(events))
	if len(events) == 0 {
		return inserted, nil
	}
	if err := store.ValidateForInsert(events); err != nil {
		return nil, err
	}
	first := store.FirstOccurrences(events)
	pos := make(map[string]int, len(first))
	for _, i := range first {
		pos[events[i].ID] = i
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(first); start += insertChunk {
			chunk := first[start:min(start+insertChunk, len(first))]
			var b strings.Builder
			b.WriteString(`INSERT INTO events AS e (id, name, data, ts, v, received_at, trace) VALUES `)
			args := make([]any, 0, len(chunk)*7+1)
			for k, i := range chunk {
				if k > 0 {
					b.WriteByte(',')
				}
				b.WriteString("(?,?,?,?,?,?,?)")
				e := &events[i]
				args = append(args, e.ID, e.Name, string(e.Data), e.TS, e.V, e.ReceivedAt.UnixMilli(), e.Trace)
			}
			b.WriteString(` ON CONFLICT (id) DO UPDATE
				SET name = excluded.name, data = excluded.data, ts = excluded.ts, v = excluded.v,
				    received_at = excluded.received_at, trace = excluded.trace, dispatched_at = NULL
				WHERE e.received_at < ? RETURNING id`)
			args = append(args, dedupeSince.UnixMilli())
			rows, err := tx.QueryContext(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				inserted[pos[id]] = true
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: insert events: %w", err)
	}
	return inserted, nil
}

const eventColumns = `seq, id, name, data, ts, v, received_at, dispatched_at, trace`

type scanner interface{ Scan(dest ...any) error }

func scanEvent(row scanner) (store.Event, int64, error) {
	var (
		e          store.Event
		seq        int64
		data       string
		received   int64
		dispatched sql.NullInt64
	)
	if err := row.Scan(&seq, &e.ID, &e.Name, &data, &e.TS, &e.V, &received, &dispatched, &e.Trace); err != nil {
		return e, 0, err
	}
	e.Data = []byte(data)
	e.ReceivedAt = time.UnixMilli(received).UTC()
	e.Dispatched = dispatched.Valid
	return e, seq, nil
}

// GetEvent returns one event by id.
func (d *Driver) GetEvent(ctx context.Context, id string) (store.Event, error) {
	e, _, err := scanEvent(d.db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Event{}, store.ErrNotFound
	}
	if err != nil {
		return store.Event{}, fmt.Errorf("sqlite: get event: %w", err)
	}
	return e, nil
}

// ListEvents pages through events newest first.
func (d *Driver) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, string, error) {
	before, limit, err := f.Page()
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if f.Name != "" {
		where, args = append(where, "name = ?"), append(args, f.Name)
	}
	if !f.ReceivedAfter.IsZero() {
		where, args = append(where, "received_at > ?"), append(args, f.ReceivedAfter.UnixMilli())
	}
	if !f.ReceivedBefore.IsZero() {
		where, args = append(where, "received_at < ?"), append(args, f.ReceivedBefore.UnixMilli())
	}
	if before > 0 {
		where, args = append(where, "seq < ?"), append(args, before)
	}
	query := `SELECT ` + eventColumns + ` FROM events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()
	var (
		out  []store.Event
		seqs []int64
	)
	for rows.Next() {
		e, seq, err := scanEvent(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: list events: %w", err)
		}
		out = append(out, e)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: list events: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodeCursor(seqs[limit-1])
	}
	return out, next, nil
}
