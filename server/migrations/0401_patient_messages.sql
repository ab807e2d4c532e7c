-- Messages between a patient and the teams on their care team (issue 9, "the patient
-- in the loop"): a nurse writes from an alert or the patient's page ("please repeat
-- your blood pressure in 15 minutes"); the patient reads it, confirms it when asked,
-- or replies.  Shown on the shared timeline (server/record_queries.py).
CREATE TABLE patient_message (
    id                  bigserial PRIMARY KEY,
    patient_id          bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    direction           text NOT NULL CHECK (direction IN ('to_patient', 'from_patient')),
    clinician_id        bigint REFERENCES clinician(id),
    team_id             text REFERENCES team(id),
    alert_id            bigint REFERENCES alert(id) ON DELETE SET NULL,
    reply_to            bigint REFERENCES patient_message(id) ON DELETE SET NULL,
    body                text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    needs_confirmation  boolean NOT NULL DEFAULT false,
    sent_at             timestamptz NOT NULL,
    read_at             timestamptz,
    confirmed_at        timestamptz,
    CHECK ((direction = 'to_patient') = (clinician_id IS NOT NULL)),
    CHECK (confirmed_at IS NULL OR needs_confirmation)
);
CREATE INDEX patient_message_patient_idx ON patient_message (patient_id, sent_at DESC);
