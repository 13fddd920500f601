-- Retention (store.Driver.Purge) finds each kind of row by its age through an
-- index that holds only rows that may be purged; and bulk cancellations get
-- a lease, so a job whose process dies is taken over (store.Jobs). Times in ms.

-- Dispatched events by arrival: an event enters the index when it is
-- dispatched, so ingest pays nothing for it.
CREATE INDEX events_dispatched_received_idx ON events (received_at) WHERE dispatched_at IS NOT NULL;

-- Finished runs by end time.
CREATE INDEX runs_ended_idx ON runs (ended_at) WHERE ended_at IS NOT NULL;

-- The batch links of a purged run.
CREATE INDEX run_events_run_idx ON run_events (run_id);

-- A cancellation's lease (owner token, last heartbeat) and progress (the id
-- of the run it was working on when it last saved). Jobs already running
-- count as renewed at their last update.
ALTER TABLE cancellations ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE cancellations ADD COLUMN heartbeat_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cancellations ADD COLUMN cursor TEXT NOT NULL DEFAULT '';
UPDATE cancellations SET heartbeat_at = updated_at;

CREATE INDEX cancellations_running_idx ON cancellations (heartbeat_at) WHERE status = 'Running';
CREATE INDEX cancellations_finished_idx ON cancellations (updated_at) WHERE status <> 'Running';
