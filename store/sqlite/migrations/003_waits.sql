-- Pending step.WaitForEvent and cancelOn waits. A wait is matched by exact
-- event name plus, when indexable, one equality (match_path, match_value);
-- the rest of its condition (expr) runs in the router on the candidates only.
-- Times are milliseconds since the epoch.
CREATE TABLE waits (
    id            TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('wait', 'cancel')),
    app_id        TEXT    NOT NULL DEFAULT '',
    function_id   TEXT    NOT NULL DEFAULT '',
    run_id        TEXT    NOT NULL DEFAULT '',
    workflow_id   TEXT    NOT NULL,
    step_id       TEXT    NOT NULL,
    event_name    TEXT    NOT NULL,
    match_path    TEXT    NOT NULL DEFAULT '',
    match_value   TEXT    NOT NULL DEFAULT '',
    expr          TEXT    NOT NULL DEFAULT '',
    trigger_event TEXT,
    since         INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    resolved_at   INTEGER,
    resolved_by   TEXT    NOT NULL DEFAULT '',
    -- A retried registration finds the wait it made. The index also serves
    -- DeleteRunWaits (workflow_id is its leading column).
    UNIQUE (workflow_id, kind, step_id)
);

-- The router's candidate lookup: one probe per (name, path, value) key, and
-- the non-indexable waits of a name under the key (name, '', '').
CREATE INDEX waits_pending_key_idx ON waits (event_name, match_path, match_value) WHERE resolved_at IS NULL;
-- PurgeWaits: expired waits, and resolved ones (whose expiry may be far off).
CREATE INDEX waits_expires_idx ON waits (expires_at);
CREATE INDEX waits_resolved_idx ON waits (resolved_at) WHERE resolved_at IS NOT NULL;

-- The match paths in use per event name, so the router learns which values
-- to look up without a DISTINCT over waits.
CREATE TABLE wait_paths (
    event_name TEXT NOT NULL,
    match_path TEXT NOT NULL,
    PRIMARY KEY (event_name, match_path)
);

-- EventsSince: recent events of a name.
CREATE INDEX events_name_received_idx ON events (name, received_at);
