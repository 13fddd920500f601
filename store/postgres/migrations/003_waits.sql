-- Pending step.WaitForEvent and cancelOn waits. A wait is matched by exact
-- event name plus, when indexable, one equality (match_path, match_value);
-- the rest of its condition (expr) runs in the router on the candidates only.
CREATE TABLE waits (
    id            text        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('wait', 'cancel')),
    app_id        text        NOT NULL DEFAULT '',
    function_id   text        NOT NULL DEFAULT '',
    run_id        text        NOT NULL DEFAULT '',
    workflow_id   text        NOT NULL,
    step_id       text        NOT NULL,
    event_name    text        NOT NULL,
    match_path    text        NOT NULL DEFAULT '',
    match_value   text        NOT NULL DEFAULT '',
    expr          text        NOT NULL DEFAULT '',
    trigger_event jsonb,
    since         timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    resolved_by   text        NOT NULL DEFAULT '',
    -- A retried registration finds the wait it made. The index also serves
    -- DeleteRunWaits (workflow_id is its leading column).
    UNIQUE (workflow_id, kind, step_id)
);

-- The router's candidate lookup: one probe per (name, path, value) key, and
-- the non-indexable waits of a name under the key (name, '', ''). Only
-- unresolved waits are in it, so it stays the size of the pending set.
CREATE INDEX waits_pending_key_idx ON waits (event_name, match_path, match_value) WHERE resolved_at IS NULL;
-- PurgeWaits: expired waits, and resolved ones (whose expiry may be far off).
CREATE INDEX waits_expires_idx ON waits (expires_at);
CREATE INDEX waits_resolved_idx ON waits (resolved_at) WHERE resolved_at IS NOT NULL;

-- The match paths in use per event name, so the router learns which values
-- to look up without a DISTINCT over waits. Registration adds a path after
-- its wait; a path may outlive its waits until PurgeWaits removes it.
CREATE TABLE wait_paths (
    event_name text NOT NULL,
    match_path text NOT NULL,
    PRIMARY KEY (event_name, match_path)
);

-- EventsSince: the events of a name received since a wait began. Per name,
-- received_at grows with arrival, so inserts append at the right of each
-- name's range and the index costs ingest little.
CREATE INDEX events_name_received_idx ON events (name, received_at);
