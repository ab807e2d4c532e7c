"""``homeward deploy init``: the one-shot step before a production stack starts.

The compose file's ``init`` service runs it, and it can be run again at any time
(after a password change, on an upgrade): each step keeps what is there.

1. TLS for the broker: a private CA and a broker certificate for the names hubs
   and servers reach it by, unless ``ca.crt``, ``server.crt`` and ``server.key``
   are already in the folder (an adopter's own are kept, never overwritten).
2. The broker's dynamic-security state with the server users
   (``homeward broker init``), every hub provisioned since kept.
3. The database schema (``homeward db migrate``), and the role the servers connect
   as (``--app-role``, password ``HOMEWARD_DB_APP_PASSWORD``): it reads and writes
   rows and owns nothing, so it cannot alter the schema or the append-only history.
4. The first organisation and its admin from ``HOMEWARD_BOOTSTRAP_*``, once: on a
   database that already has an organisation this step says so and does nothing.

Files the broker reads are given to ``--owner`` (the broker image's uid 1883) when
run as root, since the init container and the broker run as different users.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

#: A broker certificate's life: 825 days, the longest most TLS clients accept for a
#: certificate from a private CA that is not a root store's.
SERVER_DAYS = 825
CA_DAYS = 3650
CERT_FILES = ("ca.crt", "server.crt", "server.key")
#: HOMEWARD_BOOTSTRAP_<FIELD>: the first organisation and admin (all but email and
#: password needed; without a password she signs in with the API token printed once).
BOOTSTRAP_FIELDS = ("organisation", "username", "name", "email", "password")
APP_PASSWORD_VARIABLE = "HOMEWARD_DB_APP_PASSWORD"  # noqa: S105 -- a name, not a secret


def make_broker_certificates(folder: Path, names: list[str]) -> bool:
    """A CA and a broker certificate for ``names`` (DNS names or IP addresses) in
    ``folder``; False (nothing written) when all three files are there already."""
    if all((folder / f).exists() for f in CERT_FILES):
        return False
    present = [f for f in CERT_FILES if (folder / f).exists()]
    if present:
        raise ValueError(f"{folder} holds {', '.join(present)} but not all of "
                         f"{', '.join(CERT_FILES)}: add the rest or remove them")
    from stack.certificates import make_ca, sign, write_certificate, write_key

    ca, ca_key = make_ca("Homeward broker CA", days=CA_DAYS)
    cert, key = sign(ca, ca_key, names[0], days=SERVER_DAYS, server_names=names)
    folder.mkdir(parents=True, exist_ok=True)
    write_certificate(ca, folder / "ca.crt")
    write_certificate(cert, folder / "server.crt")
    write_key(key, folder / "server.key")
    # the CA's key is not kept: a new broker certificate means a new CA, which the
    # hubs receive in their next provisioning bundle (docs/deploy.md)
    return True


def _give(paths: list[Path], owner: str | None) -> None:
    if owner is None or os.geteuid() != 0:
        return
    uid, _, gid = owner.partition(":")
    for path in paths:
        os.chown(path, int(uid), int(gid or uid))


def _bootstrap(database_url: str, environ: dict[str, str]) -> str:
    import psycopg

    from server import admin
    from server.admin_cli_support import record

    wanted = {k: environ.get(f"HOMEWARD_BOOTSTRAP_{k.upper()}") or None  # "" is unset
              for k in BOOTSTRAP_FIELDS}
    if not all(wanted[k] for k in ("organisation", "username", "name")):
        return ("bootstrap: skipped (set HOMEWARD_BOOTSTRAP_ORGANISATION, _USERNAME and "
                "_NAME to create the first admin)")
    with psycopg.connect(database_url, autocommit=True,
                         application_name="homeward-deploy-init") as conn:
        try:
            made = admin.bootstrap(conn, organisation=str(wanted["organisation"]),
                                   username=str(wanted["username"]),
                                   display_name=str(wanted["name"]),
                                   email=wanted["email"], password=wanted["password"])
        except admin.Conflict:
            return "bootstrap: an organisation exists already; nothing done"
        record(conn, "bootstrap", f"organisation:{made.organisation_id}")
    how = ("sign in with HOMEWARD_BOOTSTRAP_PASSWORD" if wanted["password"]
           else f"API token (shown once): {made.admin.api_token}")
    return (f"bootstrap: organisation {wanted['organisation']!r} and admin "
            f"{wanted['username']!r} created; {how}")


def register(app: typer.Typer) -> None:
    deploy = typer.Typer(help="Production set-up (docs/deploy.md).", no_args_is_help=True)
    app.add_typer(deploy, name="deploy")

    @deploy.command("init")
    def init(
        certs: Annotated[Path, typer.Option(help="The broker's certificate folder.")] = Path(
            "/mosquitto/certs"),
        broker_state: Annotated[Path, typer.Option(
            help="The dynamic-security state file.")] = Path(
            "/mosquitto/data/dynamic-security.json"),
        broker_name: Annotated[list[str] | None, typer.Option(
            "--broker-name", help="A name or address hubs and servers reach the broker by "
                                  "(repeat); the first is the certificate's subject. "
                                  "Default: mqtt and localhost.")] = None,
        owner: Annotated[str | None, typer.Option(
            help="uid[:gid] to give the broker's files when run as root.")] = "1883:1883",
        database_url: Annotated[str | None, typer.Option(
            envvar="HOMEWARD_DATABASE_URL",
            help="libpq URL of the schema's owner; default from settings")] = None,
        app_role: Annotated[str, typer.Option(
            help="The role the servers connect as; its password from "
                 "HOMEWARD_DB_APP_PASSWORD (or _FILE).")] = "homeward_app",
    ) -> None:
        """Broker certificates and logins, the schema and the first admin; safe to re-run."""
        from homeward.settings import get_settings, variable_or_file
        from server.admin_cli_support import fail
        from server.broker_cli import DEFAULT_USER_ROLES, write_server_users
        from server.migrate import ensure_login_role, grant_application_role, migrate

        environ = dict(os.environ)
        try:
            made = make_broker_certificates(certs, broker_name or ["mqtt", "localhost"])
        except ValueError as err:
            fail(str(err))
        _give([certs / f for f in CERT_FILES], owner)
        typer.echo(f"certificates: {'made in' if made else 'kept in'} {certs}")
        typer.echo(write_server_users(broker_state, DEFAULT_USER_ROLES, environ))
        _give([broker_state.parent, broker_state], owner)
        url = database_url or get_settings().database_url
        applied = migrate(url)
        typer.echo(f"schema: {len(applied)} migration(s) applied" if applied
                   else "schema: up to date")
        try:
            app_password = variable_or_file(APP_PASSWORD_VARIABLE, environ)
        except ValueError as err:
            fail(str(err))
        if app_password:
            ensure_login_role(url, app_role, app_password)
            grant_application_role(url, app_role)
            typer.echo(f"application role: {app_role} may read and write rows")
        else:
            typer.echo("application role: skipped (set HOMEWARD_DB_APP_PASSWORD to make one; "
                       "the servers then connect as the owner)")
        typer.echo(_bootstrap(url, environ))
