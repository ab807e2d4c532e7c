"""``homeward sim devices``: virtual devices for an edge agent in another process.

Makes a ``VirtualRadio`` with the devices asked for, serves it with
``device_sim.remote_server.RadioServer``, announces where (stdout, and a JSON
file with ``--announce``), takes a reading on every device each ``--every``
seconds, and stops cleanly on Ctrl-C or SIGTERM.  (bleak is imported only
when serving, so ``homeward --help`` stays quick.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from device_sim.faults import Fault, FaultName
from device_sim.radio import VirtualRadio
from device_sim.remote_protocol import RadioAddress
from homeward.kinds import Kind

FAULT_NAMES: tuple[str, ...] = typing.get_args(FaultName)
_FAULT_FIELDS: dict[str, Callable[[str], Any]] = {
    "after_reads": int, "after_records": int, "times": int, "delay_s": float,
    "payload": bytes.fromhex, "clock_offset_s": float, "battery": int,
}

FAULT_HELP = (
    "A fault for the devices, NAME[:key=value,...]; repeatable. NAME is one of "
    + ", ".join(FAULT_NAMES)
    + "; keys: " + ", ".join(_FAULT_FIELDS)
    + ", and kind=KIND to give it only to one kind of device. "
    "E.g. disconnect_during_racp:after_records=50,kind=glucose or connect_fails:times=3."
)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    fault: Fault
    kind: Kind | None = None


def parse_fault(text: str) -> FaultSpec:
    """``NAME[:key=value,...]`` -> a Fault (ValueError with a readable reason)."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(FAULT_NAMES)}")
    options: dict[str, Any] = {}
    kind: Kind | None = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"fault {text!r}: {item!r} is not key=value")
        if key == "kind":
            try:
                kind = Kind(value)
            except ValueError:
                raise ValueError(f"fault {text!r}: kind must be one of "
                                 f"{', '.join(k.value for k in Kind)}") from None
            continue
        if key not in _FAULT_FIELDS:
            raise ValueError(f"fault {text!r}: unknown key {key!r}; keys: "
                             f"{', '.join(_FAULT_FIELDS)}, kind")
        try:
            options[key] = _FAULT_FIELDS[key](value)
        except ValueError as err:
            raise ValueError(f"fault {text!r}: bad {key} {value!r} ({err})") from None
    return FaultSpec(Fault(name, **options), kind)  # type: ignore[arg-type]


def parse_listen(text: str) -> RadioAddress:
    """``HOST:PORT`` (port 0: any free one) -> a TCP address."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    return RadioAddress("tcp", "", host=host, port=int(port))


@dataclass
class DevicesPlan:
    """What ``homeward sim devices`` runs."""

    radio_id: str
    listen: RadioAddress
    counts: dict[Kind, int]
    deteriorating: bool = False
    every_s: float = 10.0
    stored: int = 0
    faults: list[FaultSpec] = field(default_factory=list)
    seed: int = 0
    announce: Path | None = None


def write_announcement(path: Path, announcement: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(announcement, indent=2) + "\n")
    os.replace(tmp, path)


async def serve_devices(plan: DevicesPlan, echo: Callable[[str], None]) -> None:
    """Run until SIGINT/SIGTERM (or cancellation)."""
    from device_sim.remote_server import RadioServer  # bleak: only when serving

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    with VirtualRadio(plan.radio_id, seed=plan.seed) as radio:
        for kind, count in plan.counts.items():
            for _ in range(count):
                faults = [f.fault for f in plan.faults if f.kind in (None, kind)]
                device = radio.add_device(kind, deteriorating=plan.deteriorating,
                                          faults=faults)
                device.store_records(plan.stored)
        listen = RadioAddress(plan.listen.scheme, plan.radio_id, host=plan.listen.host,
                              port=plan.listen.port, path=plan.listen.path)
        async with RadioServer([plan.radio_id], listen) as server:
            devices = [{"address": p.address, "kind": p.kind.value, "name": p.name}
                       for p in radio]
            announcement = {"url": server.url, "radio": plan.radio_id, "pid": os.getpid(),
                            "every_s": plan.every_s, "devices": devices}
            echo(f"virtual radio {plan.radio_id!r} with {len(devices)} devices at {server.url}")
            for d in devices:
                echo(f"  {d['address']}  {d['kind']:<15} {d['name']}")
            echo(f"edge: homeward edge --ble sim --sim-radio {server.url} "
                 f"--hub-id {plan.radio_id}")
            echo(f"a reading on every device each {plan.every_s:g} s" if plan.every_s > 0
                 else "no readings on a timer (--every 0)")
            echo("Ctrl-C stops.")
            if plan.announce is not None:
                write_announcement(plan.announce, announcement)
            driver = (asyncio.create_task(radio.run(timedelta(seconds=plan.every_s)))
                      if plan.every_s > 0 else None)
            try:
                await stop.wait()
            finally:
                if driver is not None:
                    driver.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await driver
                if plan.announce is not None:
                    with contextlib.suppress(FileNotFoundError):
                        plan.announce.unlink()
    echo("stopped")
