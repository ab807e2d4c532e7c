-- Ingest health and poison-message bookkeeping (issue 7), and the chunk
-- interval of reading under TimescaleDB.  See docs/ingest.md.

-- One row per running ingest (keyed by its MQTT client id), upserted every
-- few seconds by server/ingest_health.py from a thread of its own, so the row
-- keeps beating while the writer is stuck on a message.
--
-- What /health should read:
--   SELECT client_id, heartbeat_at, oldest_held_since, held_messages
--     FROM ingest_heartbeat
--    WHERE stopped_at IS NULL
--      AND heartbeat_at > now() - interval '1 hour';
-- and degrade when, for any such row,
--   oldest_held_since < now() - <health_ingest_held_seconds>
--     (the ingest has held a message unacknowledged too long: stalled), or
--   heartbeat_at < now() - interval '30 seconds'
--     (the ingest stopped beating without a clean stop: killed, or hung).
-- A clean stop sets stopped_at; a row beating with oldest_held_since NULL is
-- an ingest holding nothing, which is healthy.
CREATE TABLE ingest_heartbeat (
    client_id          text PRIMARY KEY,
    heartbeat_at       timestamptz NOT NULL,
    -- received_at of the oldest message this ingest holds unacknowledged
    -- (queued, being written, or set aside as a suspect); NULL when none.
    oldest_held_since  timestamptz,
    held_messages      integer NOT NULL DEFAULT 0,
    -- messages the database refused that this ingest is still retrying
    suspects           integer NOT NULL DEFAULT 0,
    started_at         timestamptz NOT NULL,
    stopped_at         timestamptz,
    host               text,
    pid                integer
);
COMMENT ON TABLE ingest_heartbeat IS
    'One row per ingest (MQTT client id), upserted every few seconds. /health: degrade when '
    'a row with stopped_at IS NULL has oldest_held_since < now() - health_ingest_held_seconds '
    '(a message held too long) or heartbeat_at < now() - 30 s (the ingest stopped beating).';
COMMENT ON COLUMN ingest_heartbeat.oldest_held_since IS
    'received_at of the oldest MQTT message held unacknowledged; NULL when none is held.';

-- Messages the database refused, by the digest of their topic and payload
-- (server/ingest_poison.py).  attempts counts tries of the message alone; each
-- attempt is committed BEFORE the try starts, so a try that kills the ingest
-- still counts, and a message the broker delivers again after a restart is
-- recognised: at attempts >= the limit it is quarantined without a try.  A
-- message that stores after all is forgotten (its row deleted).
CREATE TABLE ingest_suspect (
    digest          bytea PRIMARY KEY,    -- sha256(topic || 0x00 || payload)
    topic           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_tried_at   timestamptz,
    sqlstate        text,
    last_error      text,
    -- set once the message is in quarantine: a redelivered copy is only acknowledged
    quarantined_at  timestamptz
);

-- TimescaleDB: weekly chunks instead of daily ones for chunks created from now
-- on (existing chunks keep their size).  The arithmetic is in docs/ingest.md:
-- a year of backlog is 53 chunks instead of 365, a 90-day chart reads 14
-- chunks instead of 91, and a week of a 2,000-patient ward is well under a
-- quarter of a small server's memory.  The ingest also caps the chunks one
-- transaction touches (server/ingest_chunks.py), whatever the interval.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM set_chunk_time_interval('reading', interval '7 days');
    END IF;
END
$$;
