"""The nurse dashboard: open alerts, live; login with username/password or an API token."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from alerts import store
from server import queries
from server.api.deps import SESSION_COOKIE, PoolDep, SettingsDep, clinician_from_request
from server.auth import SESSION_SECONDS, hash_token, sign_session, verify_password

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    clinician = clinician_from_request(request, pool, settings)
    if clinician is None:
        return RedirectResponse("/login", status_code=303)
    with pool.connection() as conn:
        alerts = store.list_alerts(conn, states=("open", "acknowledged"))
    return _templates(request).TemplateResponse(
        request, "dashboard.html", {"clinician": clinician, "alerts": alerts})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _templates(request).TemplateResponse(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    clinician_id: int | None = None
    with pool.connection() as conn:
        if form.get("token"):
            found = queries.clinician_by_token_hash(conn, token_hash=hash_token(form["token"]))
            clinician_id = found["id"] if found else None
        elif form.get("username"):
            login_row = queries.clinician_login(conn, username=form["username"])
            if login_row and verify_password(form.get("password", ""), login_row[1]):
                clinician_id = login_row[0]
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
