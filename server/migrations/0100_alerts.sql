-- Clinical alerts (the alert engine's records, with a lifecycle) and their
-- append-only history.  Owned by the alerts package (alerts/store.py,
-- alerts/lifecycle.py); see docs/alerts.md.
--
-- One ACTIVE alert per (patient, rule): a repeat trigger updates the active
-- alert (count, latest reading, maybe a higher severity) instead of opening a
-- second one.  The partial unique index below enforces it, so two workers
-- racing on the same patient cannot both open one.

CREATE TABLE alert (
    id                 bigserial PRIMARY KEY,
    -- 'clinical' alerts come from rules over a patient's readings; 'system'
    -- alerts are raised by the engine itself (a rota gap, a delivery failure).
    category           text NOT NULL DEFAULT 'clinical' CHECK (category IN ('clinical', 'system')),
    patient_id         bigint REFERENCES patient(id),
    rule_id            text NOT NULL,
    -- The rule as loaded when the alert opened (id, kind, params, source...),
    -- so a nurse sees why even after the rule file changes.
    rule               jsonb NOT NULL,
    severity           text NOT NULL CHECK (severity IN ('info', 'amber', 'red')),
    state              text NOT NULL DEFAULT 'open'
                       CHECK (state IN ('open', 'acknowledged', 'resolved', 'auto_resolved')),
    summary            text NOT NULL DEFAULT '',
    labels             jsonb NOT NULL DEFAULT '{}',
    team_id            text REFERENCES team(id),
    opened_at          timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    -- Repeat triggers: how many times the rule fired while this alert was active.
    trigger_count      integer NOT NULL DEFAULT 1 CHECK (trigger_count >= 1),
    last_triggered_at  timestamptz NOT NULL,
    latest_reading_id  uuid,
    latest_reading     jsonb,          -- {id, kind, taken_at, values, flags}
    -- The readings that fired it (a bounded list, newest last), and the
    -- evaluator's own detail (e.g. the NEWS2 parameters).
    readings           jsonb NOT NULL DEFAULT '[]',
    detail             jsonb NOT NULL DEFAULT '{}',
    -- Acknowledgement is a lease: when ack_expires_at passes the alert re-opens.
    acknowledged_at    timestamptz,
    acknowledged_by    bigint REFERENCES clinician(id),
    ack_expires_at     timestamptz,
    snoozed_until      timestamptz,
    resolved_at        timestamptz,
    resolved_by        bigint REFERENCES clinician(id),
    outcome            text,
    -- Notification layer state (routing and escalation timers live here so
    -- they survive a restart of the alert process).
    route              jsonb,
    escalation_policy  text,
    escalation_level   integer NOT NULL DEFAULT 0,
    next_escalation_at timestamptz,
    CHECK (category = 'system' OR patient_id IS NOT NULL),
    CHECK ((state IN ('resolved', 'auto_resolved')) = (resolved_at IS NOT NULL))
);

CREATE UNIQUE INDEX alert_one_active_per_patient_rule
    ON alert (patient_id, rule_id) WHERE state IN ('open', 'acknowledged');
-- System alerts have no patient; one active per rule_id (which names the subject).
CREATE UNIQUE INDEX alert_one_active_system
    ON alert (rule_id) WHERE category = 'system' AND state IN ('open', 'acknowledged');
CREATE INDEX alert_active_team_idx ON alert (team_id, opened_at DESC)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX alert_patient_idx ON alert (patient_id, opened_at DESC);
CREATE INDEX alert_timers_idx ON alert (next_escalation_at)
    WHERE state IN ('open', 'acknowledged');

-- Every event in an alert's life: who (a clinician, or the system), what, when.
-- Append-only: a trigger refuses UPDATE and DELETE.
CREATE TABLE alert_event (
    id            bigserial PRIMARY KEY,
    alert_id      bigint NOT NULL REFERENCES alert(id),
    at            timestamptz NOT NULL,
    event         text NOT NULL,
    actor         text NOT NULL DEFAULT 'system',   -- 'system' or 'clinician:<id>'
    clinician_id  bigint REFERENCES clinician(id),
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_event_alert_idx ON alert_event (alert_id, id);

CREATE FUNCTION alert_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_event is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER alert_event_no_update BEFORE UPDATE OR DELETE ON alert_event
    FOR EACH ROW EXECUTE FUNCTION alert_event_append_only();

-- Per-patient rule settings: which rules apply and personal thresholds,
-- with who set them, when, and from when they apply.  Rows are never
-- updated in place: a new setting closes the previous one (valid_to).
CREATE TABLE patient_rule_setting (
    id          bigserial PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patient(id),
    rule_id     text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    params      jsonb NOT NULL DEFAULT '{}',   -- overrides merged over the rule's params
    set_by      bigint REFERENCES clinician(id),
    set_at      timestamptz NOT NULL DEFAULT now(),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    note        text,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX patient_rule_setting_idx ON patient_rule_setting (patient_id, rule_id, valid_from DESC);
