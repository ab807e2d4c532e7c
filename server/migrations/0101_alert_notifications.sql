-- The notification layer of the alert engine: team fallbacks, on-call rotas,
-- and the durable notification outbox with a record of every delivery attempt.
-- Owned by the alerts package (alerts/notify.py, alerts/outbox.py); see docs/alerts.md.

-- Where a team's alerts go when nobody can be found at an escalation level.
CREATE TABLE team_escalation (
    team_id           text PRIMARY KEY REFERENCES team(id),
    fallback_team_id  text REFERENCES team(id),
    CHECK (fallback_team_id IS NULL OR fallback_team_id <> team_id)
);

-- Who is on duty when.  level 0 is the first line; higher levels are senior
-- cover an escalation policy can call on.  Times are instants (timestamptz):
-- a shift across the clock change is still the right length.
CREATE TABLE rota_shift (
    id            bigserial PRIMARY KEY,
    team_id       text NOT NULL REFERENCES team(id),
    clinician_id  bigint NOT NULL REFERENCES clinician(id),
    level         integer NOT NULL DEFAULT 0 CHECK (level >= 0),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX rota_shift_team_idx ON rota_shift (team_id, level, starts_at);

-- The durable outbox: one row per message to send, written in the same
-- transaction as the alert event that caused it, delivered by the outbox
-- worker with retries and back-off.  idempotency_key is sent with the message
-- (Idempotency-Key header, e-mail Message-ID) so a receiver can drop the rare
-- duplicate of at-least-once delivery.
CREATE TABLE notification (
    id               bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alert(id),
    alert_event_id   bigint REFERENCES alert_event(id),
    channel          text NOT NULL CHECK (channel IN ('dashboard', 'email', 'webhook')),
    target           text NOT NULL,           -- e-mail address, URL, or team id (dashboard)
    team_id          text REFERENCES team(id),
    clinician_id     bigint REFERENCES clinician(id),
    level            integer NOT NULL DEFAULT 0,
    reason           text NOT NULL,           -- opened, escalated, reminder, reopened, ...
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX notification_pending_idx ON notification (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_alert_idx ON notification (alert_id, id);

CREATE TABLE notification_attempt (
    id               bigserial PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notification(id),
    at               timestamptz NOT NULL,
    ok               boolean NOT NULL,
    duration_ms      double precision NOT NULL,
    error            text,
    response         text
);
CREATE INDEX notification_attempt_idx ON notification_attempt (notification_id, id);

-- Why an alert is muted (inhibition as data: the hub is offline, the patient
-- is admitted or away); a muted alert is recorded but not notified.
ALTER TABLE alert ADD COLUMN inhibited_by text;
-- When the alert's escalation level was last entered (reminders count from it).
ALTER TABLE alert ADD COLUMN level_entered_at timestamptz;
