-- Flow control state. The router reads and writes it inside its claims
-- (store.ClaimTx), so a claim's decisions commit or roll back with the claim.

-- GCRA limiters (rate limits and throttles): one theoretical arrival time per
-- key. A missing row and a TAT in the past mean the same: the limiter is idle,
-- and PurgeFlowState may delete such rows. No index on tat: every admitted
-- request updates it, and the purge's scan of a table with one row per key is
-- cheaper than maintaining one.
CREATE TABLE limits (
    key text        PRIMARY KEY,
    tat timestamptz NOT NULL
);

-- Idempotency keys: the run that holds each key, until expires_at (expired
-- when expires_at <= now; another run may then take the key).
CREATE TABLE idempotency_keys (
    key        text        PRIMARY KEY,
    run_id     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- PurgeFlowState: expired keys.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- Singleton keys: the run (and its workflow) holding each key. FinishRun of
-- the holder deletes its rows.
CREATE TABLE singletons (
    key         text PRIMARY KEY,
    run_id      text NOT NULL,
    workflow_id text NOT NULL
);

-- FinishRun: the keys a run holds.
CREATE INDEX singletons_run_idx ON singletons (run_id);

-- Runs linked to events other than their own event_id: a batch run is listed
-- under every event of its batch. No foreign keys, like runs: history stays.
CREATE TABLE run_events (
    event_id text NOT NULL,
    run_id   text NOT NULL,
    PRIMARY KEY (event_id, run_id)
);
