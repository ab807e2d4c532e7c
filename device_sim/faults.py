"""Faults as data: what can go wrong with a virtual device, and when.

A peripheral takes a list of ``Fault`` values; each fires ``times`` times
(0 = every time its condition holds).  State faults (``wrong_clock``,
``low_battery``, ``out_of_range``) apply as soon as the peripheral is made.

| name | effect |
|---|---|
| ``disconnect_during_read`` | the link drops on read number ``after_reads`` + 1 of a connection |
| ``disconnect_during_racp`` | the link drops after ``after_records`` records of a RACP transfer |
| ``malformed_packet`` | the next measurement is ``payload`` (default: its first 3 bytes) |
| ``connect_fails`` | a connection attempt is refused |
| ``slow_indications`` | every notification/indication waits ``delay_s`` first |
| ``reject_time_write`` | writing Current Time fails with ATT error 0x80 (seen on Omron cuffs) |
| ``wrong_clock`` | the device clock is off by ``clock_offset_s`` seconds |
| ``low_battery`` | battery level ``battery`` percent |
| ``out_of_range`` | not advertising, connections fail |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultName = Literal[
    "disconnect_during_read",
    "disconnect_during_racp",
    "malformed_packet",
    "connect_fails",
    "slow_indications",
    "reject_time_write",
    "wrong_clock",
    "low_battery",
    "out_of_range",
]


@dataclass(frozen=True, slots=True)
class Fault:
    name: FaultName
    after_reads: int = 0
    after_records: int = 0
    #: how many times the fault fires; 0 means every time
    times: int = 1
    delay_s: float = 0.0
    payload: bytes | None = None
    clock_offset_s: float = 0.0
    battery: int = 5


class ArmedFaults:
    """The faults of one peripheral with how many firings each has left."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self._remaining: list[tuple[Fault, int | None]] = [
            (f, None if f.times == 0 else f.times) for f in faults
        ]

    def add(self, fault: Fault) -> None:
        self._remaining.append((fault, None if fault.times == 0 else fault.times))

    def find(self, name: FaultName) -> Fault | None:
        """The first armed fault of that name, without firing it."""
        for fault, left in self._remaining:
            if fault.name == name and (left is None or left > 0):
                return fault
        return None

    def fire(self, fault: Fault) -> None:
        for i, (f, left) in enumerate(self._remaining):
            if f is fault and left is not None:
                self._remaining[i] = (f, left - 1)
                return

    def take(self, name: FaultName) -> Fault | None:
        """Find and fire in one step."""
        fault = self.find(name)
        if fault is not None:
            self.fire(fault)
        return fault
