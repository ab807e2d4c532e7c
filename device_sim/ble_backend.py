"""The simulator as a named BLE backend for the edge agent.

Published as the entry point ``sim`` in the group ``homeward.ble_backends``
(pyproject.toml), so ``homeward edge --ble sim`` finds it by name and the
edge never names this package.  The edge reads three attributes: the bleak
scanner and client classes, and a factory for an in-process virtual radio.
"""

from __future__ import annotations

from device_sim.backend import SimBleakClient, SimBleakScanner
from device_sim.radio import VirtualRadio

scanner = SimBleakScanner
client = SimBleakClient


def virtual_radio(radio_id: str) -> VirtualRadio:
    """A new in-process virtual radio that the sim scanner and client find by ``radio_id``."""
    return VirtualRadio(radio_id)
