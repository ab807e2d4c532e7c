-- Data lifecycle (issue 11): retention and a patient's erasure on plain
-- PostgreSQL and TimescaleDB alike.  See docs/operations.md.
--
-- The append-only history (alert_event, access_audit, patient_note,
-- patient_status_event) refuses UPDATE and DELETE.  Two procedures, and only
-- they, may delete from it, and each records that it did:
--   * erase_patient(...): everything held about one patient, in one
--     transaction, recorded in erasure (who, when, basis, reason, a keyed
--     non-reversible reference, how many rows of each table: no data);
--   * purge_resolved_alerts(...) / purge_history(...): the retention job's
--     batches of rows older than their retention period, recorded in
--     history_purge.
-- They open a "gate" for their own transaction: a row keyed by the current
-- transaction id in homeward_private.history_gate, a schema no other role has
-- USAGE on (the application role cannot write the row), and remove it before
-- they return.  The guards are SECURITY DEFINER so they can read the gate
-- whoever deletes; a gate row is never visible to another transaction, and a
-- transaction id is never reused, so nothing else ever passes.  UPDATE stays
-- refused always.  (A session setting would not do: any role may SET one.)

CREATE SCHEMA homeward_private;
REVOKE ALL ON SCHEMA homeward_private FROM PUBLIC;

CREATE TABLE homeward_private.history_gate (
    xid      xid8 PRIMARY KEY,
    purpose  text NOT NULL
);

CREATE OR REPLACE FUNCTION append_only() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM homeward_private.history_gate
                                     WHERE xid = pg_current_xact_id()) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING HINT = 'rows leave it only through erase_patient() or the retention job';
END
$$;

CREATE OR REPLACE FUNCTION alert_event_append_only() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM homeward_private.history_gate
                                     WHERE xid = pg_current_xact_id()) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'alert_event is append-only (% refused)', TG_OP
        USING HINT = 'rows leave it only through erase_patient() or the retention job';
END
$$;

-- One row per erasure: that it happened, not what was erased.  reference is an
-- HMAC of the patient's NHS number (or id) under a key kept outside the
-- database (server/erasure.py): whoever holds the key can answer "was this
-- person erased?", the database alone cannot say who it was.
CREATE TABLE erasure (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    erased_by     bigint NOT NULL REFERENCES clinician(id),
    basis         text NOT NULL CHECK (basis IN ('enrolled_in_error', 'objection_upheld',
                                                 'consent_withdrawn', 'retention_expired',
                                                 'court_order', 'test_record')),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    reference     text NOT NULL CHECK (reference ~ '^[0-9a-f]{64}$'),
    rows_removed  jsonb NOT NULL
);
CREATE INDEX erasure_reference_idx ON erasure (reference);
CREATE TRIGGER erasure_no_update BEFORE UPDATE OR DELETE ON erasure
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- One row per batch the retention job deleted from the append-only history.
CREATE TABLE history_purge (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    table_name  text NOT NULL,
    before      timestamptz NOT NULL,
    rows        bigint NOT NULL CHECK (rows > 0)
);
CREATE TRIGGER history_purge_no_update BEFORE UPDATE OR DELETE ON history_purge
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- What the retention job's batches find their rows by (low-rate tables: the
-- extra index costs little; reading is walked by hub on reading_hub_time_idx).
CREATE INDEX IF NOT EXISTS alert_resolved_idx ON alert (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS notification_created_idx ON notification (created_at);
CREATE INDEX IF NOT EXISTS notification_attempt_at_idx ON notification_attempt (at);
CREATE INDEX IF NOT EXISTS patient_note_at_idx ON patient_note (at);
CREATE INDEX IF NOT EXISTS patient_status_event_at_idx ON patient_status_event (at);
CREATE INDEX IF NOT EXISTS quarantine_hourly_hour_idx ON quarantine_hourly (hour);

-- Why a patient may not be erased now (raises; returns nothing when they may):
-- refused unless the patient is discharged with no enrolment still open, the
-- eraser an active admin, and the reason free of the patient's name, NHS number
-- and id.  server/erasure.py asks before it deletes the readings in batches.
CREATE FUNCTION erasure_check(p_patient bigint, p_erased_by bigint, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    pat record;
BEGIN
    SELECT id, nhs_number, display_name, status INTO pat FROM patient WHERE id = p_patient;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no patient %', p_patient USING ERRCODE = 'no_data_found';
    END IF;
    IF pat.status <> 'discharged' THEN
        RAISE EXCEPTION 'patient % is %: discharge the patient before erasing', p_patient,
            pat.status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM enrolment WHERE patient_id = p_patient
                AND (valid_to IS NULL OR valid_to > now())) THEN
        RAISE EXCEPTION 'patient % still has an open hub enrolment', p_patient
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM clinician WHERE id = p_erased_by AND role = 'admin'
                    AND active) THEN
        RAISE EXCEPTION 'an erasure is made by an active admin'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF strpos(lower(p_reason), lower(pat.display_name)) > 0
       OR (length(regexp_replace(coalesce(pat.nhs_number, ''), '[^0-9]', '', 'g')) > 0
           AND strpos(regexp_replace(p_reason, '[^0-9]', '', 'g'),
                      regexp_replace(pat.nhs_number, '[^0-9]', '', 'g')) > 0)
       OR p_reason ~ ('(^|[^0-9])' || p_patient || '([^0-9]|$)') THEN
        RAISE EXCEPTION 'the reason of an erasure must not identify the patient'
            USING ERRCODE = 'check_violation';
    END IF;
END
$$;

-- Erase everything held about a patient, in one transaction (server/erasure.py
-- calls it after deleting the patient's readings in batches; p_batched holds
-- those counts, added to the record).  The patient's hubs and devices are
-- equipment and stay; what they sent while enrolled to the patient (readings
-- not attributed, quarantined payloads, poison-message records) goes.
-- Returns the erasure's id.
CREATE FUNCTION erase_patient(p_patient bigint, p_erased_by bigint, p_basis text,
                              p_reason text, p_reference text,
                              p_batched jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    counts    jsonb := '{}';
    n         bigint;
    m         bigint;
    q         bigint;
    erased    bigint;
BEGIN
    PERFORM 1 FROM patient WHERE id = p_patient FOR UPDATE;
    PERFORM erasure_check(p_patient, p_erased_by, p_reason);

    INSERT INTO homeward_private.history_gate (xid, purpose)
    VALUES (pg_current_xact_id(), 'erasure');

    -- Readings: attributed to the patient, or sent by their hub while enrolled
    -- and not attributed; their identity rows and queue entries with them.
    WITH gone AS (
        DELETE FROM reading WHERE patient_id = p_patient RETURNING id
    ), ident AS (
        DELETE FROM reading_identity i USING gone WHERE i.id = gone.id RETURNING 1
    ), queued AS (
        DELETE FROM evaluation_queue e USING gone WHERE e.reading_id = gone.id RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM ident),
           (SELECT count(*) FROM queued) INTO n, m, q;
    counts := counts || jsonb_build_object('reading', n, 'reading_identity', m,
                                           'evaluation_queue', q);
    WITH gone AS (
        DELETE FROM reading r USING enrolment e
         WHERE e.patient_id = p_patient AND r.hub_id = e.hub_id AND r.patient_id IS NULL
           AND r.taken_at >= e.valid_from AND r.taken_at < coalesce(e.valid_to, 'infinity')
        RETURNING r.id
    ), ident AS (
        DELETE FROM reading_identity i USING gone WHERE i.id = gone.id RETURNING 1
    ), queued AS (
        DELETE FROM evaluation_queue e USING gone WHERE e.reading_id = gone.id RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM ident),
           (SELECT count(*) FROM queued) INTO n, m, q;
    counts := counts || jsonb_build_object(
        'reading_unattributed', n,
        'reading_identity', (counts->>'reading_identity')::bigint + m,
        'evaluation_queue', (counts->>'evaluation_queue')::bigint + q);
    DELETE FROM evaluation_queue WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := jsonb_set(counts, '{evaluation_queue}',
                        to_jsonb((counts->>'evaluation_queue')::bigint + n));

    -- Alerts with their notifications, delivery attempts and history.
    DELETE FROM notification_attempt t USING notification x, alert a
     WHERE t.notification_id = x.id AND x.alert_id = a.id AND a.patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('notification_attempt', n);
    DELETE FROM notification x USING alert a WHERE x.alert_id = a.id AND a.patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('notification', n);
    DELETE FROM alert_event v USING alert a WHERE v.alert_id = a.id AND a.patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('alert_event', n);
    DELETE FROM alert WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('alert', n);

    -- What the hubs sent while enrolled to the patient that was not stored.
    DELETE FROM quarantine x USING enrolment e
     WHERE e.patient_id = p_patient AND x.hub_id = e.hub_id
       AND x.received_at >= e.valid_from AND x.received_at < coalesce(e.valid_to, 'infinity');
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('quarantine', n);
    DELETE FROM ingest_suspect s USING enrolment e
     WHERE e.patient_id = p_patient
       AND s.topic LIKE 'homeward/v1/hubs/' || e.hub_id || '/%'
       AND s.first_seen_at >= e.valid_from
       AND s.first_seen_at < coalesce(e.valid_to, 'infinity');
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('ingest_suspect', n);

    -- The record itself.
    DELETE FROM patient_rule_setting WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('patient_rule_setting', n);
    DELETE FROM patient_note WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('patient_note', n);
    DELETE FROM patient_status_event WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('patient_status_event', n);
    DELETE FROM access_audit WHERE patient_id = p_patient
        OR (patient_id IS NULL AND resource = 'patient:' || p_patient);
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('access_audit', n);
    -- Tables derived from readings, kept by triggers on reading already (this is
    -- belt and braces); a TimescaleDB continuous aggregate is a view instead,
    -- refreshed by server/erasure.py once this transaction has committed.
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('reading_latest')
                AND relkind = 'r') THEN
        EXECUTE 'DELETE FROM reading_latest WHERE patient_id = $1' USING p_patient;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('reading_metric_hourly')
                AND relkind = 'r') THEN
        EXECUTE 'DELETE FROM reading_metric_hourly WHERE patient_id = $1' USING p_patient;
    END IF;
    DELETE FROM patient_team WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('patient_team', n);
    DELETE FROM enrolment WHERE patient_id = p_patient;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('enrolment', n);
    DELETE FROM patient WHERE id = p_patient;
    counts := counts || jsonb_build_object('patient', 1);

    DELETE FROM homeward_private.history_gate WHERE xid = pg_current_xact_id();

    SELECT jsonb_object_agg(k, coalesce((counts->>k)::bigint, 0)
                               + coalesce((p_batched->>k)::bigint, 0)) INTO counts
      FROM (SELECT jsonb_object_keys(counts) UNION SELECT jsonb_object_keys(p_batched)) s(k);
    INSERT INTO erasure (erased_by, basis, reason, reference, rows_removed)
    VALUES (p_erased_by, p_basis, p_reason, p_reference, counts)
    RETURNING id INTO erased;
    INSERT INTO access_audit (clinician_id, role, action, patient_id, resource, outcome)
    VALUES (p_erased_by, 'admin', 'patient.erase', NULL, 'erasure:' || erased, 'ok');
    RETURN erased;
END
$$;

-- The retention job's batches over the append-only history.  Each deletes at
-- most p_limit rows older than p_before (so a batch's transaction stays short)
-- and returns how many it deleted; each non-empty batch is recorded.

-- Alerts resolved before p_before, with their events, notifications and attempts
-- (p_limit counts alerts).
CREATE FUNCTION purge_resolved_alerts(p_before timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    ids bigint[];
    n   integer;
BEGIN
    SELECT array_agg(id) INTO ids FROM (
        SELECT id FROM alert WHERE resolved_at < p_before
         ORDER BY resolved_at LIMIT p_limit FOR UPDATE SKIP LOCKED) a;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO homeward_private.history_gate (xid, purpose)
    VALUES (pg_current_xact_id(), 'retention');
    DELETE FROM notification_attempt t USING notification x
     WHERE t.notification_id = x.id AND x.alert_id = ANY (ids);
    DELETE FROM notification WHERE alert_id = ANY (ids);
    DELETE FROM alert_event WHERE alert_id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        INSERT INTO history_purge (table_name, before, rows) VALUES ('alert_event', p_before, n);
    END IF;
    DELETE FROM alert WHERE id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM homeward_private.history_gate WHERE xid = pg_current_xact_id();
    RETURN n;
END
$$;

-- Rows of access_audit, patient_note or patient_status_event with at < p_before.
CREATE FUNCTION purge_history(p_table text, p_before timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer;
BEGIN
    IF p_table NOT IN ('access_audit', 'patient_note', 'patient_status_event') THEN
        RAISE EXCEPTION 'purge_history: % is not a history table it purges', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO homeward_private.history_gate (xid, purpose)
    VALUES (pg_current_xact_id(), 'retention');
    EXECUTE format('DELETE FROM %1$I WHERE id = ANY (ARRAY(SELECT id FROM %1$I'
                   ' WHERE at < $1 ORDER BY at LIMIT $2))', p_table)
        USING p_before, p_limit;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM homeward_private.history_gate WHERE xid = pg_current_xact_id();
    IF n > 0 THEN
        INSERT INTO history_purge (table_name, before, rows) VALUES (p_table, p_before, n);
    END IF;
    RETURN n;
END
$$;
