"""``homeward edge`` (the hub agent), ``edge pair|unpair|devices``.

Heavy imports (bleak, paho, the simulator) happen inside the commands.  The
simulator is loaded by import path only with ``--ble sim``: the edge never
imports ``device_sim`` statically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from edge.publisher import BrokerParams
    from homeward.settings import Settings
    from homeward.wire import PairedDevice

BLE_HELP = "Bluetooth backend: 'bleak' (this machine's adapter) or 'sim' (virtual devices)."
SIM_RADIO_HELP = ("--ble sim: the virtual radio. Default: one made in this process for the hub. "
                  "A radio served by `homeward sim devices` in another process: "
                  "tcp://HOST:PORT/RADIO or unix:///PATH#RADIO.")


def _is_remote_radio(sim_radio: str | None) -> bool:
    """A URL names a radio in another process (device_sim.remote_protocol); no import here."""
    return sim_radio is not None and "://" in sim_radio
StateDir = Annotated[Path | None, typer.Option(
    help="The hub's state folder. Default: HOMEWARD_EDGE_STATE_DIR/<hub id>.")]


def _settings() -> Settings:
    from homeward.settings import get_settings

    return get_settings()


def _state_dir(state_dir: Path | None, hub_id: str | None) -> Path:
    if state_dir is not None:
        return state_dir
    base = _settings().edge_state_dir
    return base / hub_id if hub_id else base


def _broker(host: str | None, port: int | None, hub_id: str) -> BrokerParams:
    from edge.publisher import BrokerParams

    s = _settings()
    return BrokerParams(
        host=host or s.mqtt_host, port=port or s.mqtt_port,
        username=s.mqtt_username or hub_id,
        password=s.hub_password if s.hub_password is not None else s.mqtt_password,
        tls=s.mqtt_tls, ca_file=s.mqtt_ca_file, cert_file=s.mqtt_cert_file,
        key_file=s.mqtt_key_file)


def _from_bundle(path: Path, state_dir: Path | None) -> tuple[str, Path, BrokerParams]:
    """(hub id, state folder, broker) from a provisioning bundle (``homeward admin hub
    provision``); its CA is written beside the hub's state.  A client certificate and key
    (a listener that requires one) still come from HOMEWARD_MQTT_CERT_FILE/_KEY_FILE."""
    from edge.publisher import BrokerParams
    from homeward.provisioning import read_bundle

    try:
        bundle = read_bundle(path)
        host, port, tls = bundle.broker()
    except (OSError, ValueError) as err:
        raise typer.BadParameter(f"cannot use the bundle {path}: {err}",
                                 param_hint="--bundle") from err
    folder = _state_dir(state_dir, bundle.hub_id)
    ca_file = None
    if bundle.ca_pem:
        folder.mkdir(parents=True, exist_ok=True)
        ca_file = folder / "broker-ca.pem"
        ca_file.write_text(bundle.ca_pem, encoding="utf-8")
    s = _settings()  # a client certificate, if the listener requires one, is the hub's own
    return bundle.hub_id, folder, BrokerParams(host=host, port=port, username=bundle.hub_id,
                                               password=bundle.password, tls=tls,
                                               ca_file=ca_file, cert_file=s.mqtt_cert_file,
                                               key_file=s.mqtt_key_file)


def _sim_radio(radio_id: str, devices: list[PairedDevice]) -> Any:
    """A virtual radio holding ``devices`` (or one device of each kind when none)."""
    from edge.ble import load_backend_plugin
    from homeward.kinds import Kind

    radio = load_backend_plugin("sim").virtual_radio(radio_id)
    if devices:
        for device in devices:
            radio.add_device(device.kind, address=device.address)
    else:
        for kind in (Kind.BLOOD_PRESSURE, Kind.SPO2, Kind.TEMPERATURE, Kind.WEIGHT,
                     Kind.GLUCOSE):
            radio.add_device(kind)
    return radio


def register(app: typer.Typer) -> None:
    edge = typer.Typer(help="The home hub agent: BLE devices -> durable outbox -> MQTT.")
    app.add_typer(edge, name="edge")

    @edge.callback(invoke_without_command=True)
    def run(
        ctx: typer.Context,
        ble: str = typer.Option(None, "--ble", help=BLE_HELP + " Default: HOMEWARD_BLE_BACKEND."),
        hub_id: str = typer.Option(None, "--hub-id", help="Default: HOMEWARD_HUB_ID."),
        state_dir: StateDir = None,
        host: str = typer.Option(None, help="Broker host. Default: HOMEWARD_MQTT_HOST."),
        port: int = typer.Option(None, help="Broker port. Default: HOMEWARD_MQTT_PORT."),
        sim_every: float = typer.Option(30.0, min=0.1,
                                        help="--ble sim: seconds between virtual readings."),
        sim_radio: str = typer.Option(None, "--sim-radio", help=SIM_RADIO_HELP),
        log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
        bundle: Path = typer.Option(None, "--bundle", help="A provisioning bundle (`homeward "
                                    "admin hub provision`): hub id, broker, CA, password."),
    ) -> None:
        """Run the hub agent (real Bluetooth by default; --ble sim for virtual devices)."""
        if ctx.invoked_subcommand is not None:
            return
        import asyncio
        import logging

        logging.basicConfig(level=log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        backend = ble or _settings().ble_backend
        if bundle is not None:
            hub, folder, broker = _from_bundle(bundle, state_dir)
            asyncio.run(_run_agent(hub, folder, broker, backend, sim_every, sim_radio))
            return
        hub = hub_id or _settings().hub_id
        if not hub:
            raise typer.BadParameter("set --hub-id or HOMEWARD_HUB_ID (the hub's MQTT username)")
        asyncio.run(_run_agent(hub, _state_dir(state_dir, hub), _broker(host, port, hub),
                               backend, sim_every, sim_radio))

    @edge.command("pair")
    def pair(
        ble: str = typer.Option(None, "--ble", help=BLE_HELP),
        hub_id: str = typer.Option(None, "--hub-id"),
        state_dir: StateDir = None,
        seconds: float = typer.Option(10.0, min=1.0, help="How long to scan."),
        address: str = typer.Option(None, help="Pair this address without asking."),
        sim_radio: str = typer.Option(None, "--sim-radio", help=SIM_RADIO_HELP),
    ) -> None:
        """Scan for health devices by service UUID and pair one with this hub."""
        import asyncio

        from edge.agent import load_paired, save_paired
        from edge.ble import resolve_backend, scan_for_new_devices
        from homeward.wire import PairedDevice

        hub = hub_id or _settings().hub_id or "hub"
        folder = _state_dir(state_dir, hub_id or _settings().hub_id)
        paired = load_paired(folder)
        backend_name = ble or _settings().ble_backend
        remote = _is_remote_radio(sim_radio)
        radio = (_sim_radio(sim_radio or hub, [])
                 if backend_name == "sim" and not remote else None)
        typer.echo("Wake the device up: take a reading, or hold its Bluetooth button until "
                   "its light flashes. Keep it within a few metres of the hub.")
        typer.echo(f"Scanning for {seconds:.0f} s for blood pressure monitors, pulse oximeters, "
                   "thermometers, scales and glucose meters...")
        try:
            found = asyncio.run(scan_for_new_devices(
                seconds, backend=resolve_backend(backend_name, sim_radio=sim_radio or hub),
                exclude=[d.address for d in paired]))
        finally:
            if radio is not None:
                radio.close()
        if not found:
            typer.echo("No new health device found. Is it awake and close by? Devices already "
                       f"paired ({len(paired)}) are not shown. Try again with --seconds 30.")
            raise typer.Exit(1)
        for n, device in enumerate(found, start=1):
            typer.echo(f"  {n}) {device.address}  {device.kind.value:<15} "
                       f"{device.name or '(no name)':<20} signal {device.rssi} dBm")
        if address:
            chosen = [d for d in found if d.address == address.upper()]
            if not chosen:
                typer.echo(f"{address} was not among the devices found.")
                raise typer.Exit(1)
            device = chosen[0]
        else:
            number = typer.prompt("Pair which device? (number)", type=int, default=1)
            if not 1 <= number <= len(found):
                typer.echo("No such device.")
                raise typer.Exit(1)
            device = found[number - 1]
        path = save_paired(folder, [*paired, PairedDevice(address=device.address,
                                                          kind=device.kind, name=device.name)])
        typer.echo(f"Paired {device.address} ({device.kind.value}); saved in {path}. "
                   "A running agent picks it up within a few seconds.")
        typer.echo("If the device asks for a PIN or passkey, bond it once with bluetoothctl "
                   "(see docs/edge.md), then take a reading.")

    @edge.command("unpair")
    def unpair(address: str, hub_id: str = typer.Option(None, "--hub-id"),
               state_dir: StateDir = None) -> None:
        """Forget a locally paired device."""
        from edge.agent import load_paired, save_paired

        folder = _state_dir(state_dir, hub_id or _settings().hub_id)
        paired = load_paired(folder)
        kept = [d for d in paired if d.address.upper() != address.upper()]
        if len(kept) == len(paired):
            typer.echo(f"{address} is not paired locally (devices from the server's config are "
                       "removed on the server).")
            raise typer.Exit(1)
        save_paired(folder, kept)
        typer.echo(f"Unpaired {address.upper()}.")

    @edge.command("devices")
    def devices(hub_id: str = typer.Option(None, "--hub-id"),
                state_dir: StateDir = None) -> None:
        """List the locally paired devices and what the outbox holds."""
        from edge.agent import SERVER_CONFIG_KEY, load_paired
        from edge.outbox import Outbox

        folder = _state_dir(state_dir, hub_id or _settings().hub_id)
        for device in load_paired(folder):
            typer.echo(f"local   {device.address}  {device.kind.value}  {device.name or ''}")
        if (folder / "outbox.db").exists():
            with Outbox(folder / "outbox.db") as box:
                config = box.get_state(SERVER_CONFIG_KEY)
                typer.echo(f"server config (cached): {config or 'none yet'}")
                typer.echo(f"outbox: {box.depth} readings waiting")


async def _run_agent(hub_id: str, state_dir: Path, broker: BrokerParams, backend: str,
                     sim_every: float, sim_radio: str | None = None) -> None:
    import asyncio
    import contextlib
    import signal
    from datetime import timedelta

    from edge.agent import EdgeAgent, load_paired
    from edge.ble import BleError

    devices: list[PairedDevice] = []
    radio = None
    if backend == "sim" and _is_remote_radio(sim_radio):
        devices = load_paired(state_dir) or await _devices_on_remote_radio(str(sim_radio))
    elif backend == "sim":
        devices = load_paired(state_dir)
        radio = _sim_radio(sim_radio or hub_id, devices)
        if not devices:
            from homeward.wire import PairedDevice

            devices = [PairedDevice(address=p.address, kind=p.kind) for p in radio]
    agent = EdgeAgent(hub_id=hub_id, state_dir=state_dir, broker=broker, ble_backend=backend,
                      sim_radio=sim_radio, devices=devices)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        with contextlib.suppress(NotImplementedError):  # SIGTERM from systemd: stop cleanly
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    driver = (asyncio.create_task(radio.run(timedelta(seconds=sim_every)))
              if radio is not None else None)
    try:
        await agent.run()
    except asyncio.CancelledError:
        pass
    except (OSError, BleError) as err:
        if backend != "bleak":
            raise
        typer.echo(f"Bluetooth is not available ({type(err).__name__}: {err}). Is BlueZ "
                   "running (systemctl status bluetooth) and this user in the 'bluetooth' "
                   "group? See docs/edge.md; --ble sim runs on virtual devices.", err=True)
        raise typer.Exit(2) from err
    finally:
        if driver is not None:
            driver.cancel()
        if radio is not None:
            radio.close()


async def _devices_on_remote_radio(sim_radio: str, seconds: float = 2.0) -> list[PairedDevice]:
    """No device paired yet: every health device the remote virtual radio advertises."""
    from edge.ble import BleError, resolve_backend, scan_for_new_devices
    from homeward.wire import PairedDevice

    try:
        found = await scan_for_new_devices(seconds, backend=resolve_backend(
            "sim", sim_radio=sim_radio))
    except (BleError, ValueError) as err:
        typer.echo(f"Cannot use the virtual radio {sim_radio}: {err}", err=True)
        raise typer.Exit(2) from err
    if not found:
        typer.echo(f"No virtual device heard on {sim_radio} (is `homeward sim devices` "
                   "running there?).", err=True)
        raise typer.Exit(2)
    typer.echo(f"Using the {len(found)} virtual devices on {sim_radio}: "
               + ", ".join(f"{d.address} ({d.kind.value})" for d in found))
    return [PairedDevice(address=d.address, kind=d.kind, name=d.name) for d in found]
