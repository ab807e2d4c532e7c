"""Log lines for people (console) or for machines (one JSON object a line).

The standard library's ``logging`` with a JSON formatter, not structlog: every
module here, and uvicorn, paho and psycopg, already logs through ``logging``;
one formatter on the root handler makes each of their lines structured without
touching a call site, and adds no dependency (orjson is already one).

Correlation: :func:`log_context` binds fields (``request_id`` in the API,
``hub``/``mqtt_mid``/``reading_id`` in the ingest, ``alert_id`` and
``notification_id`` in the alert worker) to the current context (a
``contextvars`` variable, so each asyncio task and thread has its own) and every
line logged inside carries them; a call's ``extra={...}`` adds fields to that
line alone.  ``HOMEWARD_LOG_FORMAT`` (json or console) and
``HOMEWARD_LOG_LEVEL`` choose, per process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "console"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("homeward_log_context", default=_EMPTY)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName", "homeward_context"}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside carries ``fields`` (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items()
                                                if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, Any]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (as ``homeward_context``) when it is made,
    in the thread or task that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "homeward_context"):
            record.homeward_context = dict(_context.get())
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out = dict(getattr(record, "homeward_context", None) or {})
    out.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES})
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, process, message, then the context's and
    the call's fields, and ``exc`` with the traceback when there is one."""

    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process:
            line["process"] = self.process
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")  # a traceback stays below the line
        return (first + " " + " ".join(f"{k}={v}" for k, v in fields.items())
                + newline + rest)


def configure_logging(fmt: LogFormat = "console", level: str | int = "INFO", *,
                      process: str | None = None, stream: Any = None) -> logging.Handler:
    """Send every logger's lines to ``stream`` (stderr) in ``fmt``; replaces the root
    logger's handlers, so calling it twice does not double lines.  Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # theirs go to ours
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler
