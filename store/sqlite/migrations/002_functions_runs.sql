-- Apps and their functions, as last synced by the app's workers. Times are
-- milliseconds since the epoch; JSON is stored as the worker sent it.
CREATE TABLE apps (
    id         TEXT    PRIMARY KEY,
    task_queue TEXT    NOT NULL,
    synced_at  INTEGER NOT NULL
);

CREATE TABLE functions (
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    id         TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
);

-- One row per run. Runs outlive their function (no foreign key), so history
-- survives a sync that removes it. event_id is NULL for runs without a stored
-- event (cron runs): NULLs never conflict, so such runs are not deduplicated.
CREATE TABLE runs (
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
    -- A re-dispatched event never records a second run of a function.
    UNIQUE (app_id, function_id, event_id)
);

-- The runs of an event, oldest first.
CREATE INDEX runs_event_idx ON runs (event_id, started_at, id);
