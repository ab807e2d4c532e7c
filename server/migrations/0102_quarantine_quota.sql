-- Per-hub quarantine quota (issue 7): every reject of a hub is counted here
-- by the hour; up to the quota (rows and bytes, settings
-- HOMEWARD_INGEST_QUARANTINE_PER_HUB_HOUR and ..._BYTES_PER_HUB_HOUR) it is
-- kept in full in quarantine, beyond it only 1 in
-- HOMEWARD_INGEST_QUARANTINE_SAMPLE_EVERY is kept, as a short preview.  So a
-- hub that sends garbage at broker speed costs a row here per hour, not a row
-- (and up to 4 MB) per message.  hub_id '' is for a message on no hub's topic.
CREATE TABLE quarantine_hourly (
    hub_id   text NOT NULL,
    hour     timestamptz NOT NULL,
    rejects  bigint NOT NULL DEFAULT 0,   -- every reject, kept or not
    bytes    bigint NOT NULL DEFAULT 0,   -- their size (item JSON or payload bytes)
    kept     bigint NOT NULL DEFAULT 0,   -- rows written to quarantine
    PRIMARY KEY (hub_id, hour)
);
