"""What an evaluator sees: a patient's recent readings plus the state of their hub and devices."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import overload

from alerts.model import WindowReading, frozen_mapping


@dataclass(frozen=True, slots=True)
class DeviceView:
    address: str
    kind: str
    battery: float | None = None      # percent, from the hub's retained status
    last_seen: datetime | None = None


class SliceView(Sequence[WindowReading]):
    """``rows[lo:hi]`` without the copy: a window of one kind over the engine's list of that
    kind's readings, so that a rule reading only the newest few (a threshold, NEWS2) costs
    the same whatever the window's length (a day of 1 Hz oximetry is 86,400 readings).
    Valid while the list is not changed (the engine builds and uses it in one step)."""

    __slots__ = ("_hi", "_lo", "_rows")

    def __init__(self, rows: list[WindowReading], lo: int, hi: int) -> None:
        self._rows, self._lo, self._hi = rows, lo, hi

    def __len__(self) -> int:
        return self._hi - self._lo

    @overload
    def __getitem__(self, i: int) -> WindowReading: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[WindowReading, ...]: ...

    def __getitem__(self, i: int | slice) -> WindowReading | tuple[WindowReading, ...]:
        span = range(self._lo, self._hi)[i]
        if isinstance(span, range):
            if span.step == 1:
                return tuple(self._rows[span.start:span.stop])
            return tuple(self._rows[j] for j in span)
        return self._rows[span]

    def __iter__(self) -> Iterator[WindowReading]:
        return iter(self._rows[self._lo:self._hi])

    def __reversed__(self) -> Iterator[WindowReading]:
        rows = self._rows
        return (rows[j] for j in range(self._hi - 1, self._lo - 1, -1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SliceView({list(self)!r})"


def order_key(r: WindowReading, judged: str | None) -> tuple[datetime, bool, str]:
    """A window's order: by taken_at, the reading being judged last among those stamped
    the same instant (two readings of a second are each judged as the latest once), then
    by id."""
    return (r.taken_at, r.id == judged, r.id)


class Merged(Sequence[WindowReading]):
    """Several kinds' views as one sequence in window order, merged on first use only: an
    evaluator that reads each kind's newest through ``Window.by_kind`` never pays for it."""

    __slots__ = ("_judged", "_rows", "_views")

    def __init__(self, views: Sequence[Sequence[WindowReading]], judged: str | None) -> None:
        self._views, self._judged = views, judged
        self._rows: tuple[WindowReading, ...] | None = None

    def _all(self) -> tuple[WindowReading, ...]:
        if self._rows is None:
            judged = self._judged
            self._rows = tuple(heapq.merge(*self._views, key=lambda r: order_key(r, judged)))
        return self._rows

    def __len__(self) -> int:
        return sum(len(v) for v in self._views)

    @overload
    def __getitem__(self, i: int) -> WindowReading: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[WindowReading, ...]: ...

    def __getitem__(self, i: int | slice) -> WindowReading | tuple[WindowReading, ...]:
        return self._all()[i]

    def __iter__(self) -> Iterator[WindowReading]:
        return iter(self._all())

    def __reversed__(self) -> Iterator[WindowReading]:
        return reversed(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self._all() == tuple(other)

    def __hash__(self) -> int:
        return hash(self._all())


_NOTHING: Mapping[str, object] = frozen_mapping()


@dataclass(frozen=True, slots=True)
class Window:
    """Readings sorted by ``taken_at`` (oldest first) and the context around them."""

    readings: Sequence[WindowReading] = ()
    hub_id: str | None = None
    hub_state: str | None = None          # 'online' / 'offline' / 'unknown'
    hub_state_at: datetime | None = None  # when the hub's current state was reported
    hub_last_seen: datetime | None = None
    devices: tuple[DeviceView, ...] = ()
    #: When the patient started being monitored (for missed-reading rules).
    monitored_since: datetime | None = None
    extra: Mapping[str, object] = field(default_factory=lambda: _NOTHING)  # one, shared
    #: When set, every reading is of one of these kinds (the engine builds a rule's window
    #: of the rule's kinds): ``of_kind`` of them all is then the readings themselves.
    only_kinds: tuple[str, ...] | None = None
    #: When set (the engine's windows), each kind's readings, oldest first, and
    #: ``readings`` is their merge: a rule reading the newest of each kind (NEWS2) walks
    #: back from each kind's end instead of through every reading of every kind.
    by_kind: Mapping[str, Sequence[WindowReading]] | None = None
    #: The reading being judged, in the engine's windows (see :func:`order_key`).
    judged: str | None = None

    def of_kind(self, *kinds: str) -> Sequence[WindowReading]:
        if self.by_kind is not None and len(kinds) == 1:
            return self.by_kind.get(kinds[0], ())
        if not kinds or (self.only_kinds is not None
                         and all(k in kinds for k in self.only_kinds)):
            return self.readings
        return tuple(r for r in self.readings if r.kind in kinds)
