"""Input types every route uses for text and times, so hostile values answer 422, never 500.

PostgreSQL text cannot hold a NUL character: psycopg refuses to send one and
the route fails with a 500.  ``Text`` refuses NUL at validation instead (the
pattern is published in the OpenAPI, so clients and fuzzers know it).

Python's ``datetime`` spans years 1-9999, PostgreSQL's far more, and a route
that does arithmetic on a time (``to - 7 days``) overflows near either end.
``BoundedDatetime`` accepts only RFC 3339 date-times (not epoch numbers) in
``[TIME_MIN, TIME_MAX)`` (naive means UTC) and returns them aware, in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

#: Any text without NUL characters (PostgreSQL text cannot store them).
NO_NUL_PATTERN = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]

#: Times the API accepts; far wider than any reading (see server ingest bounds),
#: narrow enough that a route can add or subtract years without overflowing.
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(3000, 1, 1, tzinfo=UTC)


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def rfc3339_text(value: object) -> object:
    """Refuse what pydantic would otherwise take for a time: numbers (``to=0.5`` as a Unix
    epoch) and bare dates; an RFC 3339 date-time passes on to be parsed."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("time must be RFC 3339 (e.g. 2026-11-22T08:00:00Z)")
    return value


def in_time_range(value: datetime) -> datetime:
    """``value`` as an aware UTC time, or ValueError when outside [TIME_MIN, TIME_MAX)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    # compare before converting: astimezone itself overflows at year 1 or 9999
    if not TIME_MIN <= aware < TIME_MAX:
        raise ValueError(f"time must be from {TIME_MIN.isoformat()} and before "
                         f"{TIME_MAX.isoformat()}")
    return aware.astimezone(UTC)


BoundedDatetime = Annotated[datetime, BeforeValidator(rfc3339_text),
                            AfterValidator(in_time_range)]

#: A database row id (PostgreSQL bigint): larger numbers cannot name a row.
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]
