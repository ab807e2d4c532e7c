"""Request limits: bodies over a size answer 413 unread; 422s never echo large input;
a JSON body that is not UTF-8 is a 422 like other malformed JSON (not FastAPI's 400).

``BodySizeLimit`` is a pure ASGI middleware (no buffering, no Starlette
request object), so it holds for every route, the ones added later included:

- a ``Content-Length`` over the limit is answered 413 before the app runs, so
  not one byte of the body is read;
- a body without a length (chunked) is counted as the app reads it, and the
  read that crosses the limit raises ``BodyTooLarge`` (an HTTP 413), so at most
  the limit plus one chunk is ever held.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Longest ``input`` (characters of its JSON form) a 422 echoes back; longer is summarised.
ECHO_LIMIT = 200


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # raised where no exception handler saw it (a middleware, a raw read)
            if started:
                raise
            await _send_413(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _short(value: Any) -> Any:
    """``value`` when its JSON is short; otherwise a note of its size (never the value)."""
    try:
        size = len(orjson.dumps(value, default=str))
    except TypeError:
        return f"<{type(value).__name__}, not echoed>"
    if size <= ECHO_LIMIT:
        return value
    return f"<{size} bytes of JSON, not echoed>"


def _trimmed(error: Any) -> Any:
    if not isinstance(error, dict):
        return error
    out = dict(error)
    if "input" in out:
        out["input"] = _short(out["input"])
    if isinstance(out.get("ctx"), dict):
        out["ctx"] = {k: _short(v) for k, v in out["ctx"].items()}
    return out


async def unreadable_body(request: Request, exc: Exception) -> Response:
    """A JSON body that is not UTF-8 is a 422 like any other malformed JSON (FastAPI
    answers 400 for it, a status no route documents); other HTTP errors as usual."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return JSONResponse({"detail": [{"loc": ["body"], "type": "json_invalid",
                                         "msg": "the body is not UTF-8 JSON"}]},
                            status_code=422)
    if exc.status_code == 405:
        exc.headers = {**(exc.headers or {}), "Allow": allowed_methods(request)}
    return await http_exception_handler(request, exc)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110: a 405 lists them all).

    Starlette answers 405 from the first route whose path matches, so a path served
    by two routes (GET and PUT declared apart) would list only one of them.  Each
    method is asked of every route through ``matches`` (FastAPI's included routers
    answer it too)."""
    return ", ".join(m for m in _METHODS if any(
        route.matches({**request.scope, "method": m})[0] is Match.FULL
        for route in request.app.router.routes))


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body (``{"detail": [...]}``), with large inputs left out."""
    assert isinstance(exc, RequestValidationError)
    detail = [_trimmed(e) for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)
