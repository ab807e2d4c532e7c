"""``homeward safety report``: the clinical safety case report from the hazard log and a
run of its evidence (``pytest -m hazard``), as Markdown and HTML (and PDF with Chromium).

It runs in a checkout (the log and the tests are there, not in the installed package),
with the test extras installed (``./scripts/setup --dev``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from homeward import __version__
from stack.safety_log import (
    DEFAULT_LOG,
    RISK_MATRIX,
    RISK_MEANING,
    Hazard,
    HazardLog,
    Severity,
    base_id,
    load,
    problems,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
LONDON = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class Evidence:
    """How one named test (all its parameter cases) ended in this run."""

    test: str
    outcome: str  # passed | failed | error | skipped | not run
    cases: int
    seconds: float


def evidence_for(test: str, results: Mapping[str, Mapping[str, Any]]) -> Evidence:
    cases = [r for node_id, r in results.items() if base_id(node_id) == test]
    outcomes = {r["outcome"] for r in cases}
    if not cases:
        outcome = "not run"
    elif outcomes & {"failed", "error"}:
        outcome = "failed" if "failed" in outcomes else "error"
    elif "passed" in outcomes:
        outcome = "passed"
    else:
        outcome = "skipped"
    return Evidence(test, outcome, len(cases), sum(float(r["duration"]) for r in cases))


def hazard_verdict(evidence: list[Evidence]) -> str:
    bad = [e for e in evidence if e.outcome in ("failed", "error", "not run")]
    if bad:
        return f"{len(bad)} of {len(evidence)} not passing"
    skipped = sum(e.outcome == "skipped" for e in evidence)
    passed = len(evidence) - skipped
    return f"{passed} of {len(evidence)} passed" + (f", {skipped} skipped" if skipped else "")


def report_context(log: HazardLog, results: Mapping[str, Mapping[str, Any]],
                   consistency: list[str], run: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the templates show: pure, so the report can be tested without a run."""
    hazards = []
    all_evidence: dict[str, Evidence] = {}
    for hazard in log.hazards:
        controls = []
        for control in hazard.controls:
            evidence = [all_evidence.setdefault(t, evidence_for(t, results))
                        for t in control.tests]
            controls.append({"control": control.control, "evidence": evidence})
        evidence = [all_evidence[t] for t in hazard.tests]
        hazards.append({"hazard": hazard, "controls": controls,
                        "verdict": hazard_verdict(evidence),
                        "passing": all(e.outcome in ("passed", "skipped") for e in evidence)})
    counts = {o: sum(e.outcome == o for e in all_evidence.values())
              for o in ("passed", "failed", "error", "skipped", "not run")}
    return {
        "log": log, "hazards": hazards, "consistency": consistency, "run": run,
        "counts": counts, "tests": len(all_evidence),
        "open": [h for h in log.hazards if h.status == "open"],
        "severities": list(Severity), "matrix": RISK_MATRIX, "meaning": RISK_MEANING,
        "passing": not consistency and all(h["passing"] for h in hazards),
    }


def render(context: Mapping[str, Any], template: str) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html.j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["assessment"] = _assessment
    env.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return env.get_template(template).render(**context)


def _assessment(hazard: Hazard, which: str) -> str:
    a = hazard.initial if which == "initial" else hazard.residual
    return f"{a.risk} ({a.severity}, {a.likelihood} likelihood)"


def _pytest(args: list[str], root: Path, quiet: bool) -> int:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    typer.echo("$ " + " ".join(command[2:]), err=True)
    done = subprocess.run(command, cwd=root, check=False,
                          stdout=subprocess.DEVNULL if quiet else None)
    return done.returncode


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def write_pdf(html: Path, pdf: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(html.resolve().as_uri())
        page.pdf(path=str(pdf), format="A4", print_background=True,
                 margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
        browser.close()


def register(app: typer.Typer) -> None:
    safety = typer.Typer(help="Clinical safety (DCB0129): the hazard log and its evidence.",
                         no_args_is_help=True)
    app.add_typer(safety, name="safety")

    @safety.command("report")
    def report(
        log_path: Annotated[Path, typer.Option("--log", help="The hazard log.")] = DEFAULT_LOG,
        out: Annotated[Path, typer.Option(help="Folder for the report.")] = Path(
            "safety-report"),
        workers: Annotated[int, typer.Option(
            help="pytest-xdist workers for the evidence (0: in one process).")] = 2,
        run: Annotated[bool, typer.Option(
            help="Run the evidence; --no-run reports the last run's results again.")] = True,
        pdf: Annotated[bool, typer.Option(help="Also print the HTML to PDF (Chromium).")] = False,
        show_tests: Annotated[bool, typer.Option(
            "--show-tests", help="Show pytest's output while the evidence runs.")] = False,
    ) -> None:
        """Run `pytest -m hazard` and write the safety case report (Markdown and HTML)."""
        root = Path.cwd()
        if not (root / log_path).is_file() or not (root / "tests").is_dir():
            typer.echo(f"No hazard log at {root / log_path}, or no tests/ beside it: run this "
                       "in a Homeward checkout (git clone, then ./scripts/setup --dev).", err=True)
            raise typer.Exit(2)
        try:
            import pytest  # noqa: F401 -- the evidence runs under it
        except ModuleNotFoundError:
            typer.echo("pytest is not installed: ./scripts/setup --dev installs the test "
                       "extras.", err=True)
            raise typer.Exit(2) from None
        try:
            log = load(root / log_path)
        except (ValueError, OSError) as err:
            typer.echo(f"The hazard log {log_path} is not valid:\n{err}", err=True)
            raise typer.Exit(2) from None
        out.mkdir(parents=True, exist_ok=True)
        collected_file, results_file = out / "collected.json", out / "results.json"

        typer.echo(f"Checking that {log_path} and the tests' markers agree ...", err=True)
        if _pytest(["--collect-only", "-q", f"--hazard-evidence={collected_file}"],
                   root, quiet=True) != 0:
            typer.echo("pytest could not collect the tests (run `pytest --collect-only`).",
                       err=True)
            raise typer.Exit(1)
        collected = json.loads(collected_file.read_text())["collected"]
        consistency = problems(log, collected)
        marked = sum(bool(h) for h in collected.values())

        started = time.monotonic()
        if run:
            typer.echo(f"Running the evidence: {marked} test cases marked hazard "
                       f"(pytest -m hazard, {workers or 1} worker(s)) ...", err=True)
            parallel = ["-n", str(workers), "--dist", "loadgroup"] if workers else []
            _pytest(["-m", "hazard", "-q", "-p", "no:randomly", *parallel,
                     f"--hazard-evidence={results_file}"], root, quiet=not show_tests)
        elif not results_file.is_file():
            typer.echo(f"--no-run, but there is no earlier run in {results_file}.", err=True)
            raise typer.Exit(2)
        evidence = json.loads(results_file.read_text())
        commit = _git(root, "rev-parse", "--short", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        context = report_context(log, evidence["results"], consistency, {
            "version": __version__, "commit": commit + (" with uncommitted changes"
                                                        if dirty else ""),
            "generated": datetime.now(UTC).astimezone(LONDON).strftime(
                "%-d %B %Y, %H:%M %Z"),
            "python": sys.version.split()[0], "platform": sys.platform,
            "seconds": round(time.monotonic() - started) if run else None,
            "command": "homeward safety report" + ("" if run else " --no-run"),
            "hostname": os.uname().nodename,
        })
        markdown, html = out / "safety-case-report.md", out / "safety-case-report.html"
        markdown.write_text(render(context, "safety-report.md.j2"), encoding="utf-8")
        html.write_text(render(context, "safety-report.html.j2"), encoding="utf-8")
        written = [markdown, html]
        if pdf:
            write_pdf(html, out / "safety-case-report.pdf")
            written.append(out / "safety-case-report.pdf")
        counts = context["counts"]
        typer.echo(f"{len(log.hazards)} hazards ({len(context['open'])} open), "
                   f"{context['tests']} tests: {counts['passed']} passed, "
                   f"{counts['failed'] + counts['error']} failed, {counts['skipped']} skipped, "
                   f"{counts['not run']} not run; {len(consistency)} consistency problem(s).")
        for problem in consistency:
            typer.echo(f"  {problem}", err=True)
        typer.echo("Wrote " + ", ".join(str(p) for p in written))
        if not context["passing"]:
            raise typer.Exit(1)
