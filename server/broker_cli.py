"""``homeward broker init``: the broker's dynamic-security state file with its server users.

Run before the broker starts, and again whenever a server password changes: the
users named are written (or rewritten) with their roles, and every hub provisioned
since (``server.broker_credentials``) stays.  Each user's password comes from the
environment, ``HOMEWARD_MQTT_<NAME>_PASSWORD`` or a file named by
``HOMEWARD_MQTT_<NAME>_PASSWORD_FILE``, where ``<NAME>`` is the username without
``homeward-``, upper case, ``-`` as ``_``: homeward-ingest -> HOMEWARD_MQTT_INGEST_PASSWORD.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from homeward.broker_roles import DEFAULT_USERS, SERVER_USER_PREFIX, Role
from homeward.settings import variable_or_file

DEFAULT_USER_ROLES = [f"{user}:{role.value}" for role, user in DEFAULT_USERS.items()]


def password_variable(username: str) -> str:
    name = username.removeprefix(SERVER_USER_PREFIX).upper().replace("-", "_")
    return f"HOMEWARD_MQTT_{name}_PASSWORD"


def password_from_environment(username: str, environ: dict[str, str]) -> str:
    variable = password_variable(username)
    try:
        found = variable_or_file(variable, environ)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if not found:
        raise typer.BadParameter(f"set {variable} (or {variable}_FILE) for {username}")
    return found


def parse_user(spec: str) -> tuple[str, list[Role]]:
    """``NAME:ROLE[,ROLE...]`` -> (name, roles)."""
    name, _, roles = spec.partition(":")
    if not name.startswith(SERVER_USER_PREFIX) or not roles:
        raise typer.BadParameter(f"{spec!r}: use homeward-NAME:ROLE[,ROLE], roles "
                                 f"{', '.join(r.value for r in Role if r is not Role.HUB)}")
    try:
        parsed = [Role(r) for r in roles.split(",")]
    except ValueError as err:
        raise typer.BadParameter(f"{spec!r}: {err}") from err
    if Role.HUB in parsed:
        raise typer.BadParameter("hubs are provisioned, not listed here")
    return name, parsed


def write_server_users(state_file: Path, specs: list[str], environ: dict[str, str]) -> str:
    """Write (or rewrite) the users ``specs`` name into ``state_file``, keeping every hub
    provisioned since; says what it did."""
    from server.broker_dynsec import initial_state, merged, write_state

    users = dict(parse_user(spec) for spec in specs)
    wanted = initial_state({name: (password_from_environment(name, environ), roles)
                            for name, roles in users.items()})
    state = wanted
    if state_file.exists():
        state = merged(json.loads(state_file.read_text(encoding="utf-8")), wanted)
    write_state(state_file, state)
    hubs = sum(1 for r in state["roles"] if r["rolename"].startswith("hub:"))
    return f"{state_file}: {', '.join(users)} written; {hubs} hub(s) kept."


def register(app: typer.Typer) -> None:
    broker = typer.Typer(help="The MQTT broker's logins and rights (docs/broker.md).",
                         no_args_is_help=True)
    app.add_typer(broker, name="broker")

    @broker.command("init")
    def init(
        state_file: Annotated[Path, typer.Argument(
            help="The plugin's state file (plugin_opt_config_file), e.g. "
                 "/mosquitto/data/dynamic-security.json.")],
        user: Annotated[list[str] | None, typer.Option(
            "--user", help="homeward-NAME:ROLE[,ROLE] (repeat). Default: "
                           + " ".join(DEFAULT_USER_ROLES))] = None,
    ) -> None:
        """Write the server users and their roles into the dynamic-security state file."""
        typer.echo(write_server_users(state_file, user or DEFAULT_USER_ROLES,
                                      dict(os.environ)))
