-- The dashboard's sessions and sign-in attempts (issue 11, hardening; docs/security.md).
--
-- A session lives on the server: the cookie holds a random id (256 bits) and this
-- table only its SHA-256, so a copy of the table signs nobody in.  A session ends
-- when it has been idle too long (last_seen_at), at its absolute limit
-- (expires_at), or at logout (its row is deleted), whichever comes first; the
-- limits are settings (HOMEWARD_SESSION_IDLE_SECONDS, _ABSOLUTE_SECONDS).
CREATE TABLE web_session (
    id_hash       text PRIMARY KEY,          -- sha256 hex of the cookie's session id
    clinician_id  bigint NOT NULL REFERENCES clinician(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    client_addr   text
);
CREATE INDEX web_session_clinician_idx ON web_session (clinician_id);
CREATE INDEX web_session_expires_idx ON web_session (expires_at);

-- Sign-in attempts, for throttling across API processes (server/login_throttle.py).
-- A row is written before the password is checked (so concurrent attempts cannot
-- all slip under the limit), marked failed when the check fails and deleted when
-- it succeeds; rows older than the window are pruned as attempts come in.
-- username is lower-cased (NULL for a sign-in with an API token); client_key is
-- the address (an IPv6 address's /64).
CREATE TABLE login_attempt (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    username    text,
    client_key  text NOT NULL,
    failed      boolean NOT NULL DEFAULT false
);
CREATE INDEX login_attempt_username_idx ON login_attempt (username, at) WHERE username IS NOT NULL;
CREATE INDEX login_attempt_client_idx ON login_attempt (client_key, at);
CREATE INDEX login_attempt_at_idx ON login_attempt (at);
