-- People and access (issue 8): roles, the care team's lead, the access audit,
-- patient notes and the patient's status history.  The access model itself
-- lives in server/access.py; this file only holds what it reads and writes.

-- Roles: nurse, team_lead, admin, and system for workers.  An admin sees the
-- patients of her organisation: clinician.organisation_id, or when it is not
-- set, the organisations of her teams.
ALTER TABLE clinician DROP CONSTRAINT IF EXISTS clinician_role_check;
ALTER TABLE clinician ADD CONSTRAINT clinician_role_check
    CHECK (role IN ('nurse', 'team_lead', 'admin', 'system'));
ALTER TABLE clinician ADD COLUMN organisation_id bigint REFERENCES organisation(id);
ALTER TABLE clinician ADD COLUMN active boolean NOT NULL DEFAULT true;
UPDATE clinician c SET organisation_id = (
    SELECT t.organisation_id FROM team_member m JOIN team t ON t.id = m.team_id
     WHERE m.clinician_id = c.id ORDER BY t.id LIMIT 1);

-- A patient's care team: teams from any organisation, one of them the lead.
ALTER TABLE patient_team ADD COLUMN lead boolean NOT NULL DEFAULT false;
ALTER TABLE patient_team ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX patient_team_team_idx ON patient_team (team_id, patient_id);
CREATE UNIQUE INDEX patient_team_one_lead ON patient_team (patient_id) WHERE lead;

-- Every read or write of patient data: who, in which role, did what to which
-- patient's which resource, when, under which request, from where, and how it
-- ended ('ok', 'not_found' for an id outside the caller's scope, 'refused'
-- for a 4xx the route answered, 'error').  Append-only, like alert_event.
CREATE TABLE access_audit (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    clinician_id  bigint REFERENCES clinician(id),
    role          text NOT NULL,
    action        text NOT NULL,            -- e.g. 'patient.read', 'alert.acknowledge'
    patient_id    bigint REFERENCES patient(id),
    resource      text NOT NULL,            -- e.g. 'alert:42', 'series:spo2'
    request_id    text,
    client_addr   text,
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'not_found', 'refused', 'error'))
);
CREATE INDEX access_audit_patient_idx ON access_audit (patient_id, at DESC);
CREATE INDEX access_audit_clinician_idx ON access_audit (clinician_id, at DESC);
CREATE INDEX access_audit_at_idx ON access_audit (at DESC);

-- One guard for every append-only record of this file (issue 11's erasure
-- procedure is the only way past it, and records that it happened).
CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER access_audit_no_update BEFORE UPDATE OR DELETE ON access_audit
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- Notes on a patient's record (a note on an alert is an alert_event 'note').
CREATE TABLE patient_note (
    id            bigserial PRIMARY KEY,
    patient_id    bigint NOT NULL REFERENCES patient(id),
    at            timestamptz NOT NULL DEFAULT now(),
    clinician_id  bigint REFERENCES clinician(id),
    team_id       text REFERENCES team(id),
    text          text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000)
);
CREATE INDEX patient_note_patient_idx ON patient_note (patient_id, at DESC);
CREATE TRIGGER patient_note_no_update BEFORE UPDATE OR DELETE ON patient_note
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- The patient's status over time (patient.status is the current one).
CREATE TABLE patient_status_event (
    id            bigserial PRIMARY KEY,
    patient_id    bigint NOT NULL REFERENCES patient(id),
    at            timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL CHECK (status IN ('active', 'admitted', 'away', 'discharged')),
    expected_end  timestamptz,
    note          text,
    clinician_id  bigint REFERENCES clinician(id),
    team_id       text REFERENCES team(id)
);
CREATE INDEX patient_status_event_idx ON patient_status_event (patient_id, at DESC);
CREATE TRIGGER patient_status_event_no_update BEFORE UPDATE OR DELETE ON patient_status_event
    FOR EACH ROW EXECUTE FUNCTION append_only();
