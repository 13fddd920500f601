-- The W3C traceparent of the request that sent each event ('' when tracing
-- is off), so the router's spans continue the sender's trace.
ALTER TABLE events ADD COLUMN trace TEXT NOT NULL DEFAULT '';
