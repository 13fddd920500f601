-- The W3C traceparent of the request that sent each event ('' when tracing
-- is off), so the router's spans continue the sender's trace. A constant
-- default makes this instant on a large table.
ALTER TABLE events ADD COLUMN trace text NOT NULL DEFAULT '';
