"""The invitation page: ``/invite/{token}`` lets a new clinician set her password, once.

Not in the OpenAPI document (it is a page, like /login).  An unknown, spent or
expired token answers 410 with the same words, whichever it was.  The token is
the credential, so the page needs no session (and sets none: she signs in next).
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool

from server import invites
from server.api.deps import PoolDep
from server.api.routes.dashboard import _form

router = APIRouter(tags=["dashboard"], include_in_schema=False)
GONE = "This invitation link is not valid: it has expired or been used. Ask your administrator for a new one."  # noqa: E501


def _page(request: Request, status: int = 200, **context: object) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context.setdefault("min_length", invites.MIN_PASSWORD)
    context.setdefault("error", None)
    # the token is in the address: keep it out of other sites' Referer headers
    return templates.TemplateResponse(request, "invite.html", context, status_code=status,
                                      headers={"Referrer-Policy": "no-referrer",
                                               "Cache-Control": "no-store"})


@router.get("/invite/{token}", response_class=HTMLResponse)
def invite_form(token: str, request: Request, pool: PoolDep) -> Response:
    with pool.connection() as conn:
        found = invites.pending_invite(conn, token)
    if found is None:
        return _page(request, 410, error=GONE)
    return _page(request, name=found[1])


def _submit(pool: ConnectionPool, token: str, password: str,
            confirm: str) -> tuple[int, dict[str, object]]:
    """(status, page context) for a submitted form (blocking: one scrypt when it is good)."""
    with pool.connection() as conn:
        found = invites.pending_invite(conn, token)
        if found is None:
            return 410, {"error": GONE}
        name = found[1]
        if password != confirm:
            return 422, {"name": name, "error": "The two passwords differ."}
        if len(password) < invites.MIN_PASSWORD:
            return 422, {"name": name, "error": "Choose a password of at least "
                                                f"{invites.MIN_PASSWORD} characters."}
        try:
            invites.redeem_invite(conn, token=token, password=password)
        except invites.InviteRefused:  # spent by a request just before this one
            return 410, {"error": GONE}
    return 200, {"done": True, "name": name}


@router.post("/invite/{token}", response_class=HTMLResponse)
async def invite_submit(token: str, request: Request, pool: PoolDep) -> Response:
    form = _form(await request.body())
    # off the event loop, within the login concurrency limit (a password costs one scrypt)
    status, context = await anyio.to_thread.run_sync(
        _submit, pool, token, form.get("password", ""), form.get("confirm", ""),
        limiter=request.app.state.login_limiter)
    return _page(request, status, **context)
