-- Bulk cancellations: POST /v1/cancellations records one row and works
-- through the function's active runs in the background.
CREATE TABLE cancellations (
    id             text        PRIMARY KEY,
    app_id         text        NOT NULL,
    function_id    text        NOT NULL,
    started_after  timestamptz,
    started_before timestamptz,
    expr           text        NOT NULL DEFAULT '',
    status         text        NOT NULL,
    matched        bigint      NOT NULL DEFAULT 0,
    cancelled      bigint      NOT NULL DEFAULT 0,
    error          text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Active runs of a function, by id, for the cancellation sweep.
CREATE INDEX runs_active_idx ON runs (app_id, function_id, id) WHERE status IN ('Scheduled', 'Running');
