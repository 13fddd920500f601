-- The events table is Herald's outbox: every accepted event is a row, pending
-- until the router sets dispatched_at.
CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    id            text        NOT NULL PRIMARY KEY,
    name          text        NOT NULL,
    data          jsonb       NOT NULL,
    ts            bigint      NOT NULL,
    v             text        NOT NULL DEFAULT '',
    received_at   timestamptz NOT NULL,
    dispatched_at timestamptz
);

-- Listing pages newest first by seq.
CREATE UNIQUE INDEX events_seq_idx ON events (seq);
-- Listing by name.
CREATE INDEX events_name_seq_idx ON events (name, seq);
-- The router claims pending events in arrival order; the index holds only them.
CREATE INDEX events_pending_idx ON events (seq) WHERE dispatched_at IS NULL;
