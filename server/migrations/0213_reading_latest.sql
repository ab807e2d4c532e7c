-- Each patient's latest reading of each kind (issue 8): the caseload orders every
-- patient in scope by attention, which needs each one's latest readings; found
-- with one index probe per patient and kind that cost ~185 ms for an admin's
-- 2,000 patients (homeward bench api).  Kept by triggers on reading, so every
-- writer (the ingest, an enrolment attributing readings, retention, erasure,
-- tests writing SQL) keeps it true:
--   * plain PostgreSQL: statement-level triggers with transition tables, one
--     upsert per (patient, kind) per statement (an ingest batch);
--   * TimescaleDB: hypertables take no transition tables, so a row-level trigger.
-- An INSERT moves a row forward only to a later taken_at; an UPDATE or DELETE
-- recomputes the keys it touched from the readings; a TRUNCATE empties it (on
-- plain PostgreSQL; TimescaleDB's drop_chunks fires no trigger, and a latest
-- reading older than the retention period stays until the next newer one).
-- Readings with no patient are not kept (the caseload is per patient).

CREATE TABLE reading_latest (
    patient_id bigint NOT NULL,
    kind       text NOT NULL,
    taken_at   timestamptz NOT NULL,
    "values"   jsonb NOT NULL,
    PRIMARY KEY (patient_id, kind)
);

INSERT INTO reading_latest (patient_id, kind, taken_at, "values")
SELECT p.id, k.kind, r.taken_at, r."values"
  FROM patient p
 CROSS JOIN unnest(ARRAY['blood_pressure', 'spo2', 'temperature', 'weight', 'glucose',
                         'respiratory_rate']) AS k(kind)
 CROSS JOIN LATERAL (SELECT taken_at, "values" FROM reading
                      WHERE patient_id = p.id AND reading.kind = k.kind
                      ORDER BY taken_at DESC LIMIT 1) r;

-- The keys' latest readings again, from reading (after an UPDATE or DELETE).
CREATE FUNCTION reading_latest_recompute(patient_ids bigint[], kinds text[])
RETURNS void LANGUAGE sql AS $$
    DELETE FROM reading_latest l
     USING unnest(patient_ids, kinds) AS k(patient_id, kind)
     WHERE l.patient_id = k.patient_id AND l.kind = k.kind;
    INSERT INTO reading_latest (patient_id, kind, taken_at, "values")
    SELECT k.patient_id, k.kind, r.taken_at, r."values"
      FROM (SELECT DISTINCT * FROM unnest(patient_ids, kinds) AS u(patient_id, kind)) k
     CROSS JOIN LATERAL (SELECT taken_at, "values" FROM reading
                          WHERE patient_id = k.patient_id AND reading.kind = k.kind
                          ORDER BY taken_at DESC LIMIT 1) r
     ORDER BY k.patient_id, k.kind;
$$;

DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        CREATE FUNCTION reading_latest_row() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            IF TG_OP <> 'INSERT' AND OLD.patient_id IS NOT NULL THEN
                PERFORM reading_latest_recompute(ARRAY[OLD.patient_id], ARRAY[OLD.kind]);
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.patient_id IS NOT NULL THEN
                INSERT INTO reading_latest AS l (patient_id, kind, taken_at, "values")
                VALUES (NEW.patient_id, NEW.kind, NEW.taken_at, NEW."values")
                ON CONFLICT (patient_id, kind) DO UPDATE
                    SET taken_at = EXCLUDED.taken_at, "values" = EXCLUDED."values"
                  WHERE EXCLUDED.taken_at > l.taken_at;
            END IF;
            RETURN NULL;
        END
        $body$;
        CREATE TRIGGER reading_latest_row AFTER INSERT OR UPDATE OR DELETE ON reading
            FOR EACH ROW EXECUTE FUNCTION reading_latest_row();
    ELSE
        -- In key order, so concurrent ingests lock shared keys in the same order.
        CREATE FUNCTION reading_latest_add() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            INSERT INTO reading_latest AS l (patient_id, kind, taken_at, "values")
            SELECT DISTINCT ON (patient_id, kind) patient_id, kind, taken_at, "values"
              FROM new_rows WHERE patient_id IS NOT NULL
             ORDER BY patient_id, kind, taken_at DESC
            ON CONFLICT (patient_id, kind) DO UPDATE
                SET taken_at = EXCLUDED.taken_at, "values" = EXCLUDED."values"
              WHERE EXCLUDED.taken_at > l.taken_at;
            RETURN NULL;
        END
        $body$;
        CREATE FUNCTION reading_latest_redo() RETURNS trigger LANGUAGE plpgsql AS $body$
        DECLARE
            patients bigint[];
            kinds text[];
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                SELECT array_agg(patient_id), array_agg(kind) INTO patients, kinds FROM (
                    SELECT patient_id, kind FROM old_rows WHERE patient_id IS NOT NULL
                    UNION SELECT patient_id, kind FROM new_rows WHERE patient_id IS NOT NULL
                    ORDER BY 1, 2) k;
            ELSE
                SELECT array_agg(patient_id), array_agg(kind) INTO patients, kinds FROM (
                    SELECT DISTINCT patient_id, kind FROM old_rows WHERE patient_id IS NOT NULL
                    ORDER BY 1, 2) k;
            END IF;
            IF patients IS NOT NULL THEN
                PERFORM reading_latest_recompute(patients, kinds);
            END IF;
            RETURN NULL;
        END
        $body$;
        CREATE TRIGGER reading_latest_insert AFTER INSERT ON reading
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION reading_latest_add();
        CREATE TRIGGER reading_latest_update AFTER UPDATE ON reading
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION reading_latest_redo();
        CREATE TRIGGER reading_latest_delete AFTER DELETE ON reading
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION reading_latest_redo();
        CREATE FUNCTION reading_latest_clear() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            TRUNCATE reading_latest;
            RETURN NULL;
        END
        $body$;
        CREATE TRIGGER reading_latest_truncate AFTER TRUNCATE ON reading
            FOR EACH STATEMENT EXECUTE FUNCTION reading_latest_clear();
    END IF;
END
$migration$;
