"""Rotas in and out of the database (``rota_shift``): import replaces, export reads.

An import is all or nothing (one transaction).  For each team in the file it
replaces the team's shifts that start inside the file's span for that team
(from its first start to its last end), so importing the same file twice, or
an export of a span and then that export again, leaves the same rota.  A row
naming a shift (``date`` + ``shift``) is resolved through ``team_shift`` in the
shift's time zone; one whose end is before its start ends the next day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from server.admin import Invalid, NotFound
from server.rota_io import RotaEntry


@dataclass(frozen=True)
class RotaImport:
    shifts: int
    replaced: int
    teams: tuple[str, ...]


def _resolve_named(conn: psycopg.Connection[Any], e: RotaEntry) -> RotaEntry:
    row = conn.execute("SELECT starts, ends, timezone FROM team_shift WHERE team_id = %s"
                       " AND name = %s", (e.team, e.shift)).fetchone()
    if row is None:
        raise NotFound(f"{e.where}: team {e.team!r} has no shift {e.shift!r} "
                       "(define it with `homeward admin team shift`)")
    starts, ends, zone = row
    assert e.on_date is not None
    tz = ZoneInfo(zone)
    start = datetime.combine(e.on_date, starts, tz)
    end = datetime.combine(e.on_date + timedelta(days=1 if ends <= starts else 0), ends, tz)
    return replace(e, starts_at=start.astimezone(UTC), ends_at=end.astimezone(UTC))


def import_rota(conn: psycopg.Connection[Any], entries: list[RotaEntry]) -> RotaImport:
    """Check every row (teams, active clinicians, named shifts), then replace."""
    if not entries:
        return RotaImport(0, 0, ())
    with conn.transaction():
        teams = {e.team for e in entries}
        known = {r[0] for r in conn.execute("SELECT id FROM team WHERE id = ANY(%s)",
                                            (sorted(teams),))}
        for e in entries:
            if e.team not in known:
                raise NotFound(f"{e.where}: unknown team {e.team!r}")
        people = {r[0]: (int(r[1]), bool(r[2])) for r in conn.execute(
            "SELECT username, id, active FROM clinician WHERE username = ANY(%s)",
            (sorted({e.clinician for e in entries}),))}
        resolved = []
        for e in entries:
            if e.clinician not in people:
                raise NotFound(f"{e.where}: unknown clinician {e.clinician!r}")
            if not people[e.clinician][1]:
                raise Invalid(f"{e.where}: clinician {e.clinician!r} is deactivated")
            resolved.append(_resolve_named(conn, e) if e.starts_at is None else e)
        seen: set[tuple[str, str, int, datetime]] = set()
        spans: dict[str, tuple[datetime, datetime]] = {}
        for e in resolved:
            assert e.starts_at is not None and e.ends_at is not None
            key = (e.team, e.clinician, e.level, e.starts_at)
            if key in seen:
                raise Invalid(f"{e.where}: the same shift appears twice")
            seen.add(key)
            lo, hi = spans.get(e.team, (e.starts_at, e.ends_at))
            spans[e.team] = (min(lo, e.starts_at), max(hi, e.ends_at))
        replaced = 0
        for team, (lo, hi) in spans.items():
            replaced += conn.execute("DELETE FROM rota_shift WHERE team_id = %s AND"
                                     " starts_at >= %s AND starts_at < %s",
                                     (team, lo, hi)).rowcount
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rota_shift (team_id, clinician_id, level, starts_at, ends_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(e.team, people[e.clinician][0], e.level, e.starts_at, e.ends_at)
                 for e in resolved])
    return RotaImport(len(resolved), replaced, tuple(sorted(spans)))


def export_rota(conn: psycopg.Connection[Any], *, start: datetime, end: datetime,
                teams: list[str] | None = None) -> list[RotaEntry]:
    """The shifts starting in ``[start, end)`` (of ``teams``, or every team), in order."""
    by_team: dict[str, list[RotaEntry]] = defaultdict(list)
    if teams:
        known = {r[0] for r in conn.execute("SELECT id FROM team WHERE id = ANY(%s)",
                                            (teams,))}
        missing = [t for t in teams if t not in known]
        if missing:
            raise NotFound(f"unknown team {missing[0]!r}")
    rows = conn.execute(
        "SELECT s.team_id, c.username, s.level, s.starts_at, s.ends_at FROM rota_shift s"
        " JOIN clinician c ON c.id = s.clinician_id WHERE s.starts_at >= %s"
        " AND s.starts_at < %s AND (%s::text[] IS NULL OR s.team_id = ANY(%s))"
        " ORDER BY s.team_id, s.starts_at, s.level, c.username",
        (start, end, teams or None, teams or None)).fetchall()
    for team, username, level, starts_at, ends_at in rows:
        by_team[team].append(RotaEntry(team, username, int(level),
                                       starts_at.astimezone(UTC), ends_at.astimezone(UTC)))
    return [e for team in sorted(by_team) for e in by_team[team]]
