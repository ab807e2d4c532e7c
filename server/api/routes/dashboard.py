"""The nurse dashboard: open alerts, live; login with username/password or an API token."""

from __future__ import annotations

from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool

from server import queries
from server.api.deps import SESSION_COOKIE, PoolDep, SettingsDep, clinician_from_request
from server.auth import SESSION_SECONDS, check_login, hash_token, sign_session

router = APIRouter(tags=["dashboard"], include_in_schema=False)


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


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _templates(request).TemplateResponse(request, "login.html", {"error": None})


def _form(body: bytes) -> dict[str, str]:
    """The urlencoded form's first value of each field; NUL in any field is a 422."""
    form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
    bad = [{"loc": ("body", k), "type": "string_pattern_mismatch",
            "msg": "text must not contain NUL characters"} for k, v in form.items() if "\0" in v]
    if bad:
        raise RequestValidationError(bad)
    return form


def _authenticate(pool: ConnectionPool, form: dict[str, str]) -> int | None:
    """The clinician id the form's token, or username and password, name (blocking:
    a password costs one scrypt, so this runs in a worker thread)."""
    token, username = form.get("token"), form.get("username")
    if not token and not username:
        return None
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


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    form = _form(await request.body())
    # off the event loop, and at most api_login_concurrency at once, so a burst of logins
    # neither stalls other requests nor takes every worker thread
    clinician_id = await anyio.to_thread.run_sync(_authenticate, pool, form,
                                                  limiter=request.app.state.login_limiter)
    if clinician_id is None:
        return _templates(request).TemplateResponse(
            request, "login.html", {"error": "Wrong username, password or token."},
            status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, sign_session(clinician_id, settings.secret_key),
                        max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=settings.env == "production")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
