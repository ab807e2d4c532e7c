"""Simulator commands: ``homeward sim watch`` and ``homeward bench sim-racp``."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    sim = typer.Typer(help="Virtual BLE health devices.", no_args_is_help=True)
    app.add_typer(sim, name="sim")

    @sim.command("watch")
    def watch(
        blood_pressure: int = typer.Option(1, min=0, help="cuffs"),
        spo2: int = typer.Option(0, min=0, help="pulse oximeters"),
        temperature: int = typer.Option(0, min=0, help="thermometers"),
        weight: int = typer.Option(0, min=0, help="scales"),
        glucose: int = typer.Option(0, min=0, help="glucose meters"),
        stored: int = typer.Option(0, min=0, help="stored records per device at start"),
        deteriorating: bool = typer.Option(False, help="patients get worse, reading by reading"),
        every: float = typer.Option(1.0, min=0.01, help="seconds between readings"),
        seconds: float = typer.Option(5.0, min=0.1, help="how long to run"),
        seed: int = typer.Option(0),
    ) -> None:
        """Run virtual devices and a real edge.ble collector in this process; print readings."""
        import asyncio

        asyncio.run(_watch({"blood_pressure": blood_pressure, "spo2": spo2,
                            "temperature": temperature, "weight": weight, "glucose": glucose},
                           stored, deteriorating, every, seconds, seed))

    @bench.command("sim-racp")
    def bench_racp(records: int = typer.Option(2000, min=1, max=65000)) -> None:
        """Stored-record download rate: virtual glucose meter -> bleak -> edge.ble -> edge.gatt."""
        import asyncio
        import sys

        elapsed = asyncio.run(_bench_racp(records))
        typer.echo(f"{records} RACP records downloaded and decoded in {elapsed:.3f} s: "
                   f"{records / elapsed:,.0f} records/s ({sys.executable})")


async def _watch(counts: dict[str, int], stored: int, deteriorating: bool, every: float,
                 seconds: float, seed: int) -> None:
    import asyncio
    from datetime import timedelta

    from device_sim.radio import VirtualRadio
    from edge.ble import BleCollector, resolve_backend
    from homeward.kinds import Kind
    from homeward.wire import PairedDevice

    async def show(address: str, measurement: object, raw: bytes) -> None:
        typer.echo(f"{address} {getattr(measurement, 'kind', '?')} "
                   f"{getattr(measurement, 'values', {})} raw={raw.hex()}")

    async def show_garbage(address: str, characteristic: int, raw: bytes, reason: str) -> None:
        typer.echo(f"{address} GARBAGE 0x{characteristic:04X} {raw.hex()}: {reason}")

    with VirtualRadio("sim-watch", seed=seed) as radio:
        for kind_name, count in counts.items():
            for _ in range(count):
                device = radio.add_device(Kind(kind_name), deteriorating=deteriorating)
                device.store_records(stored)
        paired = [PairedDevice(address=p.address, kind=p.kind, name=p.name) for p in radio]
        for p in paired:
            typer.echo(f"device {p.address} {p.kind} {p.name}")
        async with BleCollector(paired, show, on_garbage=show_garbage,
                                backend=resolve_backend("sim", sim_radio="sim-watch")) as c:
            driver = asyncio.create_task(radio.run(timedelta(seconds=every)))
            await asyncio.sleep(seconds)
            driver.cancel()
            for state in c.status():
                typer.echo(f"status {state.model_dump_json()}")


async def _bench_racp(records: int) -> float:
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

