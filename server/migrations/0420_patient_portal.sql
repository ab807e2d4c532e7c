-- The patient portal (issue 9, "the patient in the loop"; docs/patient-portal.md): a
-- patient signs in with a one-time code e-mailed through the notification outbox and
-- sees their own readings, whether their care team has seen them, and the team's
-- messages (patient_message, 0401).  As with the dashboard's sessions (0340), reading
-- these tables signs nobody in: codes and session ids are kept only as hashes.
-- A patient's own requests are audited in access_audit with role 'patient', no
-- clinician, and the patient's id (its columns allow that as they are).

-- Where a patient's sign-in codes (and notices of new messages) are sent.  One patient
-- per address, whatever its case.
ALTER TABLE patient ADD COLUMN email text
    CHECK (email IS NULL OR (length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1));
CREATE UNIQUE INDEX patient_email_unique ON patient (lower(email)) WHERE email IS NOT NULL;

-- A sign-in in progress.  The browser that asked for a code holds a random challenge
-- (a cookie of 256 bits; here its SHA-256), so a code works only in that browser, once,
-- until expires_at, and for at most a few wrong tries (attempts).  code_hash is
-- HMAC-SHA256 under the server's secret key of the challenge and the code, so this
-- table alone does not give the code away (8 digits are quickly tried against a plain
-- hash).  An address that names no patient gets the same answer and a row without a
-- patient or a code, so requests are counted alike: per address (email_key, an HMAC of
-- the lower-cased address) and per client (client_key, as login_attempt's).  Rows are
-- pruned a day after they were made (server/patient_auth.py).
CREATE TABLE patient_sign_in (
    id               bigserial PRIMARY KEY,
    challenge_hash   text NOT NULL UNIQUE,
    email_key        text NOT NULL,
    patient_id       bigint REFERENCES patient(id) ON DELETE CASCADE,
    code_hash        text,
    notification_id  bigint REFERENCES notification(id) ON DELETE SET NULL,
    client_key       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    used_at          timestamptz,
    CHECK ((patient_id IS NULL) = (code_hash IS NULL))
);
CREATE INDEX patient_sign_in_email_idx ON patient_sign_in (email_key, created_at);
CREATE INDEX patient_sign_in_client_idx ON patient_sign_in (client_key, created_at);
CREATE INDEX patient_sign_in_created_idx ON patient_sign_in (created_at);
CREATE INDEX patient_sign_in_patient_idx ON patient_sign_in (patient_id);

-- A patient's sessions, as web_session is a clinician's: the cookie holds a random id,
-- this table its SHA-256; idle and absolute limits (HOMEWARD_PATIENT_SESSION_*), and
-- sign-out deletes the row.
CREATE TABLE patient_session (
    id_hash       text PRIMARY KEY,
    patient_id    bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    client_addr   text
);
CREATE INDEX patient_session_patient_idx ON patient_session (patient_id);
CREATE INDEX patient_session_expires_idx ON patient_session (expires_at);
