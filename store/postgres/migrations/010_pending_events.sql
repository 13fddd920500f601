-- The outbox moves out of the events table. An accepted event is a row of
-- events, written once and never updated, plus a row of pending_events (its
-- seq, nothing else) in the same statement. The router claims by deleting
-- pending rows, in the transaction that records what it did: no event row is
-- locked or rewritten, so dispatch adds no dead event versions and no index
-- entries, and a claim touches a few bytes per event instead of the event.
CREATE TABLE pending_events (
    seq bigint PRIMARY KEY
);

INSERT INTO pending_events (seq) SELECT seq FROM events WHERE dispatched_at IS NULL;

DROP INDEX events_pending_idx;
DROP INDEX events_dispatched_received_idx;
ALTER TABLE events DROP COLUMN dispatched_at;

-- Retention walks events by arrival and keeps those still pending.
CREATE INDEX events_received_idx ON events (received_at);
