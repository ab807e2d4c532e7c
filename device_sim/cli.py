"""Simulator commands: ``homeward sim watch`` and ``homeward sim devices``."""

from __future__ import annotations

from pathlib import Path

import typer

from device_sim.remote_devices import FAULT_HELP


def register(app: typer.Typer) -> None:
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

    @sim.command("cohort")
    def cohort(
        out: Path = typer.Argument(..., help="folder for readings, episodes and patients"),
        patients: int = typer.Option(500, min=1),
        days: int = typer.Option(30, min=1),
        seed: int = typer.Option(7),
        fmt: str = typer.Option("csv", "--format", help="csv or parquet"),
    ) -> None:
        """Write a seeded virtual-ward cohort as CSV or Parquet.

        Every reading, the scripted deteriorations with their ground truth, and each
        patient's baseline (device_sim.cohort)."""
        from device_sim.cohort import CohortSpec, generate

        if fmt not in ("csv", "parquet"):
            raise typer.BadParameter("--format must be csv or parquet")
        made = generate(CohortSpec(patients=patients, days=days, seed=seed))
        try:
            paths = made.write(out, fmt=fmt)
        except ImportError as err:
            typer.echo(f"{err}: install the simulator's extras: pip install 'homeward[sim]'",
                       err=True)
            raise typer.Exit(2) from None
        for path in paths:
            typer.echo(str(path))

    @sim.command("devices")
    def devices(
        listen: str = typer.Option(
            None, help="Serve on HOST:PORT (default 127.0.0.1:0, any free port; the port "
            "chosen is printed and announced)."),
        socket: Path | None = typer.Option(
            None, "--socket", help="Serve on this Unix socket instead of TCP."),
        radio: str = typer.Option("hub-1", help="Radio id: the edge names it in --sim-radio."),
        blood_pressure: int = typer.Option(None, min=0, help="cuffs"),
        spo2: int = typer.Option(None, min=0, help="pulse oximeters"),
        temperature: int = typer.Option(None, min=0, help="thermometers"),
        weight: int = typer.Option(None, min=0, help="scales"),
        glucose: int = typer.Option(None, min=0, help="glucose meters"),
        deteriorating: bool = typer.Option(False, help="patients get worse, reading by reading"),
        every: float = typer.Option(10.0, min=0.0,
                                    help="seconds between readings on each device; 0: none"),
        stored: int = typer.Option(0, min=0, help="stored records per device at start"),
        fault: list[str] = typer.Option([], help=FAULT_HELP),
        seed: int = typer.Option(0, help="same seed, same addresses and readings"),
        announce: Path | None = typer.Option(
            None, help="Also write the address and the devices to this JSON file "
            "(removed on exit)."),
        log_level: str = typer.Option("WARNING", help="DEBUG, INFO, WARNING or ERROR."),
    ) -> None:
        """Serve virtual devices to an edge agent in ANOTHER process, over a local socket.

        With no device counts: one device of each kind.  Connect the edge with
        `homeward edge --ble sim --sim-radio tcp://HOST:PORT/RADIO` (or unix:///PATH#RADIO).
        """
        import asyncio
        import logging

        from device_sim.remote_devices import DevicesPlan, parse_fault, parse_listen, serve_devices
        from device_sim.remote_protocol import RadioAddress
        from homeward.kinds import Kind

        logging.basicConfig(level=log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if listen is not None and socket is not None:
            raise typer.BadParameter("give --listen or --socket, not both")
        try:
            address = (RadioAddress("unix", radio, path=str(socket.absolute()))
                       if socket is not None else parse_listen(listen or "127.0.0.1:0"))
            faults = [parse_fault(f) for f in fault]
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        given = {Kind.BLOOD_PRESSURE: blood_pressure, Kind.SPO2: spo2,
                 Kind.TEMPERATURE: temperature, Kind.WEIGHT: weight, Kind.GLUCOSE: glucose}
        everything = all(n is None for n in given.values())
        counts = {kind: 1 if everything else (n or 0) for kind, n in given.items()}
        if not any(counts.values()):
            raise typer.BadParameter("no devices: give at least one count above 0")
        plan = DevicesPlan(radio, address, counts, deteriorating=deteriorating, every_s=every,
                           stored=stored, faults=faults, seed=seed, announce=announce)
        try:
            asyncio.run(serve_devices(plan, typer.echo))
        except OSError as err:
            typer.echo(f"cannot serve on {address}: {err.strerror or err}", err=True)
            raise typer.Exit(2) from err


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


