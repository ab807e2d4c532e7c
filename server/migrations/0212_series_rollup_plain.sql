-- The chart series' hourly rollup on plain PostgreSQL (issue 8): 0210 made
-- reading_metric_hourly a view there, which is no faster than the raw readings
-- (a 90-day chart of 1 Hz oximetry aggregates 7.8 M rows).  Here it becomes a
-- table with the same columns, kept by statement-level triggers on reading:
-- an INSERT (ingest's batches, COPY) adds its rows' counts, sums, minima and
-- maxima to their hours; an UPDATE (a reading attributed to a patient later) or
-- a DELETE recomputes the hours it touched from the readings; a TRUNCATE empties
-- it.  Readings with no patient are not rolled up (a chart is per patient).
-- Hours are UTC hours (date_bin, whatever the session's time zone), as the
-- series' buckets are.  With TimescaleDB this file does nothing: the continuous
-- aggregate of 0210 is the rollup.

DO $migration$
DECLARE
    metrics text[] := ARRAY['systolic', 'diastolic', 'mean_arterial', 'pulse_rate', 'spo2',
                            'perfusion_index', 'body_temperature', 'body_weight',
                            'blood_glucose', 'respiratory_rate'];
    m text;
    columns text := '';
    aggs text := '';
    merge text := '';
    select_from text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    FOREACH m IN ARRAY metrics LOOP
        columns := columns || format(
            ', %1$I bigint NOT NULL DEFAULT 0, %2$I bigint NOT NULL DEFAULT 0,'
            ' %3$I float8, %4$I float8, %5$I float8',
            m || '_n', m || '_numbers', m || '_sum', m || '_min', m || '_max');
        aggs := aggs || format(
            ', count(*) FILTER (WHERE "values" ? %1$L), count(("values"->>%1$L)::float8),'
            ' sum(("values"->>%1$L)::float8), min(("values"->>%1$L)::float8),'
            ' max(("values"->>%1$L)::float8)', m);
        merge := merge || format(
            ', %1$I = h.%1$I + EXCLUDED.%1$I, %2$I = h.%2$I + EXCLUDED.%2$I,'
            ' %3$I = CASE WHEN h.%3$I IS NULL THEN EXCLUDED.%3$I'
            '        WHEN EXCLUDED.%3$I IS NULL THEN h.%3$I ELSE h.%3$I + EXCLUDED.%3$I END,'
            ' %4$I = LEAST(h.%4$I, EXCLUDED.%4$I), %5$I = GREATEST(h.%5$I, EXCLUDED.%5$I)',
            m || '_n', m || '_numbers', m || '_sum', m || '_min', m || '_max');
    END LOOP;
    -- %s: the rows to roll up (a table name or a join), each with taken_at,
    -- patient_id, kind and "values".
    select_from := 'SELECT date_bin(interval ''1 hour'', taken_at, timestamptz ''2000-01-01'')'
                || ' AS bucket, patient_id, kind' || aggs
                || ' FROM %s WHERE patient_id IS NOT NULL GROUP BY 1, 2, 3';

    DROP VIEW reading_metric_hourly;
    EXECUTE 'CREATE TABLE reading_metric_hourly (bucket timestamptz NOT NULL,'
         || ' patient_id bigint NOT NULL, kind text NOT NULL' || columns
         || ', PRIMARY KEY (patient_id, kind, bucket))';
    EXECUTE 'INSERT INTO reading_metric_hourly ' || format(select_from, 'reading');

    -- In key order, so concurrent ingests lock shared hours in the same order.
    EXECUTE format($f$
        CREATE FUNCTION reading_metric_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            INSERT INTO reading_metric_hourly AS h SELECT * FROM (%s) s
                ORDER BY patient_id, kind, bucket
            ON CONFLICT (patient_id, kind, bucket) DO UPDATE SET %s;
            RETURN NULL;
        END
        $body$$f$, format(select_from, 'new_rows'), substr(merge, 3));

    EXECUTE format($f$
        CREATE FUNCTION reading_metric_hourly_redo() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            CREATE TEMP TABLE IF NOT EXISTS reading_metric_hourly_keys (
                patient_id bigint, kind text, bucket timestamptz) ON COMMIT DELETE ROWS;
            INSERT INTO reading_metric_hourly_keys
                SELECT DISTINCT patient_id, kind,
                       date_bin(interval '1 hour', taken_at, timestamptz '2000-01-01')
                  FROM old_rows WHERE patient_id IS NOT NULL;
            IF TG_OP = 'UPDATE' THEN
                INSERT INTO reading_metric_hourly_keys
                    SELECT DISTINCT patient_id, kind,
                           date_bin(interval '1 hour', taken_at, timestamptz '2000-01-01')
                      FROM new_rows WHERE patient_id IS NOT NULL;
            END IF;
            DELETE FROM reading_metric_hourly h USING reading_metric_hourly_keys k
             WHERE h.patient_id = k.patient_id AND h.kind = k.kind AND h.bucket = k.bucket;
            INSERT INTO reading_metric_hourly SELECT * FROM (%s) s
                ORDER BY patient_id, kind, bucket;
            DELETE FROM reading_metric_hourly_keys;
            RETURN NULL;
        END
        $body$$f$, format(select_from,
            '(SELECT r.taken_at, r.patient_id, r.kind, r."values" FROM reading r'
            || ' JOIN (SELECT DISTINCT * FROM reading_metric_hourly_keys) k'
            || ' ON r.patient_id = k.patient_id AND r.kind = k.kind'
            || ' AND r.taken_at >= k.bucket AND r.taken_at < k.bucket + interval ''1 hour'') r'));

    CREATE FUNCTION reading_metric_hourly_clear() RETURNS trigger LANGUAGE plpgsql AS $body$
    BEGIN
        TRUNCATE reading_metric_hourly;
        RETURN NULL;
    END
    $body$;

    CREATE TRIGGER reading_metric_hourly_insert AFTER INSERT ON reading
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION reading_metric_hourly_add();
    CREATE TRIGGER reading_metric_hourly_update AFTER UPDATE ON reading
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION reading_metric_hourly_redo();
    CREATE TRIGGER reading_metric_hourly_delete AFTER DELETE ON reading
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION reading_metric_hourly_redo();
    CREATE TRIGGER reading_metric_hourly_truncate AFTER TRUNCATE ON reading
        FOR EACH STATEMENT EXECUTE FUNCTION reading_metric_hourly_clear();
END
$migration$;
