-- Flow control state. The router reads it inside its claims (store.ClaimTx)
-- and writes it in the claim's transaction. Times are milliseconds since the
-- epoch.

-- GCRA limiters (rate limits and throttles): one theoretical arrival time per
-- key. A missing row and a TAT in the past mean the same: the limiter is idle,
-- and PurgeFlowState may delete such rows.
CREATE TABLE limits (
    key TEXT    PRIMARY KEY,
    tat INTEGER NOT NULL
);

-- Idempotency keys: the run that holds each key, until expires_at (expired
-- when expires_at <= now; another run may then take the key).
CREATE TABLE idempotency_keys (
    key        TEXT    PRIMARY KEY,
    run_id     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- Singleton keys: the run (and its workflow) holding each key. FinishRun of
-- the holder deletes its rows.
CREATE TABLE singletons (
    key         TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    workflow_id TEXT NOT NULL
);

CREATE INDEX singletons_run_idx ON singletons (run_id);

-- Runs linked to events other than their own event_id: a batch run is listed
-- under every event of its batch.
CREATE TABLE run_events (
    event_id TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, run_id)
);
