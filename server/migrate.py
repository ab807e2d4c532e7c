"""Plain SQL migrations applied in file-name order (``homeward db migrate``).

Each file in ``server/migrations/`` runs once, in its own transaction, and
is recorded in ``schema_migration`` with its checksum; a file changed after
it was applied is an error, not a silent drift.  A session-level advisory
lock makes concurrent migrators (several processes starting at once) safe.

Migrations run as the role that owns the schema; the processes that serve
(ingest, API, alert engine) may connect as a role with fewer rights, given
them by :func:`grant_application_role`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS_PACKAGE = "server.migrations"
_LOCK_KEY = 0x486F6D65  # "Home"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files(MIGRATIONS_PACKAGE)
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name, f.read_text(encoding="utf-8")) for f in files]


def migrate(url: str, *, echo: bool = False) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT name, checksum FROM schema_migration").fetchall()
            done: dict[str, str] = dict(rows)
            for m in available_migrations():
                if m.name in done:
                    if done[m.name] != m.checksum:
                        raise RuntimeError(
                            f"migration {m.name} changed after it was applied; "
                            "write a new migration instead of editing an applied one"
                        )
                    continue
                if echo:
                    print(f"applying {m.name}")
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute("INSERT INTO schema_migration (name, checksum) VALUES (%s, %s)",
                                 (m.name, m.checksum))
                applied_now.append(m.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


#: What the application role may do with the schema the migrations made: read and
#: write rows.  Not: TRUNCATE, REFERENCES, TRIGGER, any DDL (it owns nothing, so it
#: cannot drop the append-only triggers of the audit tables either).
_APPLICATION_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}",
    "REVOKE ALL ON schema_migration FROM {role}",
)


def ensure_login_role(url: str, role: str, password: str) -> None:
    """Create ``role`` (or set its password): it may log in and nothing more (NOSUPERUSER
    NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS); run as a role that may create
    roles, at ``url``.  Grant it what it needs afterwards."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            " NOBYPASSRLS PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


def grant_application_role(url: str, role: str) -> None:
    """Let ``role`` read and write the rows of every table (run after :func:`migrate`,
    as the owner, at ``url``); tables that later migrations add are granted too."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for statement in _APPLICATION_GRANTS:
            conn.execute(sql.SQL(statement).format(role=sql.Identifier(role)))


def has_timescaledb(conn: psycopg.Connection[object]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def migrations_dir() -> Path:
    return Path(str(resources.files(MIGRATIONS_PACKAGE)))
