-- Apps and their functions, as last synced by the app's workers.
CREATE TABLE apps (
    id         text        PRIMARY KEY,
    task_queue text        NOT NULL,
    synced_at  timestamptz NOT NULL
);

CREATE TABLE functions (
    app_id     text        NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    id         text        NOT NULL,
    config     jsonb       NOT NULL,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, id)
);

-- One row per run. Runs outlive their function (no foreign key), so history
-- survives a sync that removes it. event_id is NULL for runs without a stored
-- event (cron runs): NULLs never conflict, so such runs are not deduplicated.
CREATE TABLE runs (
    id          text        PRIMARY KEY,
    app_id      text        NOT NULL,
    function_id text        NOT NULL,
    event_id    text,
    workflow_id text        NOT NULL,
    status      text        NOT NULL,
    output      jsonb,
    error       text        NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    -- A re-dispatched event never records a second run of a function.
    UNIQUE (app_id, function_id, event_id)
);

-- The runs of an event, oldest first.
CREATE INDEX runs_event_idx ON runs (event_id, started_at, id);
