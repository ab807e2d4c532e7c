"""``homeward sim evaluate``: run a simulated virtual ward through the real alert engine and
report sensitivity, time to alert, the right team, false alerts and workload."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from alerts.durations import parse_duration


def _sim_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "sim" and group.typer_instance is not None:
            return group.typer_instance
    raise RuntimeError("register device_sim.cli before stack.ward_cli")


def register(app: typer.Typer) -> None:
    sim = _sim_group(app)

    @sim.command("evaluate")
    def evaluate_cmd(
        rules: Annotated[Path | None, typer.Option(help="rule file (default: the shipped rules)")
                         ] = None,
        routes: Annotated[Path | None, typer.Option(help="routing file (default: shipped)")
                          ] = None,
        patients: Annotated[int, typer.Option(min=1, help="patients in the cohort")] = 500,
        days: Annotated[int, typer.Option(min=1, help="days simulated")] = 30,
        seed: Annotated[int, typer.Option(help="the cohort's seed")] = 7,
        start: Annotated[str | None, typer.Option(
            help="first day (ISO date, local midnight; default 2026-11-02, a Monday)")] = None,
        step: Annotated[str, typer.Option(
            help="the simulated clock's step: the engine and tick run once per step")] = "30m",
        live: Annotated[bool, typer.Option(
            "--live", help="through virtual devices, edge agents, a broker and the ingest "
                           "(small cohorts) instead of straight into the ingest's writer")
                        ] = False,
        care_plans: Annotated[bool, typer.Option(
            "--care-plans/--no-care-plans",
            help="per-patient settings: COPD patients' oximetry schedule (missed readings) "
                 "and own SpO2 limits (88-92 %% target)")] = True,
        compare: Annotated[Path | None, typer.Option(
            "--compare", help="a second rule file, run on the same cohort, side by side")
                           ] = None,
        out: Annotated[Path | None, typer.Option(
            help="write CSVs and PNG charts in this folder")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")
                           ] = False,
    ) -> None:
        """Measure a rule set on a simulated virtual ward.

        A seeded cohort (device_sim.cohort) goes through the alert engine's own evaluation,
        routing and escalation on a stepped clock; the report gives sensitivity, time to
        alert, the right team, false alerts and workload."""
        from alerts.routing import load_routing
        from alerts.ruleset import load_ruleset
        from device_sim.cohort import DEFAULT_START, CohortSpec, generate

        try:
            step_td = parse_duration(step)
            first = date.fromisoformat(start) if start else DEFAULT_START
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        if step_td <= timedelta(0) or step_td > timedelta(hours=1):
            raise typer.BadParameter("--step must be more than 0 and at most 1h")
        ruleset = load_ruleset(rules)
        routing = load_routing(routes)
        began = time.monotonic()
        cohort = generate(CohortSpec(patients=patients, days=days, seed=seed, start=first,
                                    care_plans=care_plans))
        say = _stderr
        say(f"cohort: {patients} patients, {days} days, seed {seed}: {len(cohort.readings):,}"
            f" readings, {len(cohort.episodes)} deteriorations")
        run = _run(cohort, ruleset, routing, step_td, live, say)
        report = _report(cohort, run, ruleset, routing)
        other = None
        if compare is not None:
            other_rules = load_ruleset(compare)
            other_run = _run(cohort, other_rules, routing, step_td, live, say)
            other = _report(cohort, other_run, other_rules, routing)
        seconds = time.monotonic() - began
        if out is not None:
            _write(out, cohort, run, report, other, ruleset, routing)
            say(f"wrote {out}/")
        if as_json:
            body = report if other is None else {"rules": report, "compare": other}
            sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2
                                          | orjson.OPT_SORT_KEYS).decode() + "\n")
        else:
            _print(report, other)
        say(f"took {seconds:.0f} s ({'live' if live else 'fast'}, step {step})")


def _stderr(text: str) -> None:
    typer.echo(text, err=True)


def _run(cohort: Any, ruleset: Any, routing: Any, step: timedelta, live: bool,
         say: Any) -> Any:
    from server.migrate import migrate
    from stack.services import PostgresServer
    from stack.ward_fast import run_fast
    from stack.ward_live import run_live

    total = cohort.spec.days
    last = [-1]
    began = time.monotonic()

    def progress(now: datetime, _: int) -> None:
        day = int((now - cohort.spec.start_at) / timedelta(days=1))
        if day != last[0] and (day % max(1, total // 10) == 0 or day == total):
            last[0] = day
            say(f"  day {day}/{total} ({time.monotonic() - began:.0f} s)")

    if live:
        return run_live(cohort, ruleset, routing, step=step, progress=progress)
    with tempfile.TemporaryDirectory(prefix="homeward-ward-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg", durable=False)
        pg.start()
        try:
            url = pg.create_database("ward")
            migrate(url)
            return run_fast(url, cohort, ruleset, routing, step=step, progress=progress)
        finally:
            pg.stop()


def _report(cohort: Any, run: Any, ruleset: Any, routing: Any) -> dict[str, Any]:
    from stack.ward_metrics import evaluate

    return evaluate(cohort, run, ruleset, routing)


def _print(report: dict[str, Any], other: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = Table(title="Virtual ward", show_header=False)
    c = report["cohort"]
    head.add_row("cohort", f"{c['patients']} patients x {c['days']} days, seed {c['seed']}, "
                           f"{c['readings']:,} readings, {c['episodes']} deteriorations")
    head.add_row("sensitivity", _pct(report["sensitivity"]))
    head.add_row("false amber/red alerts / patient-day",
                 str(report["false_alerts_per_patient_day"]))
    head.add_row("false info alerts / patient-day",
                 str(report["false_info_alerts_per_patient_day"]))
    head.add_row("adherence and equipment alerts / patient-day",
                 str(report["adherence_and_equipment_alerts_per_patient_day"]))
    head.add_row("all alerts / patient-day", str(report["all_alerts_per_patient_day"]))
    console.print(head)
    scen = Table(title="Per scenario")
    for col in ("scenario", "episodes", "sensitivity", "median h to alert", "p90 h",
                "median h before harm", "right team in hours", "out of hours", "caught by"):
        scen.add_column(col)
    for name, s in report["scenarios"].items():
        scen.add_row(name, str(s["episodes"]), _pct(s["sensitivity"]),
                     _num(s["median_hours_to_alert"]), _num(s["p90_hours_to_alert"]),
                     _num(s["median_hours_before_harm"]),
                     _pct(s["right_team_in_hours"]), _pct(s["right_team_out_of_hours"]),
                     ", ".join(f"{r} {_pct(v)}" for r, v in s["sensitivity_by_rule"].items()))
    console.print(scen)
    rules = Table(title="Per rule")
    for col in ("rule", "alerts", "false", "false / patient-day"):
        rules.add_column(col)
    for name, r in report["rules"].items():
        rules.add_row(name + ("" if r["clinical"] else " (equipment/adherence)"),
                      str(r["alerts"]), str(r["false"]), str(r["false_per_patient_day"]))
    console.print(rules)
    teams = Table(title="Workload: alerts per team per day")
    teams.add_column("team")
    teams.add_column("alerts / day")
    for team, n in report["alerts_per_team_per_day"].items():
        teams.add_row(str(team), str(n))
    console.print(teams)
    if other is not None:
        from stack.ward_metrics import compare

        side = Table(title="Compared")
        frame = compare(report, other)
        for col in frame.columns:
            side.add_column(str(col))
        for row in frame.itertuples(index=False):
            side.add_row(*("" if v is None else str(v) for v in row))
        console.print(side)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _write(out: Path, cohort: Any, run: Any, report: dict[str, Any],
           other: dict[str, Any] | None, ruleset: Any, routing: Any) -> None:
    from stack.ward_charts import charts
    from stack.ward_metrics import detections, false_alerts

    out.mkdir(parents=True, exist_ok=True)
    det = detections(cohort, run, ruleset, routing)
    det.to_csv(out / "episodes.csv", index=False)
    run.alerts.to_csv(out / "alerts.csv", index=False)
    false_alerts(cohort, run).to_csv(out / "false-alerts.csv", index=False)
    (out / "report.json").write_bytes(orjson.dumps(
        report if other is None else {"rules": report, "compare": other},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    charts(out, det, report, other)
