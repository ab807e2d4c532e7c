-- The reading id alone is the idempotency key (DESIGN.md: "a reading delivered
-- twice is stored once").  reading's primary key is (id, taken_at) because
-- TimescaleDB wants the time column in every unique index, so on its own it
-- stores the same id twice under two times, and drops a second version with
-- the same time silently.  This table holds one row per id: the time and a
-- digest of the content it was first stored with.  server/ingest_writer.py
-- claims the id here in the same statement that stores the reading; an id
-- already claimed is a duplicate (same time, same digest: stored once, acked)
-- or a conflict (quarantined with both versions, acked, never stored twice).
--
-- digest is blake2b-128 of the reading's COPY fields but for its time (kind,
-- hub, device, values with sorted keys, flags, raw; server/ingest_rows.py).
-- PostgreSQL cannot compute that digest, so rows back-filled from readings
-- stored before this migration have digest NULL and are compared by content.
CREATE TABLE reading_identity (
    id        uuid PRIMARY KEY,
    taken_at  timestamptz NOT NULL,
    digest    bytea
);

-- Back-fill: the first stored version of each id (an id stored twice before
-- this migration keeps both rows in reading; later versions are conflicts).
-- SHARE mode holds off a running ingest until the back-fill commits.
LOCK TABLE reading IN SHARE MODE;
INSERT INTO reading_identity (id, taken_at, digest)
SELECT DISTINCT ON (id) id, taken_at, NULL::bytea
  FROM reading
 ORDER BY id, committed_at, taken_at;
