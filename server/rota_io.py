"""Rotas as files: CSV or YAML, read and written without a database.

A row puts one clinician (by username) on one team's rota at one escalation
level for one span, given either as two instants or as a date and the name of
one of the team's shifts (``homeward admin team shift``)::

    team,clinician,level,starts_at,ends_at,date,shift
    copd,alice,0,2026-03-02T08:00:00+00:00,2026-03-02T18:30:00+00:00,,
    copd,bob,1,,,2026-03-02,night

or in YAML, ``shifts:`` holding a list of mappings with the same keys.  An
export always writes instants (UTC), so what it writes reads back as itself.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import yaml

Format = Literal["csv", "yaml"]
COLUMNS = ("team", "clinician", "level", "starts_at", "ends_at", "date", "shift")


class RotaError(ValueError):
    """A rota file that cannot be read, with the row it is about."""


@dataclass(frozen=True, slots=True)
class RotaEntry:
    team: str
    clinician: str
    level: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    on_date: date | None = None
    shift: str | None = None
    #: Where in the file (``line 3``, ``shifts[2]``), for messages.
    where: str = ""


def _instant(value: Any, where: str, key: str) -> datetime:
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise RotaError(f"{where}: {key} {value!r} is not a date and time") from None
    if at.tzinfo is None:
        raise RotaError(f"{where}: {key} {value!r} needs a UTC offset (e.g. +00:00)")
    return at


def entry(raw: dict[str, Any], where: str) -> RotaEntry:
    """One row from a mapping of the file's keys (empty values are absent)."""
    values = {k: v for k, v in raw.items() if v not in (None, "")}
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise RotaError(f"{where}: unknown columns {sorted(unknown)}; use {', '.join(COLUMNS)}")
    for key in ("team", "clinician"):
        if key not in values:
            raise RotaError(f"{where}: {key} is missing")
    try:
        level = int(values.get("level", 0))
    except (TypeError, ValueError):
        raise RotaError(f"{where}: level {values['level']!r} is not a number") from None
    if level < 0:
        raise RotaError(f"{where}: level must be 0 or more")
    spans = "starts_at" in values or "ends_at" in values
    named = "date" in values or "shift" in values
    if spans == named:
        raise RotaError(f"{where}: give either starts_at and ends_at, or date and shift")
    if spans:
        if "starts_at" not in values or "ends_at" not in values:
            raise RotaError(f"{where}: give both starts_at and ends_at")
        start = _instant(values["starts_at"], where, "starts_at")
        end = _instant(values["ends_at"], where, "ends_at")
        if end <= start:
            raise RotaError(f"{where}: ends_at must be after starts_at")
        return RotaEntry(str(values["team"]), str(values["clinician"]), level, start, end,
                         where=where)
    if "date" not in values or "shift" not in values:
        raise RotaError(f"{where}: give both date and shift")
    day = values["date"]
    if not isinstance(day, date):
        try:
            day = date.fromisoformat(str(day))
        except ValueError:
            raise RotaError(f"{where}: date {values['date']!r} is not YYYY-MM-DD") from None
    return RotaEntry(str(values["team"]), str(values["clinician"]), level, on_date=day,
                     shift=str(values["shift"]), where=where)


def parse_rota(text: str, fmt: Format) -> list[RotaEntry]:
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise RotaError("the CSV file is empty (it needs a header row)")
        missing = {"team", "clinician"} - set(reader.fieldnames)
        if missing:
            raise RotaError(f"the CSV header lacks {sorted(missing)}; columns: "
                            + ", ".join(COLUMNS))
        return [entry(dict(row), f"line {reader.line_num}") for row in reader]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RotaError(f"not YAML: {err}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("shifts"), list):
        raise RotaError("a YAML rota is a mapping with a 'shifts' list")
    out = []
    for n, item in enumerate(doc["shifts"]):
        if not isinstance(item, dict):
            raise RotaError(f"shifts[{n}]: a shift is a mapping")
        out.append(entry(item, f"shifts[{n}]"))
    return out


def _iso(at: datetime | None) -> str:
    return "" if at is None else at.isoformat()


def format_rota(entries: Iterable[RotaEntry], fmt: Format) -> str:
    rows = [{"team": e.team, "clinician": e.clinician, "level": e.level,
             "starts_at": _iso(e.starts_at), "ends_at": _iso(e.ends_at),
             "date": e.on_date.isoformat() if e.on_date else "", "shift": e.shift or ""}
            for e in entries]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    return yaml.safe_dump({"shifts": [{k: v for k, v in r.items() if v != ""} for r in rows]},
                          sort_keys=False)


def format_of(path: str) -> Format:
    """The format a file's name says (``.csv``, ``.yaml``/``.yml``)."""
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    raise RotaError(f"cannot tell the format of {path!r}: name it .csv or .yaml, or give "
                    "--format")
