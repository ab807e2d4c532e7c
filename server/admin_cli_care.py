"""``homeward admin patient|enrol|unenrol|hub|device|rota``: the care side of administration."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from server.admin_cli_support import (
    connect,
    emit_json,
    fail,
    organisation_id,
    record,
    refused,
    table,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Organisation id or name; default: "
                                                          "the only one.")]
TeamsOpt = Annotated[list[str] | None, typer.Option("--team", help="A team id (repeat for "
                                                                   "several).")]


def _instant(text: str | None, option: str) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option}: {text!r} is not an ISO date and time")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _publish(conn: Any, hub_id: str) -> list[dict[str, Any]]:
    """Publish the hub's retained config; a failure is an error naming the way out."""
    from server.hub_config import publish_hub_config

    try:
        config = publish_hub_config(conn, hub_id)
    except (OSError, TimeoutError) as err:
        fail(f"saved in the database, but the hub's config was not published ({err}); "
             f"check HOMEWARD_MQTT_* and run `homeward admin device publish {hub_id}`", code=3)
    return [d.model_dump(mode="json") for d in config.devices]


def _params(pairs: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r}: use NAME=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def register_care(admin_app: typer.Typer) -> None:
    # -- patients ----------------------------------------------------------------------
    patient = typer.Typer(help="Patients: NHS number, care teams, status, rule settings.",
                          no_args_is_help=True)
    admin_app.add_typer(patient, name="patient")

    @patient.command("list")
    def patient_list(ctx: typer.Context, org_: OrgOpt = None, as_json: JsonOpt = False) -> None:
        from server import admin_queries

        with connect(ctx) as conn:
            orgs = [organisation_id(conn, org_)] if org_ else None
            table(admin_queries.patients(conn, orgs),
                  ("id", "display_name", "nhs_number", "date_of_birth", "status",
                   "care_teams", "lead_team", "hub_id"), title="Patients", as_json=as_json)

    @patient.command("create")
    def patient_create(
        ctx: typer.Context,
        name: Annotated[str, typer.Option("--name")],
        teams: TeamsOpt = None,
        nhs: Annotated[str | None, typer.Option("--nhs", help="NHS number (Modulus 11 "
                                                              "checked).")] = None,
        lead: Annotated[str | None, typer.Option(help="The lead care team.")] = None,
        born: Annotated[str | None, typer.Option("--born", help="YYYY-MM-DD")] = None,
        status: Annotated[str, typer.Option()] = "active",
        as_json: JsonOpt = False,
    ) -> None:
        """Create a patient on one or more care teams."""
        from server import admin

        if not teams and not lead:
            fail("a patient needs a care team: give --team (and --lead)")
        try:
            dob = date.fromisoformat(born) if born else None
        except ValueError:
            fail(f"--born {born!r} is not YYYY-MM-DD")
        with connect(ctx) as conn:
            patient_id = refused(lambda: admin.create_patient(
                conn, display_name=name, teams=teams or [], nhs_number=nhs,
                date_of_birth=dob, status=status, lead=lead))
            record(conn, "patient create", f"patient:{patient_id}", patient_id)
        emit_json({"id": patient_id}) if as_json else typer.echo(
            f"Patient {name!r} created (id {patient_id}).")

    @patient.command("care-teams")
    def patient_teams(ctx: typer.Context, patient_id: int, teams: TeamsOpt = None,
                      lead: Annotated[str | None, typer.Option()] = None) -> None:
        """The patient's care team becomes exactly the --team options (and --lead)."""
        from server import admin

        with connect(ctx) as conn:
            refused(lambda: admin.set_care_teams(conn, patient_id=patient_id,
                                                 teams=teams or [], lead=lead))
            record(conn, "patient care-teams", f"patient:{patient_id}", patient_id)
        typer.echo(f"Care team of patient {patient_id}: {', '.join(teams or [])}"
                   + (f" (lead {lead})" if lead else "") + ".")

    @patient.command("portal-email")
    def patient_portal_email(
        ctx: typer.Context, patient_id: int,
        email: Annotated[str | None, typer.Argument(help="The address the patient's sign-in "
                                                         "codes go to; leave out to remove "
                                                         "it (no sign-in).")] = None,
    ) -> None:
        """The patient's sign-in address for the patient portal (/my; docs/patient-portal.md)."""
        from server.patient_auth import set_email

        with connect(ctx) as conn:
            try:
                set_email(conn, patient_id, email)
            except ValueError as err:
                fail(str(err))
            record(conn, "patient portal-email", f"patient:{patient_id}", patient_id)
        typer.echo(f"Patient {patient_id}: portal sign-in "
                   + (f"codes go to {email.strip().lower()}." if email else "removed."))

    @patient.command("status")
    def patient_status(
        ctx: typer.Context, patient_id: int,
        status: Annotated[str, typer.Argument(help="active, admitted, away or discharged")],
        by: Annotated[str, typer.Option(help="The clinician making the change (username); "
                                             "the patient's history names her.")],
        note: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        """Change the patient's status (discharged ends the enrolment and open alerts)."""
        from server import admin, record_queries
        from server.access import load_scope

        if status not in admin.PATIENT_STATUSES:
            fail(f"unknown status {status!r}; use {', '.join(admin.PATIENT_STATUSES)}")
        with connect(ctx) as conn:
            clinician_id = refused(lambda: admin.clinician_id_of(conn, by))
            scope = load_scope(conn, clinician_id)
            if scope is None:
                fail(f"clinician {by!r} is deactivated")
            if conn.execute("SELECT 1 FROM patient WHERE id = %s",
                            (patient_id,)).fetchone() is None:
                fail(f"unknown patient {patient_id}")
            result = record_queries.set_status(conn, scope, patient_id, status=status,
                                               note=note, expected_end=None, team_id=None)
            record(conn, "patient status", f"patient:{patient_id}", patient_id)
        typer.echo(f"Patient {patient_id}: {result['previous']} -> {status}"
                   + (f"; resolved alerts {result['resolved_alerts']}"
                      if result["resolved_alerts"] else "") + ".")

    @patient.command("rule")
    def patient_rule(
        ctx: typer.Context, patient_id: int, rule_id: str,
        by: Annotated[str, typer.Option(help="The clinician who decided it (username).")],
        note: Annotated[str, typer.Option(help="Why (kept with the setting's history).")],
        params: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE "
                                                         "(repeat): a personal threshold")
                          ] = None,
        disable: Annotated[bool, typer.Option("--disable", help="The rule does not apply to "
                                                                "this patient.")] = False,
    ) -> None:
        """A personal rule setting (from now; the previous one is kept as history).

        Who decided it and why are required, as through the API: a threshold nobody can
        explain later is a hazard (H-017)."""
        from alerts.errors import RuleError
        from alerts.ruleset import load_ruleset
        from alerts.settings_store import set_patient_rule
        from server import admin

        overrides = _params(params)
        with connect(ctx) as conn:
            if not note.strip():
                fail("--note must say why")
            set_by = refused(lambda: admin.clinician_id_of(conn, by))
            if conn.execute("SELECT 1 FROM patient WHERE id = %s",
                            (patient_id,)).fetchone() is None:
                fail(f"unknown patient {patient_id}")
            try:
                setting = set_patient_rule(conn, patient_id=patient_id, rule_id=rule_id,
                                           enabled=not disable, params=overrides,
                                           set_by=set_by, note=note, ruleset=load_ruleset())
            except (RuleError, ValueError) as err:
                fail(str(err))
            record(conn, "patient rule", f"patient:{patient_id}/rule:{rule_id}", patient_id)
        typer.echo(f"Rule {rule_id!r} for patient {patient_id}: "
                   + ("disabled" if disable else f"enabled {overrides or ''}".strip())
                   + f" (setting {setting}).")

    @patient.command("rules")
    def patient_rules(ctx: typer.Context, patient_id: int, as_json: JsonOpt = False) -> None:
        """The patient's personal rule settings, with their history."""
        from alerts.settings_store import load_settings

        with connect(ctx) as conn:
            rows = [{"rule_id": s.rule_id, "enabled": s.enabled, "params": dict(s.params),
                     "valid_from": s.valid_from.isoformat(),
                     "valid_to": s.valid_to.isoformat() if s.valid_to else None}
                    for s in load_settings(conn, [patient_id]).get(patient_id, [])]
        table(rows, ("rule_id", "enabled", "params", "valid_from", "valid_to"),
              title=f"Rule settings of patient {patient_id}", as_json=as_json)

    # -- enrolments --------------------------------------------------------------------
    @admin_app.command("enrol")
    def enrol(ctx: typer.Context, hub_id: str, patient_id: int,
              start: Annotated[str | None, typer.Option(
                  "--from", help="ISO time; default now")] = None) -> None:
        """Attribute the hub's readings from --from to the patient (the hub moves to her)."""
        from server import admin

        valid_from = _instant(start, "--from")
        with connect(ctx) as conn:
            enrolment = refused(lambda: admin.enrol(conn, hub_id=hub_id, patient_id=patient_id,
                                                    valid_from=valid_from))
            record(conn, "enrol", f"hub:{hub_id}/enrolment:{enrolment}", patient_id)
        typer.echo(f"Hub {hub_id} enrolled to patient {patient_id} from "
                   f"{valid_from.isoformat()} (enrolment {enrolment}).")

    @admin_app.command("unenrol")
    def unenrol(ctx: typer.Context, hub_id: str,
                at: Annotated[str | None, typer.Option(help="ISO time; default now")] = None
                ) -> None:
        """End the hub's open enrolment."""
        from server import admin

        end = _instant(at, "--at")
        with connect(ctx) as conn:
            closed = admin.end_enrolment(conn, hub_id=hub_id, valid_to=end)
            if not closed:
                fail(f"hub {hub_id!r} has no open enrolment")
            record(conn, "unenrol", f"hub:{hub_id}")
        typer.echo(f"Hub {hub_id}'s enrolment ended at {end.isoformat()}.")

    # -- hubs --------------------------------------------------------------------------
    hub = typer.Typer(help="Hubs: provision (with broker credentials), revoke, list.",
                      no_args_is_help=True)
    admin_app.add_typer(hub, name="hub")

    @hub.command("list")
    def hub_list(ctx: typer.Context, org_: OrgOpt = None, as_json: JsonOpt = False) -> None:
        from server import admin_queries

        with connect(ctx) as conn:
            orgs = [organisation_id(conn, org_)] if org_ else None
            table(admin_queries.hubs(conn, orgs),
                  ("id", "organisation_id", "state", "patient_id", "devices", "revoked_at",
                   "last_seen_at"), title="Hubs", as_json=as_json)

    from server.admin_cli_hubs import register_hubs

    register_hubs(hub)

    # -- devices -----------------------------------------------------------------------
    device = typer.Typer(help="Devices paired to a hub (published to it as its config).",
                         no_args_is_help=True)
    admin_app.add_typer(device, name="device")

    @device.command("pair")
    def device_pair(
        ctx: typer.Context, hub_id: str, address: str,
        kind: Annotated[str, typer.Argument(help="blood_pressure, spo2, temperature, weight, "
                                                 "glucose")],
        name: Annotated[str | None, typer.Option()] = None,
        publish: Annotated[bool, typer.Option(help="Publish the hub's config now.")] = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Pair a device with the hub and publish the hub's retained config."""
        from server import admin

        with connect(ctx) as conn:
            refused(lambda: admin.pair_device(conn, hub_id=hub_id, address=address, kind=kind,
                                              name=name))
            record(conn, "device pair", f"hub:{hub_id}/device:{address}")
            devices = _publish(conn, hub_id) if publish else None
        if as_json:
            emit_json({"hub_id": hub_id, "published": devices})
        else:
            typer.echo(f"Paired {address} ({kind}) with {hub_id}"
                       + (f"; config published ({len(devices)} devices)." if devices is not None
                          else "; config not published (--no-publish)."))

    @device.command("unpair")
    def device_unpair(ctx: typer.Context, hub_id: str, address: str,
                      publish: Annotated[bool, typer.Option()] = True) -> None:
        """Unpair a device (kept for the record) and publish the hub's retained config."""
        from server import admin

        with connect(ctx) as conn:
            if not refused(lambda: admin.remove_device(conn, hub_id=hub_id, address=address)):
                fail(f"{address} is not paired with hub {hub_id!r}")
            record(conn, "device unpair", f"hub:{hub_id}/device:{address}")
            devices = _publish(conn, hub_id) if publish else None
        typer.echo(f"Unpaired {address} from {hub_id}"
                   + (f"; config published ({len(devices)} devices)." if devices is not None
                      else "."))

    @device.command("publish")
    def device_publish(ctx: typer.Context, hub_id: str) -> None:
        """Publish the hub's retained config again (after --no-publish, or a broker outage)."""
        with connect(ctx) as conn:
            if conn.execute("SELECT 1 FROM hub WHERE id = %s", (hub_id,)).fetchone() is None:
                fail(f"unknown hub {hub_id!r}")
            devices = _publish(conn, hub_id)
        typer.echo(f"Config of {hub_id} published ({len(devices)} devices).")

    # -- rotas -------------------------------------------------------------------------
    rota = typer.Typer(help="Rotas: who is on duty when, in CSV or YAML.", no_args_is_help=True)
    admin_app.add_typer(rota, name="rota")

    @rota.command("import")
    def rota_import(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="A .csv or .yaml file; - for stdin", )],
        fmt: Annotated[str | None, typer.Option("--format", help="csv or yaml")] = None,
    ) -> None:
        """Replace each team's shifts in the file's span with the file's."""
        from server.admin_rota import import_rota
        from server.rota_io import format_of, parse_rota

        text = sys.stdin.read() if str(file) == "-" else _read(file)
        kind = fmt or refused(lambda: format_of(str(file)))
        if kind not in ("csv", "yaml"):
            fail("--format is csv or yaml")
        entries = refused(lambda: parse_rota(text, kind))  # type: ignore[arg-type]
        with connect(ctx) as conn:
            done = refused(lambda: import_rota(conn, entries))
            for team_id in done.teams:
                record(conn, "rota import", f"team:{team_id}/rota")
        typer.echo(f"{done.shifts} shifts imported for {', '.join(done.teams) or 'no team'}"
                   f" ({done.replaced} replaced).")

    @rota.command("export")
    def rota_export(
        ctx: typer.Context,
        start: Annotated[str | None, typer.Option("--from", help="ISO time; default now")] = None,
        end: Annotated[str | None, typer.Option("--to", help="ISO time; default --from + "
                                                             "28 days")] = None,
        teams: TeamsOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="csv or yaml")] = "csv",
        out: Annotated[Path | None, typer.Option("--out", help="Write here (else stdout).")
                       ] = None,
    ) -> None:
        """The shifts starting in [--from, --to), as CSV or YAML."""
        from server.admin_rota import export_rota
        from server.rota_io import format_rota

        if fmt not in ("csv", "yaml"):
            fail("--format is csv or yaml")
        lo = _instant(start, "--from")
        hi = _instant(end, "--to") if end else lo + timedelta(days=28)
        with connect(ctx) as conn:
            entries = refused(lambda: export_rota(conn, start=lo, end=hi, teams=teams))
        text = format_rota(entries, fmt)  # type: ignore[arg-type]
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"{len(entries)} shifts written to {out}.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror}")
