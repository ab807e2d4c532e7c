"""Times as a nurse reads them: Europe/London, in words, the exact time on hover.

The dashboard never shows a raw ISO timestamp.  ``{{ value|when }}`` renders
``<time datetime="<ISO>" title="<exact local time>">08:02 today</time>``;
``{{ value|when("ago") }}`` says "3 h ago" (or "in 20 min" for a time to come).
Both accept an aware ``datetime`` or an ISO 8601 string (the store's JSON-ready
rows carry strings).  ``static/humantime.js`` keeps the "ago" texts current in an
open page with the same words.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from markupsafe import Markup

LONDON = ZoneInfo("Europe/London")
Style = Literal["clock", "ago"]


def parse(value: datetime | str | None) -> datetime | None:
    """An aware datetime from a datetime or an ISO string (naive means UTC)."""
    if value is None or value == "":
        return None
    at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def clock(at: datetime, now: datetime) -> str:
    """"08:02 today", "yesterday 17:40", "tomorrow 09:00", "Mon 17:40" (this week),
    "3 Nov 08:02" (this year), "3 Nov 2025 08:02"."""
    local, today = at.astimezone(LONDON), now.astimezone(LONDON).date()
    hm = local.strftime("%H:%M")
    days = (local.date() - today).days
    if days == 0:
        return f"{hm} today"
    if days == -1:
        return f"yesterday {hm}"
    if days == 1:
        return f"tomorrow {hm}"
    if -6 <= days < 0:
        return f"{local.strftime('%a')} {hm}"
    if local.year == today.year:
        return f"{local.day} {local.strftime('%b')} {hm}"
    return f"{local.day} {local.strftime('%b %Y')} {hm}"


def ago(at: datetime, now: datetime) -> str:
    """"just now", "5 min ago", "3 h ago", "2 d ago"; "in 20 min" for the future."""
    seconds = (now - at).total_seconds()
    future, span = seconds < 0, abs(seconds)
    if span < 45:
        return "just now" if not future else "in under a minute"
    if span < 3600:
        amount = f"{max(1, round(span / 60))} min"
    elif span < 86400:
        amount = f"{int(span // 3600)} h"
        minutes = int(span % 3600 // 60)
        if span < 6 * 3600 and minutes:
            amount += f" {minutes} min"
    else:
        amount = f"{int(span // 86400)} d"
    return f"in {amount}" if future else f"{amount} ago"


def exact(at: datetime) -> str:
    """The exact local time with its zone, for the hover title: "Wed 2 Dec 2026 08:02:13 GMT"."""
    local = at.astimezone(LONDON)
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %Y %H:%M:%S %Z')}"


def when(value: datetime | str | None, style: Style = "clock",
         now: datetime | None = None) -> Markup:
    """The Jinja filter: a ``<time>`` element with the exact time in its title."""
    at = parse(value)
    if at is None:
        return Markup('<span class="none">—</span>')
    current = now or datetime.now(UTC)
    text = ago(at, current) if style == "ago" else clock(at, current)
    iso = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if style == "ago":
        return Markup('<time datetime="{}" title="{}" data-rel="ago">{}</time>').format(
            iso, exact(at), text)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, exact(at), text)


def age_years(born: datetime | str | None, today: datetime | None = None) -> int | None:
    """Whole years from a date of birth (ISO date or datetime) to today in London."""
    if born is None or born == "":
        return None
    birth = born.date() if isinstance(born, datetime) else datetime.fromisoformat(
        str(born)).date()
    now = (today or datetime.now(UTC)).astimezone(LONDON).date()
    return now.year - birth.year - ((now.month, now.day) < (birth.month, birth.day))


def duration(delta: timedelta) -> str:
    """A span in words: "45 min", "3 h 10 min", "2 d"."""
    words = ago(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC) + delta)
    return words.removesuffix(" ago")
