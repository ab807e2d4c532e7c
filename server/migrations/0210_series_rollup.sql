-- The chart series' hourly rollup (issue 8): per patient, kind and hour, for every
-- metric of homeward/kinds.py, how many readings carry it (``_n``), how many of
-- those are numbers (``_numbers``), and their sum, min and max.  server/record_queries.series answers an hourly or daily chart from it for
-- the whole hours of the range (raw readings for the partial hours at either end),
-- so 90 days of 1 Hz oximetry (7.8 M readings) is 2,160 rows to read, not 7.8 M.
-- reading_hourly (0050) has averages of some metrics only, not min/mean/max of each.
--
-- With TimescaleDB: a continuous aggregate with real-time aggregation (hours after
-- its watermark are computed from raw readings at query time), refreshed every
-- 5 minutes over all of history, so a late reading (a hub forwarding its outbox
-- after an outage) reaches the rollup at the next refresh.
-- On plain PostgreSQL: a view with the same columns; the series reads raw readings
-- there instead (a view is no faster than they are).
-- Reference: https://docs.timescale.com/use-timescale/latest/continuous-aggregates/

DO $$
DECLARE
    metrics text[] := ARRAY['systolic', 'diastolic', 'mean_arterial', 'pulse_rate', 'spo2',
                            'perfusion_index', 'body_temperature', 'body_weight',
                            'blood_glucose', 'respiratory_rate'];
    m text;
    cols text := '';
    body text;
BEGIN
    FOREACH m IN ARRAY metrics LOOP
        cols := cols || format(
            ', count(*) FILTER (WHERE "values" ? %1$L) AS %2$I'
            ', count(("values"->>%1$L)::float8) AS %3$I'
            ', sum(("values"->>%1$L)::float8) AS %4$I'
            ', min(("values"->>%1$L)::float8) AS %5$I'
            ', max(("values"->>%1$L)::float8) AS %6$I',
            m, m || '_n', m || '_numbers', m || '_sum', m || '_min', m || '_max');
    END LOOP;
    body := 'SELECT %s AS bucket, patient_id, kind' || cols
         || ' FROM reading GROUP BY 1, patient_id, kind';
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'CREATE MATERIALIZED VIEW reading_metric_hourly WITH (timescaledb.continuous, '
             || 'timescaledb.materialized_only = false) AS '
             || format(body, 'time_bucket(interval ''1 hour'', taken_at)') || ' WITH NO DATA';
        PERFORM add_continuous_aggregate_policy('reading_metric_hourly',
            start_offset => NULL, end_offset => interval '1 hour',
            schedule_interval => interval '5 minutes');
        CREATE INDEX reading_metric_hourly_idx ON reading_metric_hourly (patient_id, kind, bucket);
    ELSE
        EXECUTE 'CREATE VIEW reading_metric_hourly AS '
             || format(body, 'date_trunc(''hour'', taken_at)');
    END IF;
END
$$;
