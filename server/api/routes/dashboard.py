"""The nurse dashboard's sign-in and sign-out (username and password, or an API token).

Sign-in is throttled across API processes (``server.login_throttle``: 429 with
``Retry-After``), makes a server-side session (``server.web_sessions``) and goes
to ``?next=`` when that is a path of this site (``server.api.redirects``).
Sign-out ends the session on the server, so its cookie replayed later is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool

from homeward.settings import Settings
from server import login_throttle, queries, web_sessions
from server.api.csrf import FORM_FIELD, token_matches
from server.api.deps import SESSION_COOKIE, PoolDep, SettingsDep, clinician_from_request
from server.api.redirects import START, safe_next
from server.api.scope import request_id
from server.auth import check_login, hash_token

router = APIRouter(tags=["dashboard"], include_in_schema=False)
WRONG = "Wrong username, password or token."


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    clinician = clinician_from_request(request, pool, settings)
    if clinician is None:
        return RedirectResponse("/login", status_code=303)
    # the triage queue (server.api.routes.pages) is the landing page: scoped and audited
    return RedirectResponse("/queue", status_code=303)


def _login_page(request: Request, *, next_path: str | None, error: str | None = None,
                status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _templates(request).TemplateResponse(
        request, "login.html", {"error": error, "next": safe_next(next_path)},
        status_code=status_code, headers=headers)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_path=next)


def _form(body: bytes) -> dict[str, str]:
    """The urlencoded form's first value of each field; NUL in any field is a 422."""
    form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
    bad = [{"loc": ("body", k), "type": "string_pattern_mismatch",
            "msg": "text must not contain NUL characters"} for k, v in form.items() if "\0" in v]
    if bad:
        raise RequestValidationError(bad)
    return form


@dataclass(frozen=True, slots=True)
class Outcome:
    clinician_id: int | None = None
    locked: login_throttle.Locked | None = None


def _limits(settings: Settings) -> login_throttle.Limits:
    return login_throttle.Limits(settings.login_max_failures,
                                 settings.login_failure_window_seconds)


def _check(pool: ConnectionPool, form: dict[str, str]) -> int | None:
    """The clinician id the form's token, or username and password, name."""
    token, username = form.get("token"), form.get("username")
    with pool.connection() as conn:
        if token:
            found = queries.clinician_by_token_hash(conn, token_hash=hash_token(token))
            return int(found["id"]) if found else None
        assert username
        login_row = queries.clinician_login(conn, username=username)
    # after the connection is back in the pool; an unknown username costs one scrypt too
    # (check_login), so the answer's timing does not tell whether the username exists
    if login_row and check_login(form.get("password", ""), login_row[1]):
        return login_row[0]
    if not login_row:
        check_login(form.get("password", ""), None)
    return None


def _authenticate(pool: ConnectionPool, settings: Settings, form: dict[str, str],
                  client_addr: str | None, req_id: str) -> Outcome:
    """Throttle, then check (blocking: a password costs one scrypt, so this runs in a
    worker thread)."""
    token, username = form.get("token"), form.get("username")
    if not token and not username:
        return Outcome()
    limits, client = _limits(settings), login_throttle.client_key(client_addr)
    user = None if token else username
    with pool.connection() as conn:
        attempt = login_throttle.reserve(conn, username=user, client=client, limits=limits)
    if isinstance(attempt, login_throttle.Locked):
        return Outcome(locked=attempt)
    clinician_id = _check(pool, form)
    with pool.connection() as conn:
        if clinician_id is not None:
            login_throttle.succeeded(conn, attempt)
        else:
            login_throttle.failed(conn, attempt, username=user, client=client, limits=limits,
                                  request_id=req_id, client_addr=client_addr)
    return Outcome(clinician_id)


def _secure(request: Request, settings: Settings) -> bool:
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https" or settings.dashboard_url.startswith("https://")


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    form = _form(await request.body())
    next_path = form.get("next")
    client_addr = request.client.host if request.client else None
    # off the event loop, and at most api_login_concurrency at once, so a burst of logins
    # neither stalls other requests nor takes every worker thread
    outcome = await anyio.to_thread.run_sync(
        _authenticate, pool, settings, form, client_addr, request_id(request),
        limiter=request.app.state.login_limiter)
    if outcome.locked is not None:
        wait = outcome.locked.retry_after
        return _login_page(request, next_path=next_path, status_code=429,
                           error=f"Too many failed sign-ins. Try again in {_minutes(wait)}.",
                           headers={"Retry-After": str(wait)})
    if outcome.clinician_id is None:
        return _login_page(request, next_path=next_path, error=WRONG, status_code=401)
    old = request.cookies.get(SESSION_COOKIE)
    with pool.connection() as conn:
        if old:  # a new session at each sign-in: an id planted beforehand is worth nothing
            web_sessions.end_session(conn, old)
        web_sessions.prune_sessions(conn, idle_seconds=settings.session_idle_seconds)
        session_id = web_sessions.new_session(
            conn, outcome.clinician_id, absolute_seconds=settings.session_absolute_seconds,
            client_addr=client_addr)
    response = RedirectResponse(safe_next(next_path) or START, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=settings.session_absolute_seconds,
                        httponly=True, samesite="lax", secure=_secure(request, settings))
    return response


@router.post("/logout")
async def logout(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    """Ends the session on the server.  A plain form post: its CSRF token is a field."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        form = _form(await request.body())
        given = form.get(FORM_FIELD) or request.headers.get("x-csrf-token")
        if not token_matches(given, cookie, settings.secret_key):
            raise HTTPException(403, detail="missing or wrong CSRF token")
        with pool.connection() as conn:
            web_sessions.end_session(conn, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax",
                           secure=_secure(request, settings))
    return response
