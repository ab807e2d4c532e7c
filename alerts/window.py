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

    def of_kind(self, *kinds: str) -> tuple[WindowReading, ...]:
        if not kinds:
            return self.readings
        return tuple(r for r in self.readings if r.kind in kinds)
