"""Backups with pg_dump's custom format, and their restore (docs/operations.md).

pg_dump reads the whole database in one REPEATABLE READ snapshot, so a dump
taken while the ingest is writing holds exactly the readings committed before
the snapshot, and never half a batch; it does not stop the ingest (its ACCESS
SHARE locks conflict only with DDL).  With TimescaleDB the restore runs between
``timescaledb_pre_restore()`` and ``timescaledb_post_restore()``, as Timescale
documents.  Roles are cluster objects and are not in a database dump: restore
them first (``pg_dumpall --roles-only``) or restore with ``--no-owner``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from server.migrate import has_timescaledb


def pg_tool(name: str, bindir: Path | None = None) -> str:
    """The path of a PostgreSQL client program: ``bindir``, ``HOMEWARD_PG_BINDIR``, PATH."""
    for folder in (bindir, os.environ.get("HOMEWARD_PG_BINDIR")):
        if folder and (Path(folder) / name).exists():
            return str(Path(folder) / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found (install the PostgreSQL client, or set"
                                " HOMEWARD_PG_BINDIR)")
    return found


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}):\n{result.stderr}")


def dump(url: str, path: Path, *, bindir: Path | None = None) -> Path:
    """``pg_dump --format=custom`` of the database at ``url`` into ``path``."""
    _run([pg_tool("pg_dump", bindir), "--format=custom", "--file", str(path), "--dbname", url])
    return path


def restore(path: Path, url: str, *, bindir: Path | None = None, jobs: int = 1,
            no_owner: bool = False) -> None:
    """Restore a custom-format dump into the (empty, existing) database at ``url``."""
    args = [pg_tool("pg_restore", bindir), "--exit-on-error", "--dbname", url,
            f"--jobs={jobs}"]
    if no_owner:
        args += ["--no-owner", "--no-privileges"]
    with psycopg.connect(url, autocommit=True) as conn:
        timescale = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            " AND current_setting('shared_preload_libraries') LIKE '%%timescaledb%%'"
        ).fetchone() is not None
        if timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    try:
        _run([*args, str(path)])
    finally:
        if timescale:
            with psycopg.connect(url, autocommit=True) as conn:
                if has_timescaledb(conn):
                    conn.execute("SELECT timescaledb_post_restore()")
