-- Recovery: pausing a function, replaying and rerunning runs. See the
-- PostgreSQL migration of the same number for the why.

ALTER TABLE functions ADD COLUMN paused_at INTEGER;

-- SQLite cannot drop a table constraint: runs is rebuilt without its
-- UNIQUE (app_id, function_id, event_id), which becomes a partial index.
CREATE TABLE runs_new (
    id          TEXT    PRIMARY KEY,
    app_id      TEXT    NOT NULL,
    function_id TEXT    NOT NULL,
    event_id    TEXT,
    workflow_id TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    output      TEXT,
    error       TEXT    NOT NULL DEFAULT '',
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    replay_of   TEXT    NOT NULL DEFAULT '',
    replay_id   TEXT    NOT NULL DEFAULT ''
);
INSERT INTO runs_new (id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at)
SELECT id, app_id, function_id, event_id, workflow_id, status, output, error, started_at, ended_at FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE UNIQUE INDEX runs_event_once_idx ON runs (app_id, function_id, event_id) WHERE replay_of = '' AND replay_id = '';
CREATE INDEX runs_event_idx ON runs (event_id, started_at, id);
CREATE INDEX runs_active_idx ON runs (app_id, function_id, id) WHERE status IN ('Scheduled', 'Running');
CREATE INDEX runs_ended_idx ON runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX runs_started_idx ON runs (started_at, id);
CREATE INDEX runs_function_started_idx ON runs (app_id, function_id, started_at, id);

CREATE TABLE replays (
    id           TEXT    PRIMARY KEY,
    app_id       TEXT    NOT NULL,
    function_id  TEXT    NOT NULL,
    from_at      INTEGER NOT NULL,
    to_at        INTEGER NOT NULL,
    statuses     TEXT    NOT NULL DEFAULT '[]',
    events       INTEGER NOT NULL DEFAULT 0,
    expr         TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL,
    matched      INTEGER NOT NULL DEFAULT 0,
    started      INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    error        TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    owner        TEXT    NOT NULL DEFAULT '',
    heartbeat_at INTEGER NOT NULL DEFAULT 0,
    cursor       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX replays_running_idx ON replays (heartbeat_at) WHERE status = 'Running';
CREATE INDEX replays_finished_idx ON replays (updated_at) WHERE status <> 'Running';
