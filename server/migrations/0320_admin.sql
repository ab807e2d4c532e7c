-- Administration (issue 11, section 1): invitations, a team's escalation policy and
-- shift times, hubs owned by an organisation and revoked.  See docs/admin.md.

-- A one-time, expiring invitation: its page lets the clinician set a password.
-- Only the sha256 of the token is kept (like API tokens, server/auth.py).
CREATE TABLE clinician_invite (
    token_hash    text PRIMARY KEY,
    clinician_id  bigint NOT NULL REFERENCES clinician(id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    created_by    bigint REFERENCES clinician(id),
    CHECK (expires_at > created_at)
);
CREATE INDEX clinician_invite_clinician_idx ON clinician_invite (clinician_id);

-- The escalation policy (a name from the routing file's escalation_policies) a team's
-- alerts follow, over the one the route chose; NULL: the route's.
ALTER TABLE team_escalation ADD COLUMN escalation_policy text;

-- A team's named shifts ("early 07:30-15:30", "night 20:00-08:00": an end before the
-- start crosses midnight), in the team's local time zone; a rota names them by date.
CREATE TABLE team_shift (
    team_id   text NOT NULL REFERENCES team(id),
    name      text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]*$'),
    starts    time NOT NULL,
    ends      time NOT NULL,
    timezone  text NOT NULL DEFAULT 'Europe/London',
    CHECK (starts <> ends),
    PRIMARY KEY (team_id, name)
);

-- A hub belongs to the organisation that provisioned it (its admins manage it); NULL
-- for hubs made before this migration.  A revoked hub keeps its row and its history.
ALTER TABLE hub ADD COLUMN organisation_id bigint REFERENCES organisation(id);
ALTER TABLE hub ADD COLUMN revoked_at timestamptz;
