"""A virtual radio: the peripherals one hub can hear.

Several radios coexist in one process (the demo runs many homes, each a real
edge agent).  Each radio has an id and registers itself in a process-wide
table; the bleak backend (``device_sim.backend``) finds its radio from the
``sim_radio="<id>"`` keyword argument that ``BleakScanner(...)`` and
``BleakClient(...)`` pass through to the backend.  The edge passes its hub id
(or whatever ``sim_radio`` it was given) there, so home A's agent never sees
home B's cuff.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from device_sim.faults import Fault
from device_sim.peripheral import Clock, VirtualPeripheral
from device_sim.scenarios import Deteriorating, Scenario, Steady
from homeward.kinds import Kind

DEFAULT_RADIO = "default"

#: How often a simulated device advertises.  Real health devices advertise
#: every 100 ms to 1 s; short keeps the simulation (and the tests) fast.
DEFAULT_ADVERTISING_INTERVAL_S = 0.05

_RADIOS: dict[str, VirtualRadio] = {}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class UnknownRadio(LookupError):
    pass


class VirtualRadio:
    def __init__(
        self,
        radio_id: str = DEFAULT_RADIO,
        *,
        advertising_interval_s: float = DEFAULT_ADVERTISING_INTERVAL_S,
        clock: Clock = _utc_now,
        seed: int = 0,
    ) -> None:
        if radio_id in _RADIOS:
            raise ValueError(f"a virtual radio {radio_id!r} already exists; close() it first")
        self.radio_id = radio_id
        self.advertising_interval_s = advertising_interval_s
        self.clock = clock
        self._rng = random.Random(f"{radio_id}/{seed}")  # noqa: S311 -- reproducible
        self._peripherals: dict[str, VirtualPeripheral] = {}
        _RADIOS[radio_id] = self

    @staticmethod
    def lookup(radio_id: str) -> VirtualRadio:
        try:
            return _RADIOS[radio_id]
        except KeyError:
            raise UnknownRadio(f"no virtual radio {radio_id!r}; create VirtualRadio({radio_id!r})"
                               ) from None

    def close(self) -> None:
        if _RADIOS.get(self.radio_id) is self:
            del _RADIOS[self.radio_id]

    def __enter__(self) -> VirtualRadio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ peripherals

    def new_address(self) -> str:
        """A random static address (top two bits set), stable for a given radio id and seed."""
        octets = [self._rng.randrange(256) for _ in range(6)]
        octets[0] |= 0xC0
        return ":".join(f"{o:02X}" for o in octets)

    def add(self, peripheral: VirtualPeripheral) -> VirtualPeripheral:
        peripheral.clock = lambda: self.clock()  # follows later changes of radio.clock
        self._peripherals[peripheral.address] = peripheral
        return peripheral

    def add_device(
        self,
        kind: Kind,
        *,
        address: str | None = None,
        scenario: Scenario | None = None,
        deteriorating: bool = False,
        faults: Iterable[Fault] = (),
        seed: int | None = None,
        **options: object,
    ) -> VirtualPeripheral:
        """Make and add one device; ``deteriorating=True`` uses a ``Deteriorating`` scenario."""
        seed = self._rng.randrange(2**31) if seed is None else seed
        if scenario is None:
            scenario = Deteriorating(kind, seed=seed) if deteriorating else Steady(kind, seed=seed)
        peripheral = VirtualPeripheral(
            kind, address or self.new_address(), scenario=scenario, faults=faults,
            seed=seed, **options,  # type: ignore[arg-type]
        )
        return self.add(peripheral)

    def remove(self, address: str) -> None:
        peripheral = self._peripherals.pop(address.upper(), None)
        if peripheral is not None:
            peripheral.set_in_range(False)

    def get(self, address: str) -> VirtualPeripheral | None:
        return self._peripherals.get(address.upper())

    def __iter__(self) -> Iterator[VirtualPeripheral]:
        return iter(list(self._peripherals.values()))

    def __len__(self) -> int:
        return len(self._peripherals)

    def advertisers(self) -> list[VirtualPeripheral]:
        return [p for p in self._peripherals.values() if p.advertising]

    # ------------------------------------------------------------ driving

    def measure_all(self) -> int:
        """Every in-range device takes one reading; returns how many did."""
        count = 0
        for peripheral in self:
            if peripheral.in_range:
                peripheral.measure()
                count += 1
        return count

    async def run(self, every: timedelta, *, readings: int | None = None) -> None:
        """Take a reading on every device each ``every`` (forever, or ``readings`` times)."""
        taken = 0
        while readings is None or taken < readings:
            await asyncio.sleep(every.total_seconds())
            self.measure_all()
            taken += 1
