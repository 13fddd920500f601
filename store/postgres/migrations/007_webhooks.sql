-- Webhook sources: deliveries to POST /w/{id} are verified with verify
-- (scheme and secret), transformed and ingested as events. allow_events
-- lists the event name patterns a source may produce; empty allows any.
CREATE TABLE webhooks (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    transform    text        NOT NULL DEFAULT '',
    verify       jsonb       NOT NULL,
    allow_events jsonb       NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
