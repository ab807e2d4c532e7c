"""RACP download rate: a virtual glucose meter's stored records through the edge's real
bleak code (``homeward bench sim-racp``)."""

from __future__ import annotations


async def download_records(records: int) -> float:
    import asyncio
    import time
    from datetime import timedelta

    from device_sim.radio import VirtualRadio
    from edge.ble import BleCollector, BleTiming, resolve_backend
    from homeward.kinds import Kind
    from homeward.wire import PairedDevice

    received = 0
    done = asyncio.Event()

    async def count(address: str, measurement: object, raw: bytes) -> None:
        nonlocal received
        received += 1
        if received == records:
            done.set()

    with VirtualRadio("bench-racp", advertising_interval_s=0.001) as radio:
        meter = radio.add_device(Kind.GLUCOSE)
        meter.store_records(records, every=timedelta(minutes=5))
        started = time.perf_counter()
        async with BleCollector([PairedDevice(address=meter.address, kind=Kind.GLUCOSE)], count,
                                backend=resolve_backend("sim", sim_radio="bench-racp"),
                                timing=BleTiming(reconnect_initial_s=0.01)):
            await done.wait()
            return time.perf_counter() - started

