"""Reports (issue 9, docs/reports.md): a team's shift hand-over report and a patient's
discharge summary, each as a dashboard page, JSON, and a PDF (the shift report also as
CSV).  One builder each (``alerts.shift_report.build``, ``server.discharge_summary.build``)
and one template body each (``_shift_report.html``, ``_discharge_summary.html``) for the
page and the PDF, so the four forms never disagree.

Access: a team's report takes ``TeamAccess`` (a member of the team, or an admin of its
organisation; 404 otherwise, audited as not found) and, as it lists patients' data, one
audit row per patient it carries besides the request's own; the discharge summary takes
``PatientAccess``.  A PDF is printed by headless Chromium (``server.pdf``); without one
the PDF routes answer 503 and say why.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from alerts import shift_report
from server import discharge_summary, pdf
from server.access import Scope
from server.api import clinical_text, humantime, svg_chart
from server.api.deps import PoolDep, Problem
from server.api.routes.pages import TEMPLATES, PageRoute
from server.api.scope import Access, PatientAccess, TeamAccess, audit_patients
from server.api.types import BoundedDatetime

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Helpers every report template gets.
HELPERS: dict[str, Any] = {"stamp": shift_report.local_words}

pages = APIRouter(tags=["pages"], include_in_schema=False, route_class=PageRoute)
router = APIRouter(tags=["reports"])

#: ``from`` and ``to`` go together, ``from`` before ``to``, at most 7 days apart (else
#: 422, FastAPI's validation body).
TEAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such team among yours"}}
PATIENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such patient in your scope"}}
PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "the report, A4"},
    503: {"model": Problem, "description": "this server cannot print PDFs (no Chromium)"}}
From = Annotated[BoundedDatetime | None, Query(
    alias="from", description="start of the period (RFC 3339); default: the team's last "
                              "shift that has ended")]
To = Annotated[BoundedDatetime | None, Query(alias="to", description="end of the period")]


# -- shift report -------------------------------------------------------------------------

def _period(conn: Any, team_id: str, start: datetime | None, end: datetime | None,
            now: datetime) -> shift_report.Period:
    if start is None and end is None:
        return shift_report.default_period(conn, team_id, now)
    problem = None
    if start is None or end is None:
        problem = "'from' and 'to' go together"
    elif start >= end:
        problem = "'from' must be before 'to'"
    elif end - start > shift_report.MAX_SPAN:
        problem = "a report covers at most 7 days"
    if problem is not None or start is None or end is None:
        raise RequestValidationError([{"loc": ("query", "from"), "type": "value_error",
                                       "msg": problem}])
    return shift_report.Period(start, end, None, "given")


def _team_report(request: Request, pool: PoolDep, access: Access, team_id: str,
                 start: datetime | None, end: datetime | None) -> shift_report.ShiftReport:
    now = datetime.now(UTC)
    with pool.connection() as conn:
        period = _period(conn, team_id, start, end, now)
        report = shift_report.build(conn, team_id, period, now=now)
    audit_patients(request, pool, access.scope, report.patient_ids())
    return report


@router.get("/api/teams/{team_id}/shift-report", responses=TEAM_RESPONSES,
            summary="The team's shift hand-over report (default: its last shift)")
def shift_report_json(request: Request, team_id: str, pool: PoolDep, access: TeamAccess,
                      start: From = None, end: To = None) -> dict[str, Any]:
    return _team_report(request, pool, access, team_id, start, end).as_json()


@router.get("/api/teams/{team_id}/shift-report.csv", responses={
    **TEAM_RESPONSES, 200: {"content": {"text/csv": {}}, "description": "one line per row"}},
            summary="The shift report as CSV", response_class=Response)
def shift_report_csv(request: Request, team_id: str, pool: PoolDep, access: TeamAccess,
                     start: From = None, end: To = None) -> Response:
    report = _team_report(request, pool, access, team_id, start, end)
    return Response(shift_report.to_csv(report), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="{shift_report.file_stem(report)}.csv"'})


@router.get("/api/teams/{team_id}/shift-report.pdf",
            responses={**TEAM_RESPONSES, **PDF_RESPONSES},
            summary="The shift report as PDF", response_class=Response)
def shift_report_pdf(request: Request, team_id: str, pool: PoolDep, access: TeamAccess,
                     start: From = None, end: To = None) -> Response:
    report = _team_report(request, pool, access, team_id, start, end)
    html = _render("print_shift_report.html", title=_report_title(report),
                   **_report_context(report, access.scope, printed=True))
    return _pdf(html, shift_report.file_stem(report), _report_title(report))


@pages.get("/teams/{team_id}/shift-report", response_class=HTMLResponse)
def shift_report_page(request: Request, team_id: str, pool: PoolDep, access: TeamAccess,
                      start: From = None, end: To = None) -> Response:
    report = _team_report(request, pool, access, team_id, start, end)
    with pool.connection() as conn:
        earlier = shift_report.previous_period(conn, team_id, report.period)
    context = _report_context(report, access.scope, printed=False)
    query = shift_report.query_of(report.period)
    return TEMPLATES.TemplateResponse(request, "shift_report.html", {
        "scope": access.scope, "nav": "report", **context,
        "csv_url": f"/api/teams/{team_id}/shift-report.csv?{query}",
        "pdf_url": f"/api/teams/{team_id}/shift-report.pdf?{query}",
        "earlier_url": f"/teams/{team_id}/shift-report?{shift_report.query_of(earlier)}",
        "latest_url": f"/teams/{team_id}/shift-report"})


def _report_title(report: shift_report.ShiftReport) -> str:
    return f"Shift report — {report.team.name}"


def _report_context(report: shift_report.ShiftReport, scope: Scope, *,
                    printed: bool) -> dict[str, Any]:
    return {**HELPERS, "report": report, "sections": [
                (name, title, report.section(name))
                for name, title in shift_report.SECTIONS.items()],
            "period_words": shift_report.period_words(report.period),
            "printed": printed, "teams": scope.teams}


# -- discharge summary --------------------------------------------------------------------

def _summary(pool: PoolDep, access: Access) -> discharge_summary.DischargeSummary:
    assert access.patient_id is not None
    with pool.connection() as conn:
        return discharge_summary.build(conn, access.patient_id)


@router.get("/api/patients/{patient_id}/discharge-summary", responses=PATIENT_RESPONSES,
            summary="The monitoring episode: statistics per kind, alerts with outcomes, "
                    "notes, hand-overs")
def discharge_summary_json(pool: PoolDep, access: PatientAccess) -> dict[str, Any]:
    return _summary(pool, access).as_json()


@router.get("/api/patients/{patient_id}/discharge-summary.pdf",
            responses={**PATIENT_RESPONSES, **PDF_RESPONSES},
            summary="The discharge summary as PDF, for the GP practice",
            response_class=Response)
def discharge_summary_pdf(pool: PoolDep, access: PatientAccess) -> Response:
    summary = _summary(pool, access)
    title = f"Discharge summary — {summary.patient['name']}"
    html = _render("print_discharge_summary.html", title=title,
                   **_summary_context(summary, printed=True))
    end = summary.episode.end.astimezone(humantime.LONDON)
    return _pdf(html, f"discharge-summary-{summary.patient['id']}-{end:%Y%m%d}", title)


@pages.get("/patients/{patient_id}/discharge-summary", response_class=HTMLResponse)
def discharge_summary_page(request: Request, pool: PoolDep, access: PatientAccess) -> Response:
    summary = _summary(pool, access)
    return TEMPLATES.TemplateResponse(request, "discharge_summary.html", {
        "scope": access.scope, "nav": "caseload", **_summary_context(summary, printed=False),
        "pdf_url": f"/api/patients/{summary.patient['id']}/discharge-summary.pdf"})


def _summary_context(summary: discharge_summary.DischargeSummary, *,
                     printed: bool) -> dict[str, Any]:
    ep = summary.episode
    charts = []
    for k in summary.kinds:
        drawn = [m for m in clinical_text.CHART_METRICS.get(k.kind, ()) if m in k.series]
        lines = [svg_chart.Line(clinical_text.LABELS.get(m, m), k.series[m]["resolution"],
                                k.series[m]["points"]) for m in drawn]
        title = clinical_text.KIND_LABELS.get(k.kind, k.kind)
        unit = clinical_text.unit(drawn[0]) if drawn else ""
        charts.append({"kind": k, "title": title,
                       "svg": svg_chart.chart(title, unit, lines, ep.start, ep.end)
                       if lines else None})
    return {**HELPERS, "summary": summary, "charts": charts, "printed": printed,
            "age": humantime.age_years(summary.patient.get("date_of_birth")),
            "days": (ep.end - ep.start).total_seconds() / 86400,
            "gp_teams": [t for t in summary.teams if t["kind"] == "gp_practice"],
            "sbar": _sbar}


def _sbar(note: Any) -> list[tuple[str, str]]:
    if not isinstance(note, dict):
        return [("Note", str(note))] if note else []
    return [(key.capitalize(), str(note[key])) for key in
            ("situation", "background", "assessment", "recommendation") if note.get(key)]


# -- printing -----------------------------------------------------------------------------

@functools.cache
def _print_css() -> str:
    """The dashboard's styles and the reports' own, inlined into the printed document
    (it loads nothing)."""
    return "\n".join((STATIC_DIR / name).read_text() for name in ("app.css", "reports.css"))


def _render(name: str, **context: Any) -> str:
    return TEMPLATES.env.get_template(name).render(print_css=_print_css(), **context)


def _pdf(html: str, stem: str, title: str) -> Response:
    started = time.perf_counter()
    try:
        data = pdf.html_to_pdf(html, title=title)
    except pdf.PdfUnavailable as err:
        raise HTTPException(503, detail=str(err)) from err
    ms = (time.perf_counter() - started) * 1000
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{stem}.pdf"',
                             "Server-Timing": f"pdf;dur={ms:.0f}"})
