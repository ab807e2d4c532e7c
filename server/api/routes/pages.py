"""The nurse dashboard's pages: triage queue, alert, caseload, patient, hubs.

Server-rendered with Jinja2; the little JavaScript lives in ``static/`` (no inline
script, so a CSP without 'unsafe-inline' holds) and posts actions to the JSON API.
Every page takes its data through the access dependencies of
``server.api.scope`` (one audit row each; an id outside the caller's scope is a
404 page) and never filters by team itself.  A request without a session is
sent to the sign-in page, which comes back here afterwards (``?next=``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from alerts import store
from alerts.model import OUTCOMES
from homeward.kinds import Kind
from server import (
    admin_queries,
    audit,
    collaboration_view,
    patient_messages,
    queries,
    record_queries,
    triage,
)
from server.access import Scope
from server.api import clinical_text, humantime
from server.api.csrf import request_token
from server.api.deps import PoolDep
from server.api.redirects import login_url
from server.api.scope import AdminAccess, AdminScope, AlertAccess, ListAccess, PatientAccess
from server.patient_view import chart_resolution, kinds_measured, recent_readings, rules_now

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

#: The chart ranges of the patient page.
RANGES: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7),
                                "30d": timedelta(days=30), "90d": timedelta(days=90)}
RangeName = Literal["24h", "7d", "30d", "90d"]
#: How much history the alert page's chart shows before the alert opened.
ALERT_CHART_BEFORE = timedelta(hours=48)
#: Up to this many readings in its range a chart draws each one (else buckets).
CHART_RAW_MAX = 5000
SNOOZE_MINUTES = (30, 60, 120, 240, 480)
STATUSES = ("active", "admitted", "away", "discharged")
SORTS = ("attention", "name", "last_reading", "news2", "adherence")


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.filters["when"] = humantime.when
    env.filters["values"] = lambda reading: clinical_text.format_values(
        (reading or {}).get("kind"), (reading or {}).get("values"))
    env.globals.update(kind_label=lambda k: clinical_text.KIND_LABELS.get(k, k),
                       metric_label=lambda m: clinical_text.LABELS.get(m, m),
                       unit=clinical_text.unit, number=clinical_text.number,
                       outcomes=OUTCOMES, snooze_minutes=SNOOZE_MINUTES,
                       statuses=STATUSES, outcome_label=lambda o: o.replace("_", " "),
                       csrf_token=request_token)
    return templates


TEMPLATES = _templates()


class PageRoute(APIRoute):
    """Answers a page's refusals as pages: no session -> the sign-in page, out of scope
    -> a 404 page, a wrong role -> a 403 page (the JSON API answers JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as err:
                if err.status_code == 401:  # and back here once signed in
                    return RedirectResponse(login_url(request.url.path, request.url.query),
                                            status_code=303)
                if err.status_code in (403, 404):
                    return _error_page(request, err.status_code)
                raise

        return page_handler


router = APIRouter(tags=["pages"], include_in_schema=False, route_class=PageRoute)


def _error_page(request: Request, status: int) -> Response:
    title = "Not found" if status == 404 else "Not allowed"
    text = ("There is no such page, or it is not part of your teams' caseload."
            if status == 404 else "Your role does not give you this page.")
    return TEMPLATES.TemplateResponse(request, "error.html",
                                      {"title": title, "text": text, "scope": None,
                                       "nav": None}, status_code=status)


def _page(request: Request, name: str, scope: Scope, nav: str,
          **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, name, {"scope": scope, "nav": nav, **context})


def _team(scope: Scope, team: str | None) -> str | None:
    """The team switcher's choice, when it is one of the caller's teams."""
    return team if team in scope.team_ids else None


# -- triage queue -----------------------------------------------------------------------

def _queue_context(pool: PoolDep, scope: Scope, team: str | None) -> dict[str, Any]:
    with pool.connection() as conn:
        rows = triage.queue(conn, scope, team=team)
        work = collaboration_view.queue_work(conn, scope, team, at=datetime.now(UTC))
    now = datetime.now(UTC)
    for row in rows:
        row["deadline"] = triage.next_deadline(row)
        row["snoozed"] = bool(row["snoozed_until"] and row["snoozed_until"] > now)
    return {"rows": rows, "counts": triage.counts(rows), "team": team, "work": work}


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request, pool: PoolDep, access: ListAccess,
               team: str | None = None) -> Response:
    chosen = _team(access.scope, team)
    return _page(request, "queue.html", access.scope, "queue",
                 **_queue_context(pool, access.scope, chosen))


@router.get("/queue/rows", response_class=HTMLResponse)
def queue_rows(request: Request, pool: PoolDep, access: ListAccess,
               team: str | None = None) -> Response:
    """The queue's rows and counts alone, for the page to merge in place on a live event."""
    chosen = _team(access.scope, team)
    return _page(request, "queue_rows.html", access.scope, "queue",
                 **_queue_context(pool, access.scope, chosen))


# -- one alert --------------------------------------------------------------------------

def _chart(conn: Any, patient_id: int, kind: str, start: datetime, end: datetime,
           limits: list[clinical_text.Threshold]) -> dict[str, Any]:
    """One chart's data: a series per charted metric (every reading unless there are too
    many to draw), and the threshold lines."""
    metrics = clinical_text.CHART_METRICS.get(kind, ())
    resolution = chart_resolution(conn, patient_id, kind, start=start, end=end,
                                  raw_max=CHART_RAW_MAX)
    series = [record_queries.series(conn, patient_id, kind=kind, metric=m, start=start, end=end,
                                    resolution=resolution) for m in metrics]
    return {"kind": kind, "title": clinical_text.KIND_LABELS.get(kind, kind),
            "from": start.isoformat(), "to": end.isoformat(),
            "unit": clinical_text.unit(metrics[0]) if metrics else "",
            "series": [{"metric": s["metric"], "label": clinical_text.LABELS.get(s["metric"],
                                                                              s["metric"]),
                        "resolution": s["resolution"], "points": s["points"]} for s in series],
            "thresholds": [{"metric": t.metric, "value": t.value, "severity": t.severity,
                            "label": t.label()} for t in limits if t.metric in metrics]}


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: int, pool: PoolDep,
               access: AlertAccess) -> Response:
    with pool.connection() as conn:
        alert = store.get_alert(conn, alert_id)
        if alert is None:  # removed between the scope check and now
            raise HTTPException(404)
        rule = alert.get("rule") or {}
        patient: dict[str, Any] | None = None
        charts: list[dict[str, Any]] = []
        if alert["patient_id"] is not None:
            patient = record_queries.patient_detail(conn, alert["patient_id"])
            opened = humantime.parse(alert["opened_at"])
            closed = humantime.parse(alert.get("resolved_at"))
            assert opened is not None
            now = datetime.now(UTC)
            end = min(now, closed + timedelta(hours=24)) if closed else now
            limits = clinical_text.thresholds(rule.get("id", ""), rule.get("severity", ""),
                                              rule.get("params") or {})
            for kind in rule.get("reading_kinds") or []:
                if kind in clinical_text.CHART_METRICS:
                    start, stop = opened - ALERT_CHART_BEFORE, end + timedelta(minutes=1)
                    chart = _chart(conn, alert["patient_id"], kind, start, stop, limits)
                    if any(s["points"] for s in chart["series"]):  # kinds with readings only
                        charts.append(chart)
        names = _clinician_names(conn, [e.get("clinician_id") for e in alert["events"]]
                                 + [alert.get("acknowledged_by"), alert.get("resolved_by")])
        attempts = _attempts(conn, [n["id"] for n in alert["notifications"]])
        messages = (patient_messages.panel(conn, alert["patient_id"])
                    if alert["patient_id"] is not None else None)
        handover = collaboration_view.alert_handover(conn, alert_id)
        teams = collaboration_view.team_directory(conn)
    for n in alert["notifications"]:
        n["attempt_list"] = attempts.get(n["id"], [])
    return _page(request, "alert.html", access.scope, "queue", alert=alert, rule=rule,
                 messages=messages, handover=handover, teams=teams,
                 rule_words=clinical_text.rule_in_words(rule), patient=patient, charts=charts,
                 names=names, deadline=triage.next_deadline(
                     {**alert, "next_escalation_at": humantime.parse(
                         alert.get("next_escalation_at")),
                      "ack_expires_at": humantime.parse(alert.get("ack_expires_at"))}))


def _clinician_names(conn: Any, ids: list[Any]) -> dict[int, str]:
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute("SELECT id, display_name FROM clinician WHERE id = ANY(%s)",
                        (wanted,)).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def _attempts(conn: Any, notification_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every delivery attempt of the alert's notifications, oldest first."""
    out: dict[int, list[dict[str, Any]]] = {}
    if not notification_ids:
        return out
    rows = conn.execute(
        "SELECT notification_id, at, ok, duration_ms, error FROM notification_attempt"
        " WHERE notification_id = ANY(%s) ORDER BY id", (notification_ids,)).fetchall()
    for nid, at, ok, ms, error in rows:
        out.setdefault(int(nid), []).append({"at": at, "ok": ok, "duration_ms": ms,
                                             "error": error})
    return out


# -- caseload ---------------------------------------------------------------------------

def _sort_key(sort: str) -> Callable[[dict[str, Any]], Any]:
    if sort == "name":
        return lambda r: (r["name"] or "").lower()
    if sort == "last_reading":
        return lambda r: r["last_reading_at"] or ""
    if sort == "news2":
        return lambda r: (r["news2"] or {}).get("total", -1)
    if sort == "adherence":
        return lambda r: ((r["adherence"] or {}).get("received", 0)
                          / max(1, (r["adherence"] or {}).get("expected", 0))
                          if r["adherence"] else 2.0)
    return lambda r: 0  # attention: the query's own order (a stable sort keeps it)


@router.get("/caseload", response_class=HTMLResponse)
def caseload_page(request: Request, pool: PoolDep, access: ListAccess,
                  team: str | None = None,
                  status: Annotated[Literal["active", "admitted", "away", "discharged", ""]
                                    | None, Query()] = None,
                  severity: Annotated[Literal["red", "amber", "info", ""] | None,
                                      Query()] = None,
                  q: Annotated[str | None, Query(max_length=100)] = None,
                  sort: Annotated[Literal["attention", "name", "last_reading", "news2",
                                          "adherence"], Query()] = "attention",
                  desc: bool = False) -> Response:
    chosen = _team(access.scope, team)
    with pool.connection() as conn:
        rows = record_queries.caseload(conn, access.scope, team=chosen, status=status or None,
                                       severity=severity or None, q=(q or "").strip() or None)
    rows.sort(key=_sort_key(sort), reverse=desc)
    filters = {"team": chosen or "", "status": status or "", "severity": severity or "",
               "q": q or ""}
    return _page(request, "caseload.html", access.scope, "caseload", rows=rows,
                 filters=filters, sort=sort, desc=desc, sorts=SORTS,
                 kinds=clinical_text.kinds())


# -- one patient ------------------------------------------------------------------------

@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(request: Request, patient_id: int, pool: PoolDep, access: PatientAccess,
                 span: Annotated[RangeName, Query(alias="range")] = "7d") -> Response:
    now = datetime.now(UTC)
    start = now - RANGES[span]
    with pool.connection() as conn:
        patient = record_queries.patient_detail(conn, patient_id)
        timeline = record_queries.timeline(conn, patient_id, limit=100)
        readings = recent_readings(conn, patient_id, start=start, end=now + timedelta(
            minutes=1), limit=100)
        rules = rules_now(conn, patient_id)
        limits = [t for r in rules if r.kind == "threshold"
                  for t in clinical_text.thresholds(r.id, str(r.severity), r.raw_params)]
        kinds_seen = kinds_measured(conn, patient_id, since=now - RANGES["90d"])
        charts = [_chart(conn, patient_id, kind, start, now + timedelta(minutes=1), limits)
                  for kind in clinical_text.kinds() if kind in kinds_seen]
        opened_by = audit.search(conn, patient_id=patient_id, limit=10)
        messages = patient_messages.panel(conn, patient_id)
        alerts = store.list_alerts(conn, states=("open", "acknowledged"), patient_id=patient_id)
        work = collaboration_view.patient_work(conn, patient_id, at=now)
        teams = collaboration_view.team_directory(conn)
    editable = [{"rule": r, "words": clinical_text.rule_in_words(r.as_json()),
                 "limits": [_limit_field(*limit)
                            for limit in clinical_text.editable_limits(r.raw_params)],
                 "params": _without_lines(r.raw_params),
                 "relevant": bool(set(r.reading_kinds) & kinds_seen)}
                for r in rules if r.kind == "threshold"]
    editable.sort(key=lambda e: not e["relevant"])
    return _page(request, "patient.html", access.scope, "caseload", patient=patient,
                 messages=messages, work=work, teams=teams,
                 age=humantime.age_years(patient.get("date_of_birth")), timeline=timeline,
                 readings=readings, charts=charts, range=span, ranges=list(RANGES),
                 editable=editable, opened_by=opened_by, alerts=alerts,
                 today=now.astimezone(humantime.LONDON).strftime("%Y-%m-%dT%H:%M"))


def _limit_field(path: str, metric: str, op: str, value: float) -> dict[str, Any]:
    """One number of the threshold editor: "Amber: SpO₂ ≤ [94] %"."""
    part = path.split(".")
    role = {"when": "Raise", "clear": "Clear"}.get(part[0]) or part[1].capitalize()
    return {"path": path, "label": f"{role}: {clinical_text.comparison(metric, op)}",
            "value": clinical_text.number(value), "unit": clinical_text.unit(metric)}


def _without_lines(value: Any) -> Any:
    """Rule params without the YAML loader's ``__line__`` bookkeeping, at any depth."""
    if isinstance(value, Mapping):
        return {str(k): _without_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list | tuple):
        return [_without_lines(v) for v in value]
    return value


# -- hubs (admins) ----------------------------------------------------------------------

@router.get("/hubs", response_class=HTMLResponse)
def hubs_page(request: Request, pool: PoolDep, scope: AdminScope) -> Response:
    with pool.connection() as conn:
        hubs = queries.hubs(conn)
    for hub in hubs:
        status = hub.get("last_status") or {}
        seen = {d.get("address"): d for d in status.get("devices") or []
                if isinstance(d, dict)}
        for device in hub["devices"]:
            device.update({k: seen.get(device["address"], {}).get(k)
                           for k in ("battery", "connected", "last_seen")})
        hub["outbox_depth"] = status.get("outbox_depth")
        hub["agent"] = status.get("agent")
        hub["outbox_nearly_full"] = bool(status.get("outbox_nearly_full"))
    return _page(request, "hubs.html", scope, "hubs", hubs=hubs)


# -- administration (admins) --------------------------------------------------------------

@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, pool: PoolDep, access: AdminAccess) -> Response:
    """Teams, clinicians, patients and hubs of the admin's organisations; every change
    is a form posting to the admin API (/api/admin, docs/admin.md)."""
    scope = access.scope
    orgs = list(scope.organisation_ids)
    with pool.connection() as conn:
        context = {"teams": admin_queries.teams(conn, orgs),
                   "clinicians": admin_queries.clinicians(conn, orgs),
                   "patients": admin_queries.patients(conn, orgs),
                   "hubs": admin_queries.hubs(conn, orgs)}
    return _page(request, "admin.html", scope, "admin", kinds=[k.value for k in Kind],
                 **context)
