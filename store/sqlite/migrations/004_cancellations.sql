-- Bulk cancellations: POST /v1/cancellations records one row and works
-- through the function's active runs in the background. Times in ms.
CREATE TABLE cancellations (
    id             TEXT    PRIMARY KEY,
    app_id         TEXT    NOT NULL,
    function_id    TEXT    NOT NULL,
    started_after  INTEGER,
    started_before INTEGER,
    expr           TEXT    NOT NULL DEFAULT '',
    status         TEXT    NOT NULL,
    matched        INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    error          TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE INDEX runs_active_idx ON runs (app_id, function_id, id) WHERE status IN ('Scheduled', 'Running');
