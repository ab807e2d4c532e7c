"""``homeward admin hub create|provision|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer

from server.admin_cli_support import connect, emit_json, organisation_id, record, refused

OrgOpt = Annotated[str | None, typer.Option("--org", help="Organisation id or name; default: "
                                                          "the only one.")]


def register_hubs(hub: typer.Typer) -> None:
    @hub.command("create")
    def hub_create(ctx: typer.Context, hub_id: str, org_: OrgOpt = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Record a hub without broker credentials (`provision` makes both)."""
        from server import admin

        with connect(ctx) as conn:
            org_id = organisation_id(conn, org_)
            refused(lambda: admin.create_hub(conn, hub_id=hub_id, organisation_id=org_id))
            record(conn, "hub create", f"hub:{hub_id}")
        emit_json({"id": hub_id, "organisation_id": org_id}) if as_json else typer.echo(
            f"Hub {hub_id!r} created in organisation {org_id} (no broker credentials yet).")
