-- The events table is Herald's outbox: every accepted event is a row, pending
-- until the router sets dispatched_at. Times are milliseconds since the epoch.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    ts            INTEGER NOT NULL,
    v             TEXT    NOT NULL DEFAULT '',
    received_at   INTEGER NOT NULL,
    dispatched_at INTEGER
);

CREATE INDEX events_name_seq_idx ON events (name, seq);
CREATE INDEX events_pending_idx ON events (seq) WHERE dispatched_at IS NULL;
