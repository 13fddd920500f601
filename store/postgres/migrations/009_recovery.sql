-- Recovery: pausing a function, replaying and rerunning runs.

-- A paused function keeps its row through syncs (they upsert it) and records
-- a Skipped run for each event it matches until it is resumed.
ALTER TABLE functions ADD COLUMN paused_at timestamptz;

-- A replayed or rerun run is a new run of the same function for the same
-- event: replay_of is the run it repeats (empty when a replay ran an event
-- that had no run), replay_id the replay job that started it (empty for a
-- rerun). Only ordinary runs are one per (app, function, event).
ALTER TABLE runs
    ADD COLUMN replay_of text NOT NULL DEFAULT '',
    ADD COLUMN replay_id text NOT NULL DEFAULT '';
ALTER TABLE runs DROP CONSTRAINT runs_app_id_function_id_event_id_key;
CREATE UNIQUE INDEX runs_event_once_idx ON runs (app_id, function_id, event_id) WHERE replay_of = '' AND replay_id = '';

-- GET /v1/runs: newest first, of every function or of one.
CREATE INDEX runs_started_idx ON runs (started_at, id);
CREATE INDEX runs_function_started_idx ON runs (app_id, function_id, started_at, id);

-- Replays: POST /v1/replays records one row and works through the runs (or
-- events) of its window in the background, under a lease like bulk
-- cancellations (store.Jobs).
CREATE TABLE replays (
    id           text        PRIMARY KEY,
    app_id       text        NOT NULL,
    function_id  text        NOT NULL,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    statuses     text        NOT NULL DEFAULT '[]',
    events       boolean     NOT NULL DEFAULT false,
    expr         text        NOT NULL DEFAULT '',
    status       text        NOT NULL,
    matched      bigint      NOT NULL DEFAULT 0,
    started      bigint      NOT NULL DEFAULT 0,
    skipped      bigint      NOT NULL DEFAULT 0,
    error        text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    owner        text        NOT NULL DEFAULT '',
    heartbeat_at timestamptz NOT NULL DEFAULT 'epoch',
    cursor       text        NOT NULL DEFAULT ''
);
CREATE INDEX replays_running_idx ON replays (heartbeat_at) WHERE status = 'Running';
CREATE INDEX replays_finished_idx ON replays (updated_at) WHERE status <> 'Running';
