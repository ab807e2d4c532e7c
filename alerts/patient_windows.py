"""Each patient's recent readings in memory, so that a reading is read from the database once.

The engine that holds a patient's bucket (:mod:`alerts.partitions`) is the only one that
evaluates the patient, and every reading of the patient reaches it through the
evaluation queue (ingest, and the back-fill of a late enrolment, queue every reading
they store or attribute).  So after loading a patient's recent readings once, the
engine keeps them current by adding the readings it claims; it never has to read the
window again.  Per reading kind ``since`` says from when the copy is complete: a
reading older than that (a hub's backlog, a late enrolment) makes the engine load the
patient afresh, further back.

What is kept: per kind, the readings newer than ``newest - keep[kind] - slack``, ``newest``
being the newest reading of the patient claimed so far and ``keep`` the longest window of
the rules that read the kind; so a reading up to ``slack`` older than the newest (readings
of one hub's batch, several devices) still finds its window in memory.  The copy is
thrown away whole when anything could have made it wrong: a new database session (the
bucket locks were lost), a bucket newly taken (another engine may have evaluated those
patients), a failed batch (its transaction rolled back).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts.model import WindowReading
from alerts.partitions import bucket_of


@dataclass(slots=True)
class KindReadings:
    """One kind's readings of a patient, sorted by (taken_at, id)."""

    rows: list[WindowReading] = field(default_factory=list)
    stamps: list[datetime] = field(default_factory=list)

    def add(self, r: WindowReading) -> None:
        stamps, rows = self.stamps, self.rows
        pos = len(stamps)
        if pos and stamps[-1] >= r.taken_at:  # not simply the newest: find its place
            pos = bisect.bisect_right(stamps, r.taken_at)
            while pos and stamps[pos - 1] == r.taken_at and rows[pos - 1].id > r.id:
                pos -= 1
        rows.insert(pos, r)
        stamps.insert(pos, r.taken_at)

    def drop_before(self, t: datetime) -> list[WindowReading]:
        """Forget the readings taken before ``t``; the ones forgotten."""
        n = bisect.bisect_left(self.stamps, t)
        gone = self.rows[:n]
        del self.rows[:n], self.stamps[:n]
        return gone


@dataclass(slots=True)
class PatientReadings:
    """One patient's readings, complete per kind from ``since``: all of them, and per kind.

    All of them sorted by (taken_at, id), and each kind's on its own as well, so that a
    rule's window is a slice of its kind's list (``SliceView``), not a filtered copy of
    every reading of every kind; a window of several kinds that spans few readings is
    still cheapest filtered from all of them."""

    since: dict[str, datetime]
    #: the newest reading claimed for evaluation (not merely loaded)
    newest: datetime | None = None
    every: KindReadings = field(default_factory=KindReadings)
    kinds: dict[str, KindReadings] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.every.rows)

    def _of_kind(self, kind: str) -> KindReadings:
        readings = self.kinds.get(kind)
        if readings is None:
            readings = self.kinds[kind] = KindReadings()
        return readings

    def add(self, r: WindowReading) -> bool:
        if r.id in self.ids:
            return False
        self.ids.add(r.id)
        self._of_kind(r.kind).add(r)
        self.every.add(r)
        return True

    def append(self, r: WindowReading) -> None:
        """A reading newer than (or as new as, with a greater id) every one held."""
        self.ids.add(r.id)
        kind = self._of_kind(r.kind)
        kind.rows.append(r)
        kind.stamps.append(r.taken_at)
        self.every.rows.append(r)
        self.every.stamps.append(r.taken_at)

    def covers(self, kind: str, start: datetime) -> bool:
        since = self.since.get(kind)
        return since is not None and since <= start

    def oldest(self) -> datetime | None:
        return self.every.stamps[0] if self.every.stamps else None

    def trim(self, horizon: dict[str, datetime], earliest: datetime) -> None:
        """Forget readings of each kind older than its horizon (``earliest``: the lowest).

        ``since`` moves up only when readings are dropped: until then the copy stays
        complete from where it was."""
        oldest = self.oldest()
        if oldest is None or oldest >= earliest:
            return
        for kind, h in horizon.items():
            if self.since.get(kind, h) < h:
                self.since[kind] = h
            readings = self.kinds.get(kind)
            if readings is not None:
                self.ids.difference_update(r.id for r in readings.drop_before(h))
        keep = [r for r in self.every.rows if r.id in self.ids]
        self.every = KindReadings(keep, [r.taken_at for r in keep])


@dataclass
class PatientWindows:
    """The in-memory readings of the patients this engine evaluates."""

    #: reading kind -> how much history of it any rule reads
    keep: dict[str, timedelta]
    slack: timedelta = timedelta(hours=1)
    #: Bounds on memory: past either, the patients loaded longest ago are forgotten (and
    #: loaded again when next needed).  About 0.5 KB a reading.
    max_patients: int = 100_000
    max_readings: int = 2_000_000
    patients: dict[int, PatientReadings] = field(default_factory=dict)
    readings: int = 0
    _longest: timedelta = field(default=timedelta(0), repr=False)

    def __post_init__(self) -> None:
        self._longest = max(self.keep.values(), default=timedelta(0))

    def clear(self) -> None:
        self.patients.clear()
        self.readings = 0

    def drop_buckets(self, buckets: set[int]) -> None:
        for pid in [p for p in self.patients if bucket_of(p) in buckets]:
            self.readings -= self.patients.pop(pid).count

    def get(self, pid: int) -> PatientReadings | None:
        return self.patients.get(pid)

    def load(self, conn: psycopg.Connection[Any], starts: dict[int, datetime],
             batch: Iterable[int] = ()) -> None:
        """(Re)load each patient's readings of every kept kind from ``start - keep[kind]``.

        One query for the whole batch; it sees every committed reading, so readings still
        waiting in the queue come too (they are not added twice when claimed)."""
        if not starts:
            return
        batch = list(batch)
        kinds = sorted(self.keep)
        pids = list(starts)
        fresh = {pid: PatientReadings({k: starts[pid] - self.keep[k] for k in kinds})
                 for pid in pids}
        for pid, rid, kind, taken_at, values, flags in conn.execute(
                "SELECT r.patient_id, r.id::text, r.kind, r.taken_at, r.\"values\", r.flags"
                " FROM unnest(%s::bigint[], %s::timestamptz[]) AS p(pid, t)"
                " CROSS JOIN unnest(%s::text[], %s::interval[]) AS k(kind, keep)"
                " JOIN reading r ON r.patient_id = p.pid AND r.kind = k.kind"
                " AND r.taken_at >= p.t - k.keep ORDER BY r.patient_id, r.taken_at, r.id",
                (int_array(pids), time_array(starts[p] for p in pids), kinds,
                 [self.keep[k] for k in kinds])).fetchall():  # rows made in C, not one by one
            # in (taken_at, id) order, as the query's
            fresh[pid].append(WindowReading(rid, kind, taken_at, values, tuple(flags)))
        for pid, readings in fresh.items():
            old = self.patients.pop(pid, None)
            self.readings += readings.count - (old.count if old is not None else 0)
            self.patients[pid] = readings
        self._evict(set(fresh) | set(batch))

    def _evict(self, batch: set[int]) -> None:
        """Within the bounds again: the patients loaded longest ago go first, never one of
        the batch being evaluated."""
        for pid in list(self.patients):
            if len(self.patients) <= self.max_patients and self.readings <= self.max_readings:
                return
            if pid not in batch:
                self.readings -= self.patients.pop(pid).count

    def claimed(self, pid: int, reading: WindowReading) -> None:
        """A reading claimed for evaluation (the patient's readings are loaded)."""
        readings = self.patients[pid]
        self.readings += readings.add(reading)
        if readings.newest is None or reading.taken_at > readings.newest:
            readings.newest = reading.taken_at

    def trim(self, pids: Iterable[int]) -> None:
        for pid in pids:
            readings = self.patients.get(pid)
            if readings is not None and readings.newest is not None:
                edge = readings.newest - self.slack
                oldest = readings.oldest()
                if oldest is not None and oldest < edge - self._longest:
                    before = readings.count
                    readings.trim({k: edge - v for k, v in self.keep.items()},
                                  edge - self._longest)
                    self.readings -= before - readings.count


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal (one C-speed join instead of psycopg's per-item dumping)."""
    return "{" + ",".join(map(str, values)) + "}"


def time_array(values: Iterable[datetime]) -> str:
    return "{" + ",".join(v.isoformat() for v in values) + "}"
