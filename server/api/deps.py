"""Typed dependencies: a pooled connection (``SessionDep``), the caller (``CurrentClinician``).

The caller is named by a bearer token or by the dashboard's session cookie
(a server-side session, ``server.web_sessions``).  A state-changing request
that the cookie authenticates must also carry the session's CSRF token
(``server.api.csrf``), else it is a 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from homeward.settings import Settings
from server import queries, web_sessions
from server.api.csrf import HEADER as CSRF_HEADER
from server.api.csrf import UNSAFE_METHODS, token_matches
from server.auth import hash_token

SESSION_COOKIE = web_sessions.SESSION_COOKIE


def get_pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_conn(pool: Annotated[ConnectionPool, Depends(get_pool)]
             ) -> Iterator[psycopg.Connection[Any]]:
    with pool.connection() as conn:
        yield conn


PoolDep = Annotated[ConnectionPool, Depends(get_pool)]
SessionDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def clinician_from_request(request: Request, pool: ConnectionPool,
                           settings: Settings) -> dict[str, Any] | None:
    """The clinician a bearer token or a live session cookie names, if any.

    A state-changing request authenticated by the cookie without the session's CSRF
    token in ``X-CSRF-Token`` is refused (403) before anything is done."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    with pool.connection() as conn:
        if scheme.lower() == "bearer" and token.strip():
            return queries.clinician_by_token_hash(conn, token_hash=hash_token(token.strip()))
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        clinician_id = web_sessions.session_clinician(
            conn, cookie, idle_seconds=settings.session_idle_seconds)
        if clinician_id is None:
            return None
        if request.method in UNSAFE_METHODS and not token_matches(
                request.headers.get(CSRF_HEADER), cookie, settings.secret_key):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="missing or wrong CSRF token: a change made with the "
                                       "session cookie must send the page's X-CSRF-Token")
        return queries.clinician_by_id(conn, clinician_id=clinician_id)


def session_of(request: Request) -> str | None:
    """The session id the request is authenticated by, when a cookie (not a bearer
    token, which wins) is what authenticates it."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def current_clinician(request: Request, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    clinician = clinician_from_request(request, pool, settings)
    if clinician is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail="authentication required: send 'Authorization: Bearer "
                                   "<token>' or log in at /login",
                            headers={"WWW-Authenticate": "Bearer"})
    return clinician


CurrentClinician = Annotated[dict[str, Any], Depends(current_clinician)]


class Problem(BaseModel):
    """An error answer: ``{"detail": "<what is wrong>"}``."""

    detail: str


#: OpenAPI ``responses=`` of every route that needs credentials.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid bearer token or session cookie"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem,
                                                    "description": "no such resource"}}
