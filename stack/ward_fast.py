"""The fast run of a virtual ward: the cohort's readings through the ingest's own writer and
the alert service's own engine, routing and escalation, on a stepped clock.

No broker, no edge agents, no devices: each step's readings are made into the messages a
hub would publish (:func:`stack.ward_run.wire_reading`), prepared and written by the
ingest's :class:`~server.ingest_writer.BatchWriter` exactly as the ingest process writes
them, and every hub sends its status on the hour (so the hubs are online and report their
batteries).  Then the engine drains the evaluation queue with its clock at the step's
time, and the tick runs.  A malformed reading is lost, as at the edge.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

import orjson
import psycopg

from alerts.routing import RoutingTree
from alerts.ruleset import RuleSet
from alerts.service import AlertService
from device_sim.cohort import Cohort, SimReading
from homeward.wire import encode_readings, readings_topic, status_topic
from server.ingest_rows import Prepared, prepare
from server.ingest_writer import BatchWriter
from stack.ward_run import (
    DEFAULT_STEP,
    Nurses,
    Progress,
    RunResult,
    SimClock,
    collect,
    hub_status,
    run_steps,
    wire_reading,
)
from stack.ward_world import World, seed_world


def run_fast(url: str, cohort: Cohort, ruleset: RuleSet, routing: RoutingTree, *,
             step: timedelta = DEFAULT_STEP, nurses: Nurses | None = None,
             progress: Progress | None = None) -> RunResult:
    """Run ``cohort`` on the migrated, empty database at ``url``."""
    nurses = nurses or Nurses()
    began = time.monotonic()
    clock = SimClock(cohort.spec.start_at)
    writer = BatchWriter.connect(url)
    with psycopg.connect(url, autocommit=True) as conn, contextlib.closing(writer):
        world = seed_world(conn, cohort, ruleset)
        service = AlertService(ruleset, routing, clock=clock)
        first_step = cohort.spec.start_at + step

        def deliver(taken: list[SimReading], now: datetime) -> None:
            writer.write(_messages(cohort, world, [r for r in taken if not r.malformed], now,
                                   first=now == first_step))

        run_steps(conn, cohort, world, service, clock, step=step, nurses=nurses,
                  deliver=deliver, progress=progress)
        return collect(conn, world, seconds=time.monotonic() - began)


def _messages(cohort: Cohort, world: World, taken: list[SimReading], now: datetime,
              first: bool) -> list[Prepared]:
    """One readings message per hub with readings this step, and every hub's status at
    the first step (as a live hub reports on connecting) and on the hour."""
    by_patient: dict[str, list[SimReading]] = {}
    for r in taken:
        by_patient.setdefault(r.patient, []).append(r)
    out: list[Prepared] = []
    mid = 0
    for patient in cohort.patients:
        hub = world.hubs[patient.key]
        own = by_patient.get(patient.key)
        if own:
            payload = encode_readings(wire_reading(cohort, patient, r) for r in own)
            out.append(_prepared(mid := mid + 1, readings_topic(hub), payload, now))
        if first or now.minute == 0:  # hourly: well inside the hub-offline rule's silence
            status = orjson.dumps(hub_status(patient, now).model_dump(mode="json"))
            out.append(_prepared(mid := mid + 1, status_topic(hub), status, now))
    return out


def _prepared(mid: int, topic: str, payload: bytes, now: datetime) -> Prepared:
    return prepare(Prepared(mid=mid, qos=1, epoch=0, topic=topic, payload=payload,
                            received_at=now))
