"""What an evaluator sees: a patient's recent readings plus the state of their hub and devices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from alerts.model import WindowReading, frozen_mapping


@dataclass(frozen=True, slots=True)
class DeviceView:
    address: str
    kind: str
    battery: float | None = None      # percent, from the hub's retained status
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """Readings sorted by ``taken_at`` (oldest first) and the context around them."""

    readings: tuple[WindowReading, ...] = ()
    hub_id: str | None = None
    hub_state: str | None = None          # 'online' / 'offline' / 'unknown'
    hub_state_at: datetime | None = None  # when the hub's current state was reported
    hub_last_seen: datetime | None = None
    devices: tuple[DeviceView, ...] = ()
    #: When the patient started being monitored (for missed-reading rules).
    monitored_since: datetime | None = None
    extra: Mapping[str, object] = field(default_factory=frozen_mapping)
    #: When set, every reading is of one of these kinds (the engine builds a rule's window
    #: of the rule's kinds): ``of_kind`` of them all is then the readings themselves.
    only_kinds: tuple[str, ...] | None = None

    def of_kind(self, *kinds: str) -> tuple[WindowReading, ...]:
        if not kinds or (self.only_kinds is not None
                         and all(k in kinds for k in self.only_kinds)):
            return self.readings
        return tuple(r for r in self.readings if r.kind in kinds)
