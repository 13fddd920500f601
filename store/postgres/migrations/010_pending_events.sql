-- The outbox moves out of the events table. An accepted event is a row of
-- events, written once and never updated by dispatch, plus a row of
-- pending_events (its seq, nothing else) written by the same statement. The
-- router claims by deleting pending rows, in the transaction that records
-- what it did: no event row is locked or rewritten, so dispatch adds no dead
-- event versions and no index entries, and a claim touches a few bytes per
-- event instead of the event.
CREATE TABLE pending_events (
    seq bigint PRIMARY KEY
);

-- dispatched_at stays, for the replicas of the previous version that run
-- beside the new ones during a rolling upgrade. Herald writes '-infinity'
-- in it ("tracked by pending_events"), so its rows stay out of
-- events_pending_idx and cost that index nothing. A row written by an older
-- replica has NULL there: the router claims it through events_pending_idx
-- as before, so no event accepted during the upgrade is left undispatched.
-- Events already dispatched keep their time; pending ones move over.
INSERT INTO pending_events (seq) SELECT seq FROM events WHERE dispatched_at IS NULL;
UPDATE events SET dispatched_at = '-infinity' WHERE dispatched_at IS NULL;

-- Retention walks events by arrival and keeps those still pending.
DROP INDEX events_dispatched_received_idx;
CREATE INDEX events_received_idx ON events (received_at);
