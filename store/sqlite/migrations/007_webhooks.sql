-- Webhook sources: deliveries to POST /w/{id} are verified with verify
-- (scheme and secret), transformed and ingested as events. allow_events
-- lists the event name patterns a source may produce; empty allows any.
-- Times in ms.
CREATE TABLE webhooks (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    transform    TEXT    NOT NULL DEFAULT '',
    verify       TEXT    NOT NULL,
    allow_events TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
