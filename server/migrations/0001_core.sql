-- Core schema: organisations, teams, clinicians, patients, hubs, enrolments,
-- devices, readings, quarantine and the evaluation queue.
-- Runs on plain PostgreSQL 15+; where TimescaleDB is installed the reading
-- table becomes a hypertable (0002_timescale.sql).

DO $$
BEGIN
    -- Only when the server preloads it (shared_preload_libraries); an
    -- installed but not loaded extension means "plain PostgreSQL".
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

CREATE TABLE organisation (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A community team.  kind is the type of service (district_nursing,
-- heart_failure, copd, out_of_hours, gp_practice, social_care).
CREATE TABLE team (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]*$'),
    organisation_id bigint NOT NULL REFERENCES organisation(id),
    name            text NOT NULL,
    kind            text NOT NULL,
    email           text,
    webhook_url     text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clinician (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    display_name    text NOT NULL,
    email           text,
    role            text NOT NULL DEFAULT 'nurse' CHECK (role IN ('nurse', 'admin', 'system')),
    password_hash   text,           -- scrypt, see server/auth.py
    api_token_hash  text UNIQUE,    -- sha256 of the bearer token
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_member (
    team_id      text NOT NULL REFERENCES team(id),
    clinician_id bigint NOT NULL REFERENCES clinician(id),
    PRIMARY KEY (team_id, clinician_id)
);

CREATE TABLE patient (
    id            bigserial PRIMARY KEY,
    nhs_number    text UNIQUE,
    display_name  text NOT NULL,
    date_of_birth date,
    -- 'active', 'admitted' (in hospital) or 'away': admitted/away mute alerts
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'admitted', 'away', 'discharged')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The patient's care teams.
CREATE TABLE patient_team (
    patient_id bigint NOT NULL REFERENCES patient(id),
    team_id    text NOT NULL REFERENCES team(id),
    PRIMARY KEY (patient_id, team_id)
);

-- A hub in a home; its id is also its MQTT username.
CREATE TABLE hub (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'online', 'offline')),
    last_status     jsonb,
    last_status_at  timestamptz,
    last_seen_at    timestamptz
);

-- Which patient a hub served, and when.  Readings are attributed to the
-- patient enrolled at the reading's taken_at.
CREATE TABLE enrolment (
    id          bigserial PRIMARY KEY,
    hub_id      text NOT NULL REFERENCES hub(id),
    patient_id  bigint NOT NULL REFERENCES patient(id),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX enrolment_hub_idx ON enrolment (hub_id, valid_from);

-- Devices paired to a hub (published to the hub as its retained config).
CREATE TABLE device (
    hub_id     text NOT NULL REFERENCES hub(id),
    address    text NOT NULL,
    kind       text NOT NULL,
    name       text,
    paired_at  timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    PRIMARY KEY (hub_id, address)
);

-- One row per reading.  (id, taken_at) is unique: id is the idempotency key
-- end to end, and TimescaleDB requires the time column in unique indexes.
CREATE TABLE reading (
    id           uuid NOT NULL,
    taken_at     timestamptz NOT NULL,
    kind         text NOT NULL,
    hub_id       text NOT NULL,
    patient_id   bigint,
    device       text NOT NULL,
    "values"     jsonb NOT NULL,
    flags        text[] NOT NULL DEFAULT '{}',
    raw          text,
    received_at  timestamptz NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, taken_at)
);
CREATE INDEX reading_patient_kind_time_idx ON reading (patient_id, kind, taken_at DESC);
CREATE INDEX reading_hub_time_idx ON reading (hub_id, taken_at DESC);

-- Payloads or batch items that failed to parse or validate, with the reason.
CREATE TABLE quarantine (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    hub_id       text,
    topic        text NOT NULL,
    item_index   integer,
    reason       text NOT NULL,
    item         jsonb,   -- the decoded JSON item when it was JSON
    payload      bytea    -- the raw bytes when it was not
);
CREATE INDEX quarantine_time_idx ON quarantine (received_at DESC);

-- Transactional outbox from ingest to the alert engine: a row is written in
-- the same transaction as each newly stored reading (never for a duplicate),
-- and deleted by the alert engine in the transaction that evaluates it.
CREATE TABLE evaluation_queue (
    seq         bigserial PRIMARY KEY,
    reading_id  uuid NOT NULL,
    taken_at    timestamptz NOT NULL,
    patient_id  bigint,
    kind        text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
