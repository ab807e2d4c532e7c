"""``homeward admin hub create|provision|revoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from server.admin_cli_support import (
    connect,
    emit_json,
    fail,
    organisation_id,
    record,
    refused,
)

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

    @hub.command("provision")
    def hub_provision(
        ctx: typer.Context, hub_id: str, org_: OrgOpt = None,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Write the bundle here (mode 0600); else print it.")] = None,
        replace: Annotated[bool, typer.Option(
            help="The hub has credentials: make new ones (the old password stops "
                 "working).")] = False,
        ca: Annotated[Path | None, typer.Option(
            "--ca", help="The broker's CA for the bundle; default HOMEWARD_MQTT_CA_FILE.")
                      ] = None,
    ) -> None:
        """Record the hub and create its broker credentials; its provisioning bundle
        (hub id, broker URL, CA, password) for `homeward edge --bundle`."""
        from homeward.provisioning import write_bundle
        from homeward.settings import get_settings
        from server import hub_provisioning

        with connect(ctx) as conn:
            org_id = organisation_id(conn, org_)
            bundle = refused(lambda: hub_provisioning.provision(
                conn, hub_id=hub_id, organisation_id=org_id, settings=get_settings(),
                replace=replace, ca_file=ca))
            record(conn, "hub provision", f"hub:{hub_id}")
        if out is None:
            typer.echo(bundle.model_dump_json(indent=2, exclude_none=True))
            typer.echo("(the bundle holds the hub's password, shown once: copy it to the "
                       "hub only)", err=True)
            return
        try:
            write_bundle(bundle, out)
        except OSError as err:
            typer.echo(bundle.model_dump_json(indent=2, exclude_none=True))
            fail(f"the hub has its credentials, but {out} could not be written "
                 f"({err.strerror}); the bundle is above, shown once")
        typer.echo(f"Hub {hub_id!r} provisioned; its bundle is in {out} (mode 0600, holds "
                   f"its password). On the hub: homeward edge --bundle {out.name}")

    @hub.command("revoke")
    def hub_revoke(ctx: typer.Context, hub_id: str) -> None:
        """Take the hub's broker credentials away now (a connected hub is disconnected);
        its record and readings stay, its enrolment ends."""
        from homeward.settings import get_settings
        from server import hub_provisioning

        with connect(ctx) as conn:
            had = refused(lambda: hub_provisioning.revoke(conn, hub_id=hub_id,
                                                          settings=get_settings()))
            record(conn, "hub revoke", f"hub:{hub_id}")
        typer.echo(f"Hub {hub_id!r} revoked." if had else
                   f"Hub {hub_id!r} had no broker credentials; recorded as revoked.")

