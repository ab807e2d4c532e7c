"""What every ``homeward admin`` command shares: the connection, the audit, the output.

Commands talk to the database directly (``HOMEWARD_DATABASE_URL``, or
``homeward admin --database-url``), like ``homeward db``: whoever runs them
holds the database's credentials, so they act as the installation's operator.
Each write is audited (``server.audit``) with role ``cli`` and the operating-
system user as its address, since there is no clinician behind it.
"""

from __future__ import annotations

import getpass
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import psycopg
import typer

from server import audit

T = TypeVar("T")


def database_url(ctx: typer.Context) -> str:
    url = ctx.obj.get("database_url") if isinstance(ctx.obj, dict) else None
    if url:
        return str(url)
    from homeward.settings import get_settings

    return get_settings().database_url


@contextmanager
def connect(ctx: typer.Context) -> Iterator[psycopg.Connection[Any]]:
    url = database_url(ctx)
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="homeward-admin")
    except psycopg.OperationalError as err:
        fail(f"cannot connect to the database ({err}). Set HOMEWARD_DATABASE_URL or "
             "--database-url.", code=2)
    with conn:
        yield conn


def fail(message: str, *, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def refused(call: Callable[[], T]) -> T:
    """Run ``call``; an administrative refusal is a clear error and exit code 1."""
    from server.admin import AdminError
    from server.invites import InviteRefused
    from server.rota_io import RotaError

    try:
        return call()
    except (AdminError, InviteRefused, RotaError) as err:
        fail(str(err))
    except psycopg.errors.UndefinedTable as err:
        fail(f"the schema is not up to date ({err.diag.message_primary}); run "
             "`homeward db migrate`", code=2)


def record(conn: psycopg.Connection[Any], action: str, resource: str,
           patient_id: int | None = None) -> None:
    """Audit one write made from the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    audit.record(conn, audit.AuditEntry(
        clinician_id=None, role="cli", action=f"homeward admin {action}", resource=resource,
        patient_id=patient_id, request_id=uuid.uuid4().hex, client_addr=f"cli:{user}",
        outcome="ok"))


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str = "",
          as_json: bool = False) -> None:
    """Rows as a table on a terminal (rich), or as JSON with ``--json``."""
    if as_json:
        emit_json(list(rows))
        return
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title or None, show_lines=False)
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*[_cell(row.get(c)) for c in columns])
    Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None).print(view)
    if not rows:
        typer.echo("(none)")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_cell(v) if not isinstance(v, dict) else
                         " ".join(str(x) for x in v.values() if x is not None) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def organisation_id(conn: psycopg.Connection[Any], given: str | None) -> int:
    """An organisation by id or name; without one, the only organisation there is."""
    if given is None:
        rows = conn.execute("SELECT id FROM organisation ORDER BY id LIMIT 2").fetchall()
        if len(rows) == 1:
            return int(rows[0][0])
        fail("more than one organisation: say which with --org" if rows else
             "no organisation yet: run `homeward admin bootstrap` first")
    row = conn.execute("SELECT id FROM organisation WHERE name = %s OR id::text = %s"
                       " ORDER BY name = %s DESC LIMIT 1", (given, given, given)).fetchone()
    if row is None:
        fail(f"unknown organisation {given!r}")
    return int(row[0])


def secret_once(label: str, value: str) -> None:
    typer.secho(f"{label}: {value}", bold=True)
    typer.echo("  (shown once: store it now; only its hash is kept)")
