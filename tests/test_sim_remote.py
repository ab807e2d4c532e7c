"""Virtual devices in ANOTHER process: `homeward sim devices` as a subprocess, reached
through bleak's public API with ``sim_radio="tcp://..."`` / ``"unix://...#radio"``.

No mocks: the server is the real command, the client side is the installed bleak with
the sim backend, and the agent test uses the real edge agent and broker.  Reference
bytes from /work/shared/reference/ble-gatt.md section 3 (V1, V20, V21).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from typer.testing import CliRunner

from device_sim.backend import SimBleakClient, SimBleakScanner
from device_sim.faults import Fault
from device_sim.remote_client import RadioControl, RemoteBleakClient
from device_sim.remote_devices import FaultSpec, parse_fault
from device_sim.remote_protocol import RadioAddress, parse_radio_url
from edge.agent import EdgeAgent
from edge.ble import BleTiming
from edge.publisher import BrokerParams
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import PairedDevice, Reading
from stack.cli import app as cli_app
from stack.services import MosquittoServer

REPO = Path(__file__).resolve().parents[1]
V1 = "00 78 00 50 00 5D 00"  # BPM, mmHg, 120/80, MAP 93 (reference vector V1)


def uuid(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def run(coro: Awaitable[None], limit_s: float = 20) -> None:
    asyncio.run(asyncio.wait_for(coro, limit_s))


def on(url: str) -> Any:
    """bleak passes extra keyword arguments through to the backend (typed ExtraArgs)."""
    return {"sim_radio": url}


@contextmanager
def sim_devices(tmp_path: Path, *args: str, name: str = "radio"
                ) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """`homeward sim devices ... --announce FILE` in a subprocess; yields it and the file."""
    announce = tmp_path / f"{name}.json"
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack", "sim", "devices", "--announce", str(announce),
         *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not announce.exists():
            assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
            assert time.monotonic() < deadline, "no announcement within 15 s"
            time.sleep(0.02)
        yield proc, json.loads(announce.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(("url", "expected"), [
    ("tcp://127.0.0.1:40123/hub-1", RadioAddress("tcp", "hub-1", host="127.0.0.1", port=40123)),
    ("tcp://127.0.0.1:40123", RadioAddress("tcp", "", host="127.0.0.1", port=40123)),
    ("tcp://[::1]:9/h?timeout=2.5", RadioAddress("tcp", "h", host="::1", port=9, timeout_s=2.5)),
    ("unix:///tmp/hub-1.sock#hub-1", RadioAddress("unix", "hub-1", path="/tmp/hub-1.sock")),
])
def test_radio_urls(url: str, expected: RadioAddress) -> None:
    assert parse_radio_url(url) == expected
    assert parse_radio_url(str(expected)) == expected


@pytest.mark.parametrize("url", ["tcp://127.0.0.1/hub", "udp://x:1/y", "unix://#hub",
                                 "tcp://h:1/r?timeout=0", "tcp://h:99999/r"])
def test_bad_radio_urls_say_what_is_expected(url: str) -> None:
    with pytest.raises(ValueError, match=r"tcp://|unix://|timeout|port"):
        parse_radio_url(url)


def test_unreachable_radio_is_a_bleak_error_naming_the_address(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nobody.sock#hub-1"

    async def scenario() -> None:
        with pytest.raises(BleakError, match=r"nobody\.sock"):
            await BleakScanner.discover(0.1, backend=SimBleakScanner, **on(url))
        with pytest.raises(BleakError, match="homeward sim devices"):
            await BleakClient("C0:00:00:00:00:01", backend=SimBleakClient, **on(url)).connect()

    run(scenario())


# ---------------------------------------------------------------- conformance, bleak API


def test_bleak_conformance_against_a_radio_in_another_process(tmp_path: Path) -> None:
    with sim_devices(tmp_path, "--radio", "remote-1", "--blood-pressure", "1", "--glucose", "1",
                     "--stored", "12", "--every", "0") as (_proc, announced):
        url = announced["url"]
        assert url.startswith("tcp://127.0.0.1:") and url.endswith("/remote-1")
        by_kind = {d["kind"]: d["address"] for d in announced["devices"]}
        run(_conformance(url, cuff=by_kind["blood_pressure"], meter=by_kind["glucose"]))


async def _conformance(url: str, *, cuff: str, meter: str) -> None:
    # scan by service UUID: only the cuff advertises Blood Pressure (0x1810)
    found = await BleakScanner.discover(0.5, backend=SimBleakScanner, return_adv=True,
                                        service_uuids=[uuid(0x1810)], **on(url))
    assert list(found) == [cuff]
    device, adv = found[cuff]
    assert adv.service_uuids == [uuid(0x1810)] and adv.local_name == device.name
    assert adv.local_name is not None and adv.local_name.startswith("HW-BP1 cuff")
    assert -100 < adv.rssi < 0

    received: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(device, backend=SimBleakClient, **on(url)) as client:
        assert isinstance(client._backend, RemoteBleakClient)  # the proxy, not in-process
        assert client.is_connected
        assert (await client.read_gatt_char(uuid(0x2A19))) == bytearray([87])  # battery %
        assert (await client.read_gatt_char(uuid(0x2A24))) == b"HW-BP1 cuff"
        with pytest.raises(BleakGATTProtocolError) as refused:  # Battery Level is not writable
            await client.write_gatt_char(uuid(0x2A19), b"\x01", response=True)
        assert refused.value.code == 0x03
        await client.start_notify(uuid(0x2A35), lambda _c, data: received.put_nowait(bytes(data)))
        # the 12 readings it held while alone are indicated oldest first...
        held = [await asyncio.wait_for(received.get(), 5) for _ in range(12)]
        assert len(set(held)) == 12 and all(h[0] & 0x02 for h in held)  # time stamp flag
        # ...then a new one goes out exactly as the device made it
        async with RadioControl(url) as control:
            await control.push(cuff, bytes.fromhex(V1))
        assert (await asyncio.wait_for(received.get(), 5)).hex(" ").upper() == V1
        measurement = client.services.get_characteristic(uuid(0x2A35))
        assert measurement is not None
        cccd = measurement.descriptors[0]
        assert (await client.read_gatt_descriptor(cccd.handle)) == bytearray([2, 0])  # indicating

    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient("C0:FF:EE:00:00:01", backend=SimBleakClient, **on(url)).connect()

    # RACP on the glucose meter: number of records, then all 12 records and success
    measurements: list[bytes] = []
    racp: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(meter, backend=SimBleakClient, **on(url)) as client:
        await client.start_notify(uuid(0x2A18), lambda _c, data: measurements.append(bytes(data)))
        await client.start_notify(uuid(0x2A52), lambda _c, data: racp.put_nowait(bytes(data)))
        await client.write_gatt_char(uuid(0x2A52), bytes([0x04, 0x01]), response=True)
        assert (await asyncio.wait_for(racp.get(), 5)).hex(" ") == "05 00 0c 00"  # V20 form
        await client.write_gatt_char(uuid(0x2A52), bytes([0x01, 0x01]), response=True)
        assert (await asyncio.wait_for(racp.get(), 5)).hex(" ") == "06 00 01 01"  # V21
    # every record before the success response, in sequence-number order
    assert [int.from_bytes(m[1:3], "little") for m in measurements] == list(range(1, 13))


# ---------------------------------------------------------------- losing the server


@pytest.mark.parametrize(("how", "transport"), [(signal.SIGKILL, "tcp"),
                                                (signal.SIGTERM, "unix")])
def test_server_gone_is_a_disconnection_not_a_hang(tmp_path: Path, how: signal.Signals,
                                                   transport: str) -> None:
    where = (["--socket", str(tmp_path / "radio.sock")] if transport == "unix"
             else ["--listen", "127.0.0.1:0"])
    with sim_devices(tmp_path, "--radio", "doomed", "--spo2", "1", "--every", "0",
                     *where) as (proc, announced):
        url = announced["url"]
        assert url.startswith(f"{transport}://")
        address = announced["devices"][0]["address"]

        async def scenario() -> None:
            gone = asyncio.Event()
            client = BleakClient(address, backend=SimBleakClient,
                                 disconnected_callback=lambda _c: gone.set(), **on(url))
            await client.connect()
            assert (await client.read_gatt_char(uuid(0x2A19))) == bytearray([87])
            os.kill(proc.pid, how)
            started = time.monotonic()
            await asyncio.wait_for(gone.wait(), 5)
            assert time.monotonic() - started < 3
            assert not client.is_connected
            with pytest.raises(BleakError, match="Not connected"):
                await client.read_gatt_char(uuid(0x2A19))
            await client.disconnect()  # harmless afterwards, as with a real adapter

        run(scenario())
        proc.wait(10)
        if how == signal.SIGTERM:  # a clean stop: exit 0, socket and announcement removed
            assert proc.returncode == 0
            assert not (tmp_path / "radio.sock").exists()
            assert not (tmp_path / "radio.json").exists()


def test_a_server_that_stops_answering_is_a_disconnection_after_the_timeout(
        tmp_path: Path) -> None:
    with sim_devices(tmp_path, "--radio", "frozen", "--weight", "1", "--every", "0") as (
            proc, announced):
        url = announced["url"] + "?timeout=0.5"
        address = announced["devices"][0]["address"]

        async def scenario() -> None:
            gone = asyncio.Event()
            client = BleakClient(address, backend=SimBleakClient,
                                 disconnected_callback=lambda _c: gone.set(), **on(url))
            await client.connect()
            os.kill(proc.pid, signal.SIGSTOP)  # alive, socket open, never answers
            try:
                started = time.monotonic()
                with pytest.raises(BleakError, match=r"did not answer 'read' within 0\.5 s"):
                    await client.read_gatt_char(uuid(0x2A19))
                assert 0.4 < time.monotonic() - started < 2
                assert gone.is_set() and not client.is_connected
            finally:
                os.kill(proc.pid, signal.SIGCONT)

        run(scenario())


# ---------------------------------------------------------------- command-line options


@pytest.mark.parametrize(("text", "fault", "kind"), [
    ("connect_fails:times=3", Fault("connect_fails", times=3), None),
    ("disconnect_during_racp:after_records=50,kind=glucose",
     Fault("disconnect_during_racp", after_records=50), Kind.GLUCOSE),
    ("malformed_packet:payload=00ff", Fault("malformed_packet", payload=b"\x00\xff"), None),
    ("slow_indications:delay_s=0.5,times=0", Fault("slow_indications", delay_s=0.5, times=0),
     None),
    ("low_battery", Fault("low_battery"), None),
])
def test_fault_option(text: str, fault: Fault, kind: Kind | None) -> None:
    assert parse_fault(text) == FaultSpec(fault, kind)


@pytest.mark.parametrize(("text", "reason"), [
    ("bogus", "unknown fault 'bogus'"),
    ("connect_fails:times", "is not key=value"),
    ("connect_fails:tries=3", "unknown key 'tries'"),
    ("connect_fails:times=three", "bad times"),
    ("low_battery:kind=toaster", "kind must be one of"),
])
def test_bad_fault_option_says_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_fault(text)


def test_sim_devices_refuses_bad_options_with_a_reason() -> None:
    for args, reason in [(["--listen", "nope"], "expected HOST:PORT"),
                         (["--fault", "bogus"], "unknown fault"),
                         (["--blood-pressure", "0"], "no devices"),
                         (["--listen", "127.0.0.1:0", "--socket", "/tmp/x"], "not both")]:
        result = CliRunner().invoke(cli_app, ["sim", "devices", *args])
        assert result.exit_code == 2, (args, result.output)
        assert reason in " ".join(result.output.split()), (args, result.output)


# ---------------------------------------------------------------- the edge agent


FAST = EdgeSettings(reconnect_min_s=0.05, reconnect_max_s=0.3, status_interval_s=1,
                    messages_per_second=200)
TIMING = BleTiming(scan_window_s=1.0, reconnect_initial_s=0.05, reconnect_max_s=0.5)


async def until(predicate: Callable[[], object], what: str, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.integration
def test_edge_agent_collects_from_a_remote_radio_and_survives_its_restart(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    stored: list[Reading] = []
    args = ("--radio", "home-remote", "--blood-pressure", "1", "--glucose", "1",
            "--stored", "5", "--every", "0.3")
    with sim_devices(tmp_path, *args) as (first, announced):
        url = announced["url"]
        paired = [PairedDevice(address=d["address"], kind=Kind(d["kind"]))
                  for d in announced["devices"]]
        cuff, meter = (next(d.address for d in paired if d.kind is k)
                       for k in (Kind.BLOOD_PRESSURE, Kind.GLUCOSE))
        agent = EdgeAgent(hub_id="home-remote", state_dir=tmp_path / "hub", sim_radio=url,
                          broker=BrokerParams(port=mosquitto.port), ble_backend="sim",
                          devices=paired, settings=FAST, ble_timing=TIMING,
                          on_stored=stored.append)

        def count(address: str) -> int:
            return sum(r.device == address for r in stored)

        async def scenario() -> None:
            async with agent:
                # the meter's 5 stored records (RACP) and the cuff's live readings
                await until(lambda: count(meter) >= 5 and count(cuff) >= 2, "first readings")
                first.kill()
                first.wait(10)
                await until(lambda: not any(d.connected for d in agent.status().devices),
                            "the agent to see its devices disconnect", 5)
                cuff_before = count(cuff)
                # same port, same seed: the same devices come back; the agent reconnects
                port = url.split(":")[2].split("/")[0]
                with sim_devices(tmp_path, *args, "--listen", f"127.0.0.1:{port}",
                                 name="again"):
                    await until(lambda: count(cuff) >= cuff_before + 2,
                                "readings after the restart", 15)
                assert agent.outbox is not None and agent.outbox.depth >= 0

        run(scenario(), 40)
    glucose = [r for r in stored if r.device == meter]
    assert len({r.raw for r in glucose}) == len(glucose) >= 5  # never fetched twice
    assert all(r.kind is Kind.GLUCOSE for r in glucose)
    assert all(r.kind is Kind.BLOOD_PRESSURE and r.values["systolic"] > 0
               for r in stored if r.device == cuff)
