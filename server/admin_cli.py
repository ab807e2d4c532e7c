"""``homeward admin``: bootstrap, organisations, teams, clinicians (and, through
``server.admin_cli_care``, patients, enrolments, hubs, devices, rotas).

Over the functions of ``server.admin``; see docs/admin.md.  Errors (an unknown
team, a taken username, a bad NHS number) are one line on stderr and exit 1;
``--json`` prints what a script needs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from server.admin_cli_support import (
    connect,
    emit_json,
    fail,
    organisation_id,
    record,
    refused,
    secret_once,
    table,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Organisation id or name; default: "
                                                          "the only one.")]
TeamsOpt = Annotated[list[str] | None, typer.Option("--team", help="A team id (repeat for "
                                                                   "several).")]


def _ttl(text: str) -> timedelta:
    from alerts.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        fail(f"--expires: {err}")


def register(app: typer.Typer) -> None:
    admin_app = typer.Typer(help="Administration: bootstrap, organisations, teams, clinicians, "
                                 "patients, hubs, devices, rotas (docs/admin.md).",
                            no_args_is_help=True)
    app.add_typer(admin_app, name="admin")

    @admin_app.callback()
    def _root(ctx: typer.Context, database_url: Annotated[str | None, typer.Option(
            envvar="HOMEWARD_DATABASE_URL", help="libpq URL; default from settings")] = None,
    ) -> None:
        ctx.obj = {"database_url": database_url}

    @admin_app.command("bootstrap")
    def bootstrap(
        ctx: typer.Context,
        organisation: Annotated[str, typer.Option("--organisation", help="Its name.")],
        username: Annotated[str, typer.Option(help="The first admin's username.")],
        name: Annotated[str, typer.Option("--name", help="Her display name.")],
        email: Annotated[str | None, typer.Option()] = None,
        password: Annotated[str | None, typer.Option(
            envvar="HOMEWARD_BOOTSTRAP_PASSWORD",
            help="Her password (default: none; sign in with the token, or use an invite).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The first organisation and its admin, on an empty database (refused after)."""
        from server import admin

        with connect(ctx) as conn:
            made = refused(lambda: admin.bootstrap(
                conn, organisation=organisation, username=username, display_name=name,
                email=email, password=password))
            record(conn, "bootstrap", f"organisation:{made.organisation_id}")
        if as_json:
            emit_json({"organisation_id": made.organisation_id, "clinician_id": made.admin.id,
                       "username": username, "api_token": made.admin.api_token})
            return
        typer.echo(f"Organisation {organisation!r} (id {made.organisation_id}) and admin "
                   f"{username!r} (id {made.admin.id}) created.")
        secret_once("API token", made.admin.api_token)

    # -- organisations -----------------------------------------------------------------
    org = typer.Typer(help="Organisations.", no_args_is_help=True)
    admin_app.add_typer(org, name="org")

    @org.command("list")
    def org_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
        from server import admin_queries

        with connect(ctx) as conn:
            table(admin_queries.organisations(conn), ("id", "name", "teams", "created_at"),
                  title="Organisations", as_json=as_json)

    @org.command("create")
    def org_create(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
        from server import admin

        with connect(ctx) as conn:
            org_id = refused(lambda: admin.create_organisation(conn, name=name))
            record(conn, "org create", f"organisation:{org_id}")
        emit_json({"id": org_id, "name": name}) if as_json else typer.echo(
            f"Organisation {name!r} created (id {org_id}).")

    # -- teams -------------------------------------------------------------------------
    team = typer.Typer(help="Teams: contact, escalation and shift times.", no_args_is_help=True)
    admin_app.add_typer(team, name="team")

    @team.command("list")
    def team_list(ctx: typer.Context, org_: OrgOpt = None, as_json: JsonOpt = False) -> None:
        from server import admin_queries

        with connect(ctx) as conn:
            orgs = [organisation_id(conn, org_)] if org_ else None
            table(admin_queries.teams(conn, orgs),
                  ("id", "organisation_id", "name", "kind", "email", "webhook_url",
                   "escalation_policy", "fallback_team", "shifts", "members"),
                  title="Teams", as_json=as_json)

    @team.command("create")
    def team_create(
        ctx: typer.Context, team_id: Annotated[str, typer.Argument(help="A slug: copd-north")],
        name: Annotated[str, typer.Option("--name")],
        kind: Annotated[str, typer.Option(help="district_nursing, heart_failure, copd, "
                                               "out_of_hours, gp_practice, social_care")],
        org_: OrgOpt = None,
        email: Annotated[str | None, typer.Option()] = None,
        webhook: Annotated[str | None, typer.Option(help="Webhook URL for alerts.")] = None,
        escalation: Annotated[str | None, typer.Option(
            help="An escalation policy of the routing file (over the route's).")] = None,
        fallback: Annotated[str | None, typer.Option(
            help="The team that takes over when nobody is on duty.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a team."""
        from server import admin

        with connect(ctx) as conn:
            org_id = organisation_id(conn, org_)
            refused(lambda: admin.create_team(
                conn, team_id=team_id, organisation_id=org_id, name=name, kind=kind,
                email=email, webhook_url=webhook, escalation_policy=escalation,
                fallback_team=fallback))
            record(conn, "team create", f"team:{team_id}")
        emit_json({"id": team_id, "organisation_id": org_id}) if as_json else typer.echo(
            f"Team {team_id!r} created in organisation {org_id}.")

    @team.command("update")
    def team_update(
        ctx: typer.Context, team_id: str,
        name: Annotated[str | None, typer.Option("--name")] = None,
        kind: Annotated[str | None, typer.Option()] = None,
        email: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
        webhook: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
        escalation: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
        fallback: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
    ) -> None:
        """Change a team's name, kind, e-mail, webhook, escalation policy or fallback."""
        from server import admin

        changes = {k: v for k, v in {"name": name, "kind": kind, "email": email,
                                     "webhook_url": webhook, "escalation_policy": escalation,
                                     "fallback_team": fallback}.items() if v is not None}
        if not changes:
            fail("nothing to change: give --name, --kind, --email, --webhook, --escalation "
                 "or --fallback")
        with connect(ctx) as conn:
            refused(lambda: admin.update_team(conn, team_id=team_id, changes=changes))
            record(conn, "team update", f"team:{team_id}")
        typer.echo(f"Team {team_id!r} updated: {', '.join(sorted(changes))}.")

    @team.command("shift")
    def team_shift(
        ctx: typer.Context, team_id: str,
        shift: Annotated[str, typer.Argument(help="Its name: early, late, night")],
        starts: Annotated[str, typer.Argument(help="HH:MM")],
        ends: Annotated[str, typer.Argument(help="HH:MM (before the start: next day)")],
        timezone: Annotated[str, typer.Option()] = "Europe/London",
        remove: Annotated[bool, typer.Option("--remove", help="Remove the shift.")] = False,
    ) -> None:
        """Define (or --remove) a named shift of the team; rotas name it by date."""
        from server import admin

        with connect(ctx) as conn:
            if remove:
                if not admin.remove_team_shift(conn, team_id=team_id, name=shift):
                    fail(f"team {team_id!r} has no shift {shift!r}")
            else:
                refused(lambda: admin.set_team_shift(conn, team_id=team_id, name=shift,
                                                     starts=starts, ends=ends,
                                                     timezone=timezone))
            record(conn, "team shift", f"team:{team_id}/shift:{shift}")
        typer.echo(f"Shift {shift!r} of {team_id!r} removed." if remove else
                   f"Shift {shift!r} of {team_id!r}: {starts}-{ends} {timezone}.")

    # -- clinicians --------------------------------------------------------------------
    clin = typer.Typer(help="Clinicians: invite, password, roles, teams, tokens.",
                       no_args_is_help=True)
    admin_app.add_typer(clin, name="clinician")

    @clin.command("list")
    def clinician_list(ctx: typer.Context, org_: OrgOpt = None, as_json: JsonOpt = False) -> None:
        from server import admin_queries

        with connect(ctx) as conn:
            orgs = [organisation_id(conn, org_)] if org_ else None
            table(admin_queries.clinicians(conn, orgs),
                  ("id", "username", "display_name", "role", "teams", "active", "has_password",
                   "email"), title="Clinicians", as_json=as_json)

    @clin.command("create")
    def clinician_create(
        ctx: typer.Context, username: str,
        name: Annotated[str, typer.Option("--name", help="Display name.")],
        role: Annotated[str, typer.Option(help="nurse, team_lead or admin")] = "nurse",
        teams: TeamsOpt = None,
        email: Annotated[str | None, typer.Option()] = None,
        org_: OrgOpt = None,
        password: Annotated[str | None, typer.Option(
            help="Set this password (else an invitation link is made).")] = None,
        expires: Annotated[str, typer.Option(help="How long the invitation holds.")] = "72h",
        as_json: JsonOpt = False,
    ) -> None:
        """Create a clinician: her API token, and an invitation link unless --password."""
        from homeward.settings import get_settings
        from server import admin, invites

        with connect(ctx) as conn:
            org_id = organisation_id(conn, org_) if org_ or not teams else None
            made = refused(lambda: admin.create_clinician(
                conn, username=username, display_name=name, email=email, role=role,
                teams=teams or [], password=password, organisation_id=org_id))
            link = None
            if password is None:
                token = invites.create_invite(conn, clinician_id=made.id, ttl=_ttl(expires))
                link = invites.invite_url(get_settings().dashboard_url, token)
            record(conn, "clinician create", f"clinician:{made.id}")
        if as_json:
            emit_json({"id": made.id, "username": username, "api_token": made.api_token,
                       "invite_url": link})
            return
        typer.echo(f"Clinician {username!r} ({role}) created (id {made.id}).")
        secret_once("API token", made.api_token)
        if link:
            typer.echo(f"Invitation link (one use, expires in {expires}): {link}")

    @clin.command("create-fhir-client")
    def fhir_client_create(
        ctx: typer.Context, username: str,
        name: Annotated[str, typer.Option("--name", help="What the client is, e.g. "
                                                          "'Riverside GP system'.")],
        org_: Annotated[str, typer.Option("--org", help="The organisation whose patients "
                                                        "it reads (id or name).")],
        as_json: JsonOpt = False,
    ) -> None:
        """Create a system client for the FHIR API (/fhir/r4): a bearer token that reads
        what an admin of the organisation sees, read-only (docs/fhir.md)."""
        from server import admin

        with connect(ctx) as conn:
            made = refused(lambda: admin.create_system_client(
                conn, username=username, display_name=name,
                organisation_id=organisation_id(conn, org_)))
            record(conn, "fhir-client create", f"clinician:{made.id}")
        if as_json:
            emit_json({"id": made.id, "username": username, "api_token": made.api_token})
            return
        typer.echo(f"FHIR system client {username!r} created (id {made.id}).")
        secret_once("API token", made.api_token)

    def _who(ctx: typer.Context, who: str) -> int:
        from server import admin

        with connect(ctx) as conn:
            return refused(lambda: admin.clinician_id_of(conn, who))

    @clin.command("invite")
    def clinician_invite(ctx: typer.Context, who: Annotated[str, typer.Argument(
            help="Username or id")], expires: str = "72h", as_json: JsonOpt = False) -> None:
        """A new one-time invitation link, whose page sets her password."""
        from homeward.settings import get_settings
        from server import invites

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            token = refused(lambda: invites.create_invite(conn, clinician_id=clinician_id,
                                                          ttl=_ttl(expires)))
            record(conn, "clinician invite", f"clinician:{clinician_id}")
        link = invites.invite_url(get_settings().dashboard_url, token)
        emit_json({"id": clinician_id, "invite_url": link}) if as_json else typer.echo(
            f"Invitation link (one use, expires in {expires}): {link}")

    @clin.command("set-password")
    def clinician_password(ctx: typer.Context, who: str, password: Annotated[str, typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True)]) -> None:
        """Set her password."""
        from server import admin

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            refused(lambda: admin.set_password(conn, clinician_id=clinician_id,
                                               password=password))
            record(conn, "clinician set-password", f"clinician:{clinician_id}")
        typer.echo(f"Password of {who!r} set.")

    @clin.command("rotate-token")
    def clinician_rotate(ctx: typer.Context, who: str, as_json: JsonOpt = False) -> None:
        """A new API token; the old one stops working at once."""
        from server import admin

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            token = refused(lambda: admin.rotate_api_token(conn, clinician_id=clinician_id))
            record(conn, "clinician rotate-token", f"clinician:{clinician_id}")
        if as_json:
            emit_json({"id": clinician_id, "api_token": token})
        else:
            secret_once(f"New API token of {who}", token)

    @clin.command("deactivate")
    def clinician_deactivate(ctx: typer.Context, who: str) -> None:
        """She can no longer sign in or use her token; her record stays."""
        from server import admin

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            was_active = refused(lambda: admin.deactivate_clinician(
                conn, clinician_id=clinician_id))
            record(conn, "clinician deactivate", f"clinician:{clinician_id}")
        typer.echo(f"{who!r} deactivated." if was_active else f"{who!r} was already inactive.")

    @clin.command("set-role")
    def clinician_role(ctx: typer.Context, who: str, role: Annotated[str, typer.Argument(
            help="nurse, team_lead or admin")]) -> None:
        from server import admin

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            refused(lambda: admin.set_role(conn, clinician_id=clinician_id, role=role))
            record(conn, "clinician set-role", f"clinician:{clinician_id}")
        typer.echo(f"{who!r} is now {role}.")

    @clin.command("set-teams")
    def clinician_teams(ctx: typer.Context, who: str, teams: TeamsOpt = None) -> None:
        """Her teams become exactly the --team options given."""
        from server import admin

        clinician_id = _who(ctx, who)
        with connect(ctx) as conn:
            refused(lambda: admin.set_clinician_teams(conn, clinician_id=clinician_id,
                                                      teams=teams or []))
            record(conn, "clinician set-teams", f"clinician:{clinician_id}")
        typer.echo(f"{who!r}'s teams: {', '.join(teams or []) or 'none'}.")

    from server.admin_cli_care import register_care

    register_care(admin_app)
