"""FHIR search parameters: parsed, checked and turned into links.  Pure: no database.

What each resource type supports is :data:`SUPPORTED` (the CapabilityStatement is
built from it, so the two cannot disagree).  The FHIR R4 search rules applied
(https://hl7.org/fhir/R4/search.html):

- A parameter the server does not support, or a modifier it does not know, is
  ignored and left out of the ``self`` link (section 3.1.1.2); under
  ``Prefer: handling=strict`` it is an error instead (:class:`SearchError`, 400).
  A supported parameter with a bad value is an error either way.
- Repeating a parameter is AND; a comma-separated value is OR (3.1.1.3).
- ``date`` and ``_lastUpdated`` take the prefixes eq, gt, lt, ge, le (3.1.1.4.1);
  a value is a range at its own precision (``2026-11`` is all of November), and
  a value without a zone is Europe/London time, the zone the service runs in.
- Tokens are ``code``, ``system|code`` or ``|code`` (no system) (3.1.1.4.8).
- Paging is keyset, not offset: ``_cursor`` holds the position after the page's
  last entry and the time the search began, so a next link neither repeats nor
  skips a match when readings arrive between pages; it is opaque to clients.
"""

from __future__ import annotations

import base64
import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson

LONDON: Final = ZoneInfo("Europe/London")
DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000
CURSOR: Final = "_cursor"

ParamType = Literal["reference", "token", "date", "number"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    documentation: str


_PATIENT = Param("patient", "reference", "The patient: 123, Patient/123 or its full URL")
_LAST_UPDATED = Param("_lastUpdated", "date", "When the server last changed the resource")

#: Per resource type, the search parameters it supports (besides _count and _sort).
SUPPORTED: Final[dict[str, tuple[Param, ...]]] = {
    "Patient": (Param("_id", "token", "The patient's id"),
                Param("identifier", "token",
                      "https://fhir.nhs.uk/Id/nhs-number|{NHS number}, or the number alone")),
    "Observation": (_PATIENT, Param("subject", "reference", "The patient (as patient)"),
                    Param("code", "token", "LOINC or MDC code, e.g. http://loinc.org|85354-9"),
                    Param("category", "token", "vital-signs or laboratory"),
                    Param("date", "date", "effectiveDateTime: when the reading was taken"),
                    _LAST_UPDATED),
    "Flag": (_PATIENT, Param("subject", "reference", "The patient (as patient)"),
             Param("status", "token", "active or inactive"), _LAST_UPDATED),
    "Device": (_PATIENT,),
    "CareTeam": (_PATIENT, Param("subject", "reference", "The patient (as patient)")),
    "Task": (Param("patient", "reference", "The patient (required): tasks and hand-overs"),),
    "Communication": (Param("patient", "reference",
                            "The patient (required): messages with the care team"),
                      Param("subject", "reference", "The patient (as patient)")),
}
#: _sort values per type ("-" first: newest first).
SORTS: Final[dict[str, tuple[str, ...]]] = {"Observation": ("date", "-date")}
#: Parameters that change only the answer's form, accepted everywhere and repeated in links.
RESULT_PARAMS: Final = frozenset({"_count", "_sort", "_format", CURSOR})
_JSON_FORMATS: Final = frozenset({"json", "application/json", "application/fhir+json"})


class SearchError(ValueError):
    """A search the server cannot answer as asked: 400 with an OperationOutcome."""


# -- values --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    system: str | None  # None: any system; "": no system
    code: str


@dataclass(frozen=True, slots=True)
class Bound:
    """``column >= at`` (``op`` ">=") or ``column < at`` ("<")."""

    op: Literal[">=", "<"]
    at: datetime


def parse_token(text: str) -> Token:
    if "|" in text:
        system, _, code = text.partition("|")
        if not code:
            raise SearchError(f"token {text!r} has no code (a system alone is not supported)")
        return Token(system, code)
    if not text:
        raise SearchError("empty token")
    return Token(None, text)


def parse_reference(text: str, resource_type: str = "Patient") -> int:
    """``123``, ``Patient/123`` or ``https://host/fhir/r4/Patient/123`` -> 123."""
    tail = text.rstrip("/").rsplit("/", 2)
    if len(tail) >= 2 and tail[-2] != resource_type:
        raise SearchError(f"{text!r} is not a reference to a {resource_type}")
    value = tail[-1]
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise SearchError(f"{text!r} is not a {resource_type} id")
    return int(value)


_DATE: Final = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?"
    r"(?P<z>Z|[+-]\d{2}:\d{2})?)?)?)?")
_PREFIXES: Final = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants [start, end) a FHIR date/dateTime value covers at its precision."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise SearchError(f"{text!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    zone: tzinfo = LONDON if g["z"] is None else (UTC if g["z"] == "Z" else _offset(g["z"]))
    try:
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=zone)
            end = datetime(year + 1, 1, 1, tzinfo=zone) if year < 9999 else None
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=zone)
            end = start + timedelta(days=calendar.monthrange(year, month)[1])
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=zone)
            end = start + timedelta(days=1)
        else:
            start = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]),
                             int(g["S"] or 0), tzinfo=zone)
            fraction = g["f"] or ""
            if fraction:
                start += timedelta(microseconds=int(fraction[1:7].ljust(6, "0")))
            end = start + (timedelta(minutes=1) if g["S"] is None else timedelta(
                microseconds=10 ** max(0, 6 - (len(fraction) - 1))) if fraction
                else timedelta(seconds=1))
    except (ValueError, OverflowError) as err:
        raise SearchError(f"{text!r} is not a valid date: {err}") from err
    if end is None:
        raise SearchError(f"{text!r} is out of range")
    # Aware arithmetic is wall-clock arithmetic: a London day is midnight to midnight
    # local time, 23 or 25 hours on the days the clocks change.
    return start.astimezone(UTC), end.astimezone(UTC)


def _offset(text: str) -> timezone:
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise SearchError(f"{text!r} is not a time zone offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_date(text: str) -> list[Bound]:
    """One ``date`` value with its prefix as bounds on an instant column."""
    prefix, value = (text[:2], text[2:]) if text[:2] in _PREFIXES else ("eq", text)
    start, end = date_range(value)
    match prefix:
        case "eq":
            return [Bound(">=", start), Bound("<", end)]
        case "ge":
            return [Bound(">=", start)]
        case "gt":
            return [Bound(">=", end)]
        case "lt":
            return [Bound("<", start)]
        case "le":
            return [Bound("<", end)]
    raise SearchError(f"the date prefix {prefix!r} is not supported (eq, gt, lt, ge, le are)")


# -- the cursor ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: the sort key of its first entry, the part of that
    entry's reading to start from, and the time the search began (``as_of``)."""

    key: tuple[str, ...]
    part: int
    as_of: datetime

    def encode(self) -> str:
        raw = orjson.dumps({"k": list(self.key), "p": self.part, "a": self.as_of.isoformat()})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            key = tuple(str(k) for k in data["k"])
            part, as_of = int(data["p"]), datetime.fromisoformat(data["a"])
            if as_of.tzinfo is None or not 0 <= part < 16 or not 1 <= len(key) <= 4:
                raise ValueError("out of range")
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as err:
            raise SearchError(f"{CURSOR} is not one this server gave: start the search "
                              "again") from err
        return cls(key, part, as_of)


# -- a whole search ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Search:
    """A parsed search: each supported parameter's values (one list per repetition,
    each a list of comma-separated alternatives), the page, and what was ignored."""

    resource_type: str
    params: Mapping[str, Sequence[Sequence[str]]]
    count: int = DEFAULT_COUNT
    descending: bool = False
    cursor: Cursor | None = None
    ignored: tuple[str, ...] = ()
    #: The query items that define this search (the ignored left out), in order.
    kept: tuple[tuple[str, str], ...] = field(default=())

    def values(self, name: str) -> list[list[str]]:
        return [list(v) for v in self.params.get(name, ())]

    def patients(self) -> list[list[int]]:
        """``patient`` and ``subject`` as patient ids, AND of ORs."""
        return [[parse_reference(v) for v in alts]
                for name in ("patient", "subject") for alts in self.values(name)]

    def link(self, base: str, cursor: Cursor | None) -> str:
        """This search's URL with the page at ``cursor`` (None: the first page)."""
        items = [(k, v) for k, v in self.kept if k != CURSOR]
        if cursor is not None:
            items.append((CURSOR, cursor.encode()))
        return f"{base}/{self.resource_type}" + (f"?{urlencode(items)}" if items else "")


def parse(resource_type: str, items: Iterable[tuple[str, str]], *, strict: bool) -> Search:
    """Check a query string's items against what ``resource_type`` supports."""
    supported = {p.name: p for p in SUPPORTED[resource_type]}
    params: dict[str, list[list[str]]] = {}
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    count, descending, cursor = DEFAULT_COUNT, False, None
    for key, value in items:
        name, _, modifier = key.partition(":")
        if key in RESULT_PARAMS:
            if key == "_count":
                count = _count(value)
            elif key == "_sort":
                descending = _sort(resource_type, value)
            elif key == "_format" and value not in _JSON_FORMATS:
                raise SearchError(f"_format {value!r}: this server speaks JSON only")
            elif key == CURSOR:
                cursor = Cursor.decode(value)
        elif name not in supported or modifier:
            if strict:
                what = "modifier" if name in supported else "parameter"
                raise SearchError(f"{resource_type} search {what} {key!r} is not supported "
                                  f"(supported: {', '.join(sorted(supported))})")
            ignored.append(key)
            continue
        else:
            alternatives = value.split(",")
            _check(supported[name], alternatives)
            params.setdefault(name, []).append(alternatives)
        kept.append((key, value))
    return Search(resource_type, params, count, descending, cursor, tuple(ignored), tuple(kept))


def _count(value: str) -> int:
    """A whole number, taken as 1 to MAX_COUNT (a server may return fewer than asked)."""
    digits = value[1:] if value[:1] in "+-" else value
    if not digits.isascii() or not digits.isdigit() or len(digits) > 100:
        raise SearchError(f"_count {value!r} is not a whole number")
    return max(1, min(int(value), MAX_COUNT))


def _sort(resource_type: str, value: str) -> bool:
    allowed = SORTS.get(resource_type, ())
    if value not in allowed:
        raise SearchError(f"_sort {value!r} is not supported for {resource_type}"
                          + (f" ({' or '.join(allowed)})" if allowed else ""))
    return value.startswith("-")


def _check(param: Param, alternatives: list[str]) -> None:
    """Refuse a bad value now, whatever the handling (a search must not half-apply)."""
    for value in alternatives:
        if param.type == "date":
            if len(alternatives) > 1:
                raise SearchError(f"{param.name}: one date per parameter; repeat it to AND")
            parse_date(value)
        elif param.type == "reference":
            parse_reference(value)
        else:
            parse_token(value)


def date_bounds(search: Search, name: str) -> list[Bound]:
    return [b for alts in search.values(name) for v in alts for b in parse_date(v)]


def tokens(search: Search, name: str) -> list[list[Token]]:
    return [[parse_token(v) for v in alts] for alts in search.values(name)]


def concept_matches(concepts: Iterable[Mapping[str, Any]], token: Token) -> bool:
    """Whether any coding of ``concepts`` matches ``token`` (3.1.1.4.8)."""
    for concept in concepts:
        for coding in concept.get("coding", ()):
            if coding.get("code") != token.code:
                continue
            if token.system is None or (coding.get("system") or "") == token.system:
                return True
    return False
