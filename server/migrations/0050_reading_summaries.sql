-- Hourly and daily summaries of readings per patient and kind.
-- With TimescaleDB: continuous aggregates kept fresh by a policy, and a
-- retention policy on raw readings.  On plain PostgreSQL: ordinary views
-- with the same names and columns, so the same queries answer correctly.
-- Reference: https://docs.timescale.com/use-timescale/latest/continuous-aggregates/

DO $$
DECLARE
    body text := $body$
        SELECT %s AS bucket,
               patient_id,
               kind,
               count(*) AS readings,
               avg(("values"->>'systolic')::float8)          AS systolic_avg,
               max(("values"->>'systolic')::float8)          AS systolic_max,
               avg(("values"->>'diastolic')::float8)         AS diastolic_avg,
               max(("values"->>'diastolic')::float8)         AS diastolic_max,
               avg(("values"->>'pulse_rate')::float8)        AS pulse_rate_avg,
               avg(("values"->>'spo2')::float8)              AS spo2_avg,
               min(("values"->>'spo2')::float8)              AS spo2_min,
               avg(("values"->>'body_temperature')::float8)  AS body_temperature_avg,
               max(("values"->>'body_temperature')::float8)  AS body_temperature_max,
               avg(("values"->>'body_weight')::float8)       AS body_weight_avg,
               avg(("values"->>'blood_glucose')::float8)     AS blood_glucose_avg
          FROM reading
         GROUP BY 1, patient_id, kind
    $body$;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'CREATE MATERIALIZED VIEW reading_hourly WITH (timescaledb.continuous, '
             || 'timescaledb.materialized_only = false) AS '
             || format(body, 'time_bucket(interval ''1 hour'', taken_at)') || ' WITH NO DATA';
        EXECUTE 'CREATE MATERIALIZED VIEW reading_daily WITH (timescaledb.continuous, '
             || 'timescaledb.materialized_only = false) AS '
             || format(body, 'time_bucket(interval ''1 day'', taken_at)') || ' WITH NO DATA';
        PERFORM add_continuous_aggregate_policy('reading_hourly',
            start_offset => interval '3 days', end_offset => interval '1 hour',
            schedule_interval => interval '15 minutes');
        PERFORM add_continuous_aggregate_policy('reading_daily',
            start_offset => interval '30 days', end_offset => interval '1 day',
            schedule_interval => interval '1 hour');
        -- Raw readings are kept 8 years (adult health records, NHS Records
        -- Management Code of Practice); summaries outlive them.  A local
        -- policy may change this with remove/add_retention_policy.
        PERFORM add_retention_policy('reading', interval '8 years');
    ELSE
        EXECUTE 'CREATE VIEW reading_hourly AS '
             || format(body, 'date_trunc(''hour'', taken_at)');
        EXECUTE 'CREATE VIEW reading_daily AS '
             || format(body, 'date_trunc(''day'', taken_at)');
    END IF;
END
$$;
