-- Retention (store.Driver.Purge) finds each kind of row by its age through an
-- index that holds only rows that may be purged, so a purge batch reads
-- little more than what it deletes; and bulk cancellations get a lease, so a
-- job whose replica dies is taken over by another (store.Jobs).

-- Dispatched events by arrival. An event enters this index when the router
-- marks it dispatched, not when it is accepted: ingest pays nothing for it,
-- and the dispatch update already writes new entries in every index of the
-- row (dispatched_at is in events_pending_idx's predicate, so it is never a
-- HOT update).
CREATE INDEX events_dispatched_received_idx ON events (received_at) WHERE dispatched_at IS NOT NULL;

-- Finished runs by end time (a run gets ended_at when it finishes, in an
-- update that already changes the indexed status).
CREATE INDEX runs_ended_idx ON runs (ended_at) WHERE ended_at IS NOT NULL;

-- The batch links of a purged run.
CREATE INDEX run_events_run_idx ON run_events (run_id);

-- A cancellation's lease: the token of the executor running it, and when
-- that executor last renewed it; and its progress, the id of the run it was
-- working on when it last saved. Jobs already running when this migration
-- applies count as renewed at their last update: if their replica is gone
-- they are resumed (from the start of their runs) once that is stale.
ALTER TABLE cancellations
    ADD COLUMN owner        text        NOT NULL DEFAULT '',
    ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN cursor       text        NOT NULL DEFAULT '';
UPDATE cancellations SET heartbeat_at = updated_at;

-- Stale running jobs, by heartbeat; finished jobs, by age.
CREATE INDEX cancellations_running_idx ON cancellations (heartbeat_at) WHERE status = 'Running';
CREATE INDEX cancellations_finished_idx ON cancellations (updated_at) WHERE status <> 'Running';
