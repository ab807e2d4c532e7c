"""Helpers for the ingest tests: a QoS 1 publisher, readings, and waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def reading(*, kind: str = "spo2", taken_at: datetime | None = None, id: str | None = None,
            values: dict[str, float] | None = None, device: str = "AA:BB:CC:DD:EE:01",
            **extra: Any) -> dict[str, Any]:
    when = taken_at or datetime.now(UTC) - timedelta(seconds=1)
    defaults = {"spo2": {"spo2": 96, "pulse_rate": 72},
                "temperature": {"body_temperature": 37.1},
                "blood_pressure": {"systolic": 128, "diastolic": 82, "pulse_rate": 70}}
    return {"v": 1, "id": id or str(uuid.uuid4()), "kind": kind,
            "taken_at": when.isoformat().replace("+00:00", "Z"), "device": device,
            "values": values or defaults[kind], **extra}


class Publisher:
    """A plain paho QoS 1 publisher (what a hub's publisher does on the wire)."""

    def __init__(self, port: int, client_id: str | None = None) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(200)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "publisher could not connect"

    def publish(self, topic: str, payload: bytes | dict[str, Any] | list[Any], *,
                retain: bool = False, wait: bool = True) -> mqtt.MQTTMessageInfo:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(topic, data, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(10)
            assert info.is_published()
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def one(cursor: Any) -> tuple[Any, ...]:
    """The single row a query returns (fails the test when there is none)."""
    row = cursor.fetchone()
    assert row is not None, "the query returned no row"
    return tuple(row)


class ServerProcess:
    """``homeward ARGS`` as a subprocess, to be SIGKILLed and started again."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "stack", *args]
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "HOMEWARD_MQTT_HOST": "127.0.0.1", **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                         env=env)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class IngestProcess(ServerProcess):
    """``homeward ingest`` as a subprocess, to be SIGKILLed."""

    def __init__(self, db_url: str, port: int, log: Path, *, client_id: str = "ingest-test",
                 env: dict[str, str] | None = None) -> None:
        super().__init__(["ingest", "--database-url", db_url, "--mqtt-port", str(port),
                          "--client-id", client_id], log, env)
