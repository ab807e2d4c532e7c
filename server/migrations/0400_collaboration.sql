-- Working together (issue 9): care teams across organisations, hand-overs, tasks, and
-- messages that are not alerts in the notification outbox.  The access model stays in
-- server/access.py; the lifecycle rules live in server/collaboration/*.py.
--
-- Rows about a patient go when the patient is erased (ON DELETE CASCADE), and hand-overs
-- of an alert go with the alert when retention purges it: the erasure procedure
-- (0300_data_lifecycle.sql) deletes alerts, then the patient.

-- How long a team has to accept a hand-over offered to it before it escalates there.
ALTER TABLE team ADD COLUMN handover_accept_minutes integer NOT NULL DEFAULT 30
    CHECK (handover_accept_minutes BETWEEN 1 AND 10080);

-- A team invited onto a patient's care team.  A team of the patient's lead team's own
-- organisation joins at once (state 'accepted' from the start); a team of another
-- organisation joins when its team lead or an admin of its organisation accepts.
CREATE TABLE care_team_invitation (
    id             bigserial PRIMARY KEY,
    patient_id     bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    team_id        text NOT NULL REFERENCES team(id),
    role           text NOT NULL CHECK (role IN ('lead', 'contributor')),
    state          text NOT NULL DEFAULT 'offered'
                   CHECK (state IN ('offered', 'accepted', 'declined', 'cancelled')),
    note           text,
    invited_by     bigint REFERENCES clinician(id),
    invited_team   text REFERENCES team(id),
    invited_at     timestamptz NOT NULL,
    decided_by     bigint REFERENCES clinician(id),
    decided_at     timestamptz,
    decline_reason text,
    CHECK ((state = 'offered') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX care_team_invitation_one_open
    ON care_team_invitation (patient_id, team_id) WHERE state = 'offered';
CREATE INDEX care_team_invitation_team_idx ON care_team_invitation (team_id, state);

-- The care team's history: who joined, left or became lead, when and by whose hand
-- (the shared timeline; the audit keeps what each team saw meanwhile).
CREATE TABLE care_team_event (
    id          bigserial PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    team_id     text NOT NULL REFERENCES team(id),
    event       text NOT NULL CHECK (event IN ('invited', 'joined', 'declined', 'left',
                                               'lead', 'contributor', 'cancelled')),
    role        text,
    at          timestamptz NOT NULL,
    clinician_id bigint REFERENCES clinician(id),
    by_team     text REFERENCES team(id),
    note        text
);
CREATE INDEX care_team_event_patient_idx ON care_team_event (patient_id, at DESC);

-- A hand-over of an alert, or of the lead responsibility for a patient, with its SBAR
-- note.  Until accepted the sending team keeps it and its escalation keeps running;
-- unanswered by respond_by, it escalates at the receiving team (escalation_alert_id,
-- a system alert routed there) and the sender is told; 'expired' means what was handed
-- over ended first (the alert resolved, the patient discharged).
CREATE TABLE handover (
    id                  bigserial PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('alert', 'lead')),
    alert_id            bigint REFERENCES alert(id) ON DELETE CASCADE,
    patient_id          bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    from_team           text NOT NULL REFERENCES team(id),
    to_team             text NOT NULL REFERENCES team(id),
    note                jsonb NOT NULL,
    state               text NOT NULL DEFAULT 'offered'
                        CHECK (state IN ('offered', 'accepted', 'declined', 'expired')),
    offered_by          bigint REFERENCES clinician(id),
    offered_at          timestamptz NOT NULL,
    respond_by          timestamptz NOT NULL,
    escalated_at        timestamptz,
    escalation_alert_id bigint REFERENCES alert(id) ON DELETE SET NULL,
    decided_by          bigint REFERENCES clinician(id),
    decided_at          timestamptz,
    decline_reason      text,
    CHECK ((kind = 'alert') = (alert_id IS NOT NULL)),
    CHECK (from_team <> to_team),
    CHECK ((state = 'offered') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX handover_one_open_per_alert ON handover (alert_id) WHERE state = 'offered';
CREATE UNIQUE INDEX handover_one_open_lead ON handover (patient_id)
    WHERE state = 'offered' AND kind = 'lead';
CREATE INDEX handover_team_idx ON handover (to_team, state);
CREATE INDEX handover_from_idx ON handover (from_team, state);
CREATE INDEX handover_patient_idx ON handover (patient_id, offered_at DESC);
CREATE INDEX handover_due_idx ON handover (respond_by) WHERE state = 'offered' AND escalated_at IS NULL;

-- A task asked of a team about a patient.  Overdue, it raises an alert routed to the
-- owning team (overdue_alert_id), so the team's escalation policy and channels apply.
CREATE TABLE task (
    id                bigserial PRIMARY KEY,
    patient_id        bigint NOT NULL REFERENCES patient(id) ON DELETE CASCADE,
    team_id           text NOT NULL REFERENCES team(id),
    title             text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    detail            text,
    priority          text NOT NULL DEFAULT 'routine'
                      CHECK (priority IN ('routine', 'urgent', 'asap', 'stat')),
    due_at            timestamptz NOT NULL,
    state             text NOT NULL DEFAULT 'requested'
                      CHECK (state IN ('requested', 'claimed', 'completed', 'declined',
                                       'cancelled')),
    requested_by      bigint REFERENCES clinician(id),
    requested_team    text REFERENCES team(id),
    requested_at      timestamptz NOT NULL,
    alert_id          bigint REFERENCES alert(id) ON DELETE SET NULL,
    claimed_by        bigint REFERENCES clinician(id),
    claimed_at        timestamptz,
    closed_by         bigint REFERENCES clinician(id),
    closed_at         timestamptz,
    close_note        text,
    overdue_alert_id  bigint REFERENCES alert(id) ON DELETE SET NULL,
    CHECK ((state IN ('completed', 'declined', 'cancelled')) = (closed_at IS NOT NULL))
);
CREATE INDEX task_team_idx ON task (team_id, state, due_at);
CREATE INDEX task_patient_idx ON task (patient_id, requested_at DESC);
CREATE INDEX task_due_idx ON task (due_at) WHERE state IN ('requested', 'claimed')
    AND overdue_alert_id IS NULL;

-- The outbox also carries messages that are no alert's (a patient's sign-in code, a
-- team's shift report): alert_id is then NULL and the payload holds subject and body.
ALTER TABLE notification ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE notification ADD COLUMN kind text NOT NULL DEFAULT 'alert'
    CHECK (kind IN ('alert', 'message'));
ALTER TABLE notification ADD CONSTRAINT notification_kind_alert
    CHECK ((kind = 'alert') = (alert_id IS NOT NULL));
