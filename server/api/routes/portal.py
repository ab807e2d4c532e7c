"""The patient portal's pages, under ``/my`` (docs/patient-portal.md).

A patient signs in with a one-time code sent to their e-mail address
(``server.patient_auth``) and sees their own readings with charts, whether their care
team has seen each one (``server.patient_seen``), and the team's messages, which they
confirm or answer (``server.patient_messages``).  Server-rendered for a tablet: large
text, plain words, forms that post without JavaScript (each with the session's CSRF
token); the charts are the dashboard's (``static/charts.js``, uPlot).

Every page past sign-in takes ``PatientSelf`` (``server.api.patient_scope``): one
audit row per request with role ``patient``; an id that is not the patient's (a
reading, a message) is a 404 page, as an id that does not exist.  A request without a
session goes to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from homeward.settings import Settings
from server import patient_auth, patient_messages, patient_seen, portal_view
from server.api.clinical_text import CHART_METRICS, number, unit
from server.api.deps import PoolDep, SettingsDep
from server.api.patient_scope import (
    PATIENT_COOKIE,
    PORTAL_PATH,
    PatientCaller,
    PatientSelf,
    PortalForm,
    form_fields,
    write_audit,
)
from server.api.routes.pages import TEMPLATES, _chart
from server.api.scope import request_id

CHALLENGE_COOKIE = "homeward_patient_challenge"
SIGN_IN = f"{PORTAL_PATH}/sign-in"
RANGES: dict[str, timedelta] = {"7d": timedelta(days=7), "30d": timedelta(days=30),
                                "90d": timedelta(days=90)}
RANGE_WORDS = {"7d": "7 days", "30d": "30 days", "90d": "90 days"}
READINGS_SHOWN = 50
#: What a patient calls each kind of reading.
KIND_WORDS: dict[str, str] = {
    "blood_pressure": "Blood pressure", "spo2": "Oxygen level", "temperature": "Temperature",
    "weight": "Weight", "glucose": "Blood sugar", "respiratory_rate": "Breathing rate"}
#: And each line of a chart.
METRIC_WORDS: dict[str, str] = {
    "systolic": "top number (systolic)", "diastolic": "bottom number (diastolic)",
    "spo2": "oxygen level", "body_temperature": "temperature", "body_weight": "weight",
    "blood_glucose": "blood sugar", "respiratory_rate": "breaths a minute"}
#: How a patient reads a value beside the main one ("Pulse 77 beats a minute").
_PER_MINUTE = {"pulse_rate": ("Pulse", "beats a minute"),
               "respiratory_rate": ("Breathing", "breaths a minute")}


def reading_words(reading: dict[str, Any]) -> tuple[str, list[str]]:
    """A reading in a patient's words: the main value ("151/92 mmHg", "89 %", "16 breaths
    a minute") and the others ("Pulse 77 beats a minute"); a device's bookkeeping
    (mean arterial pressure, perfusion index) is left out."""
    values = dict(reading.get("values") or {})
    kind = str(reading.get("kind"))

    def said(metric: str, value: Any, *, alone: bool) -> str:
        if metric in _PER_MINUTE:
            label, per = _PER_MINUTE[metric]
            return f"{number(value)} {per}" if alone else f"{label} {number(value)} {per}"
        return f"{number(value)} {unit(metric)}".rstrip()

    if "systolic" in values and "diastolic" in values:
        main = f"{number(values.pop('systolic'))}/{number(values.pop('diastolic'))} mmHg"
    else:
        metric = next((m for m in CHART_METRICS.get(kind, ()) if m in values), None)
        main = said(metric, values.pop(metric), alone=True) if metric else ""
    rest = [said(m, v, alone=False) for m, v in values.items()
            if m not in ("mean_arterial", "perfusion_index")]
    return main, rest


class PortalRoute(APIRoute):
    """A portal page's refusals as pages: no session -> the sign-in page, another
    patient's id or none -> a 404 page, a refused form (no CSRF token, a confirmation of
    a message that asks for none) -> a 403 or 409 page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as err:
                # answered here as a page, the error never reaches the audit dependency's
                # exit (FastAPI closes it after the response): it reads it from the state
                request.state.portal_error = err
                if err.status_code == 401:
                    return RedirectResponse(SIGN_IN, status_code=303)
                if err.status_code in (403, 404, 409):
                    return _error(request, err.status_code)
                raise

        return page_handler


router = APIRouter(tags=["portal"], include_in_schema=False, route_class=PortalRoute)


def _render(request: Request, name: str, status_code: int = 200,
            headers: dict[str, str] | None = None, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(
        request, f"portal/{name}", {"kind_words": KIND_WORDS, "words": reading_words,
                                    "me": None, "csrf": "", "nav": None, **context},
        status_code=status_code, headers=headers)


def _error(request: Request, status: int) -> Response:
    if status == 404:
        title, text = ("Page not found",
                       "There is no such page, or it is not part of your record.")
    else:
        title, text = ("Not done", "That did not work: the page was too old. Go back, "
                                   "reload the page and try again.")
    return _render(request, "error.html", status_code=status, title=title, text=text)


def _page(request: Request, name: str, me: PatientCaller, settings: Settings, nav: str,
          counts: dict[str, int], **context: Any) -> Response:
    return _render(request, name, me=me, csrf=me.csrf(settings.secret_key), nav=nav,
                   counts=counts, **context)


def _secure(request: Request, settings: Settings) -> bool:
    """The cookie's Secure flag, by the dashboard's rule (docs/security.md)."""
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https" or settings.dashboard_url.startswith("https://")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


# -- signing in ---------------------------------------------------------------------------

@router.get(SIGN_IN, response_class=HTMLResponse)
def sign_in_page(request: Request) -> Response:
    return _render(request, "sign_in.html", email="", error=None)


@router.post(SIGN_IN, response_class=HTMLResponse)
async def ask_for_code(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    """Send a code to the address if it is a patient's; the same answer either way."""
    form = form_fields(await request.body())
    typed = form.get("email", "")[:300]
    email = patient_auth.normalise_email(typed)
    if email is None:
        return _render(request, "sign_in.html", status_code=422, email=typed,
                       error="Enter your e-mail address, like name@example.com.")

    def ask() -> patient_auth.CodeSent | patient_auth.TooMany:
        with pool.connection() as conn:
            return patient_auth.request_code(conn, settings, email=email,
                                             client_addr=_client(request))

    sent = await anyio.to_thread.run_sync(ask)
    if isinstance(sent, patient_auth.TooMany):
        minutes = max(1, -(-sent.retry_after // 60))
        return _render(request, "sign_in.html", status_code=429, email=typed,
                       headers={"Retry-After": str(sent.retry_after)},
                       error=f"Too many codes asked for. Try again in {minutes} minute"
                             f"{'s' if minutes != 1 else ''}.")
    response = RedirectResponse(f"{SIGN_IN}/code", status_code=303)
    response.set_cookie(CHALLENGE_COOKIE, sent.challenge, max_age=settings.patient_code_seconds,
                        path=SIGN_IN, httponly=True, samesite="strict",
                        secure=_secure(request, settings))
    return response


@router.get(f"{SIGN_IN}/code", response_class=HTMLResponse)
def code_page(request: Request, settings: SettingsDep) -> Response:
    if not request.cookies.get(CHALLENGE_COOKIE):
        return RedirectResponse(SIGN_IN, status_code=303)
    return _render(request, "code.html", error=None,
                   minutes=settings.patient_code_seconds // 60)


@router.post(f"{SIGN_IN}/code", response_class=HTMLResponse)
async def enter_code(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    form = form_fields(await request.body())
    challenge = request.cookies.get(CHALLENGE_COOKIE)
    minutes = settings.patient_code_seconds // 60
    if not challenge:
        return _render(request, "code.html", status_code=401, minutes=minutes,
                       error="This code has run out. Ask for a new code.", expired=True)
    client = _client(request)
    req_id = request_id(request)

    def check() -> patient_auth.SignedIn | patient_auth.Refused:
        with pool.connection() as conn:
            return patient_auth.check_code(conn, settings, challenge=challenge,
                                           code=form.get("code", ""), client_addr=client,
                                           request_id=req_id)

    result = await anyio.to_thread.run_sync(check)
    if isinstance(result, patient_auth.Refused):
        if result.why == "locked":
            wait = max(1, -(-result.retry_after // 60))
            return _render(request, "code.html", status_code=429, minutes=minutes,
                           headers={"Retry-After": str(result.retry_after)},
                           error=f"Too many wrong codes. Try again in {wait} minute"
                                 f"{'s' if wait != 1 else ''}.")
        if result.why == "wrong":
            return _render(request, "code.html", status_code=401, minutes=minutes,
                           error=f"That code is not right. Check the e-mail and try again "
                                 f"({result.tries_left} "
                                 f"{'tries' if result.tries_left != 1 else 'try'} left).")
        return _render(request, "code.html", status_code=401, minutes=minutes, expired=True,
                       error="This code has run out or has been used. Ask for a new code.")
    old = request.cookies.get(PATIENT_COOKIE)
    with pool.connection() as conn:
        if old:  # a new session at each sign-in: an id planted beforehand is worth nothing
            patient_auth.end_session(conn, old)
        patient_auth.prune_sessions(conn, idle_seconds=settings.patient_session_idle_seconds)
        session_id = patient_auth.new_session(
            conn, result.patient_id, absolute_seconds=settings.patient_session_absolute_seconds,
            client_addr=client)
    write_audit(request, pool, result.patient_id, "ok")
    response = RedirectResponse(PORTAL_PATH, status_code=303)
    response.delete_cookie(CHALLENGE_COOKIE, path=SIGN_IN, httponly=True, samesite="strict",
                           secure=_secure(request, settings))
    response.set_cookie(PATIENT_COOKIE, session_id,
                        max_age=settings.patient_session_absolute_seconds, path=PORTAL_PATH,
                        httponly=True, samesite="lax", secure=_secure(request, settings))
    return response


@router.post(f"{PORTAL_PATH}/sign-out")
def sign_out(request: Request, pool: PoolDep, settings: SettingsDep, me: PatientSelf,
             form: PortalForm) -> Response:
    with pool.connection() as conn:
        patient_auth.end_session(conn, me.session_id)
    response = RedirectResponse(f"{SIGN_IN}?signed_out=1", status_code=303)
    response.delete_cookie(PATIENT_COOKIE, path=PORTAL_PATH, httponly=True, samesite="lax",
                           secure=_secure(request, settings))
    return response


# -- the patient's own record ---------------------------------------------------------------

@router.get(PORTAL_PATH, response_class=HTMLResponse)
def home(request: Request, pool: PoolDep, settings: SettingsDep, me: PatientSelf,
         span: Annotated[Literal["7d", "30d", "90d"], Query(alias="range")] = "7d") -> Response:
    """The latest reading of each kind and whether the team has seen it, a chart per
    kind, the readings of the range, and the messages waiting."""
    now = datetime.now(UTC)
    start, end = now - RANGES[span], now + timedelta(minutes=1)
    with pool.connection() as conn:
        latest = portal_view.latest_by_kind(conn, me.patient_id, since=now - RANGES["90d"])
        rows = portal_view.readings(conn, me.patient_id, start=start, end=end,
                                    limit=READINGS_SHOWN)
        seen = patient_seen.seen_by(conn, me.patient_id, latest + rows)
        charts = [_chart(conn, me.patient_id, r["kind"], start, end, []) for r in latest]
        counts = patient_messages.unread(conn, me.patient_id)
        teams = portal_view.care_team(conn, me.patient_id)
    for c in charts:
        c["title"] = KIND_WORDS.get(c["kind"], c["title"])
        for line in c["series"]:
            line["label"] = METRIC_WORDS.get(line["metric"], line["label"])
    return _page(request, "home.html", me, settings, "readings", counts, latest=latest,
                 readings=rows, seen=seen, charts=charts, range=span,
                 ranges=list(RANGES), range_words=RANGE_WORDS, teams=teams,
                 shown=READINGS_SHOWN)


@router.get(f"{PORTAL_PATH}/readings/{{reading_id}}", response_class=HTMLResponse)
def reading_page(request: Request, reading_id: str, pool: PoolDep, settings: SettingsDep,
                 me: PatientSelf) -> Response:
    with pool.connection() as conn:
        found = portal_view.reading(conn, me.patient_id, reading_id[:64])
        if found is None:
            raise HTTPException(404)
        seen = patient_seen.seen_by(conn, me.patient_id, [found])
        counts = patient_messages.unread(conn, me.patient_id)
    return _page(request, "reading.html", me, settings, "readings", counts, r=found,
                 seen=seen.get(str(found["id"])))


@router.get(f"{PORTAL_PATH}/messages", response_class=HTMLResponse)
def messages_page(request: Request, pool: PoolDep, settings: SettingsDep,
                  me: PatientSelf) -> Response:
    """The team's messages and the patient's replies; showing them marks them read."""
    with pool.connection() as conn:
        rows = patient_messages.messages(conn, me.patient_id)
        patient_messages.mark_read(conn, me.patient_id)
        counts = patient_messages.unread(conn, me.patient_id)
    return _page(request, "messages.html", me, settings, "messages", counts,
                 threads=patient_messages.threads(rows),
                 done=request.query_params.get("done"))


def _mine(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except patient_messages.NotTheirs as err:
        raise HTTPException(404) from err


@router.post(f"{PORTAL_PATH}/messages/{{message_id}}/confirm")
def confirm(message_id: int, pool: PoolDep, me: PatientSelf, form: PortalForm) -> Response:
    with pool.connection() as conn:
        try:
            _mine(lambda: patient_messages.confirm(conn, me.patient_id, message_id))
        except ValueError as err:
            raise HTTPException(409, detail=str(err)) from err
    return RedirectResponse(f"{PORTAL_PATH}/messages?done=confirmed#message-{message_id}",
                            status_code=303)


@router.post(f"{PORTAL_PATH}/messages/{{message_id}}/reply")
def reply(message_id: int, pool: PoolDep, me: PatientSelf, form: PortalForm) -> Response:
    text = form.get("text", "").strip()
    if not text:
        return RedirectResponse(f"{PORTAL_PATH}/messages#message-{message_id}",
                                status_code=303)
    with pool.connection() as conn:
        _mine(lambda: patient_messages.reply(conn, me.patient_id, message_id,
                                             text[:patient_messages.BODY_MAX]))
    return RedirectResponse(f"{PORTAL_PATH}/messages?done=replied#message-{message_id}",
                            status_code=303)
