"""What both ways of running a virtual ward share: the stepped clock, the simulated nurses,
the wire messages a hub would send, and reading the outcome back from the database.

Time is stepped, not continuous: at each step ``t`` the nurses act on what is due, the
readings taken in ``(t - step, t]`` arrive, the engine evaluates them with its clock at
``t``, then the scheduler tick runs at ``t`` (absence rules, escalations).  Both runs do
exactly that, so on the same cohort they raise the same alerts at the same (step) times.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import psycopg
from psycopg.rows import dict_row

from alerts import store
from alerts.service import AlertService
from alerts.store import InvalidTransition
from device_sim.cohort import Cohort, SimPatient, SimReading
from homeward.wire import DeviceState, HubStatus, Reading
from stack.ward_world import World, device_address

#: The simulated clock's step: a reading's alert opens at the end of the step it was
#: taken in, and the scheduler tick runs once a step.
DEFAULT_STEP = timedelta(minutes=30)
#: The namespace of the cohort's reading ids (uuid5 of seed, patient, kind, time).
READING_NAMESPACE = uuid.UUID("6f1d0a5e-2b8e-4b7c-9a51-8d3c1f0e7a21")
#: What a device with the low-battery fault reports (the rule fires below 20 %).
LOW_BATTERY = 15
FULL_BATTERY = 90


@dataclass
class SimClock:
    """The engine's clock: whatever the run says it is."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Nurses:
    """The simulated teams' response: every alert that reached a team is acknowledged
    ``respond_after`` after it opened (by the team's level-0 nurse; a lease that expires
    is renewed the same way), and one that needs a nurse to close it (a rule without
    auto-resolve, a system alert) is resolved ``resolve_after`` after it opened."""

    respond_after: timedelta = timedelta(minutes=10)
    resolve_after: timedelta = timedelta(hours=24)

    def act(self, conn: psycopg.Connection[Any], world: World, now: datetime) -> None:
        fallback = next(iter(world.nurses.values()))
        rows = conn.execute(
            "SELECT id, state, team_id, (rule->>'auto_resolve')::boolean IS TRUE, opened_at"
            " FROM alert WHERE state IN ('open', 'acknowledged') AND opened_at <= %s"
            " ORDER BY id", (now - self.respond_after,)).fetchall()
        for alert_id, state, team, auto, opened in rows:
            nurse = world.nurses.get(team, fallback)
            try:
                if not auto and opened <= now - self.resolve_after:
                    store.resolve(conn, alert_id, clinician_id=nurse, outcome="other",
                                  note="virtual ward: reviewed", now=now)
                elif state == "open":
                    store.acknowledge(conn, alert_id, clinician_id=nurse, now=now)
            except InvalidTransition:
                continue  # closed meanwhile


#: Makes the readings of one step arrive (stored, and queued for evaluation) by ``now``.
Deliver = Callable[[list[SimReading], datetime], None]
Progress = Callable[[datetime, int], None]


def run_steps(conn: psycopg.Connection[Any], cohort: Cohort, world: World,
              service: AlertService, clock: SimClock, *, step: timedelta, nurses: Nurses,
              deliver: Deliver, progress: Progress | None = None) -> None:
    """The one loop both runs share, so that they agree: at each step the nurses act, the
    step's readings arrive (``deliver``: the fast or the live way), the engine drains the
    queue with its clock at the step, then the tick runs."""
    index = 0
    for now in steps(cohort, step):
        clock.now = now
        nurses.act(conn, world, now)
        taken, index = in_step(cohort.readings, index, now)
        deliver(taken, now)
        while service.engine.process_batch(conn).readings:
            pass
        service.tick_timers(conn, now)
        if progress is not None:
            progress(now, index)


def steps(cohort: Cohort, step: timedelta) -> Iterator[datetime]:
    t = cohort.spec.start_at + step
    while t <= cohort.spec.end_at:
        yield t
        t += step


def reading_id(cohort: Cohort, r: SimReading) -> uuid.UUID:
    return uuid.uuid5(READING_NAMESPACE,
                      f"{cohort.spec.seed}:{r.patient}:{r.kind}:{r.taken_at.isoformat()}:{r.why}")


def wire_reading(cohort: Cohort, patient: SimPatient, r: SimReading) -> Reading:
    """The reading as the hub's edge agent would publish it."""
    return Reading(id=reading_id(cohort, r), kind=r.kind, taken_at=r.taken_at,
                   device=device_address(patient, r.kind), values=dict(r.values))


def hub_status(patient: SimPatient, now: datetime) -> HubStatus:
    """The hub's status message: online, with each device's battery."""
    return HubStatus(state="online", ts=now, agent="ward-sim", devices=[
        DeviceState(address=device_address(patient, kind), kind=kind,
                    battery=LOW_BATTERY if patient.faults.get(kind) == "low_battery"
                    else FULL_BATTERY)
        for kind in patient.devices])


def in_step(readings: list[SimReading], start: int,
            until: datetime) -> tuple[list[SimReading], int]:
    """The readings from index ``start`` taken at or before ``until`` (sorted input)."""
    end = start
    while end < len(readings) and readings[end].taken_at <= until:
        end += 1
    return readings[start:end], end


ALERT_COLUMNS = ["alert_id", "patient", "rule_id", "category", "severity", "opened_at",
                 "team_id", "state"]
EVENT_COLUMNS = ["alert_id", "patient", "rule_id", "event", "at", "severity", "team_id"]


@dataclass
class RunResult:
    """What a run raised: one row per alert (the severity and team it opened with) and
    every event of each (for an opening or a severity raise: the severity then, and the
    team it was routed to then)."""

    alerts: pd.DataFrame
    events: pd.DataFrame
    readings_stored: int
    seconds: float

    def signature(self) -> list[tuple[Any, ...]]:
        """The alerts and their raises as comparable tuples: who, which rule, what, when,
        which severity and team."""
        return sorted((r.patient, r.rule_id, r.event, r.at.isoformat(), r.severity, r.team_id)
                      for r in self.events.itertuples()
                      if r.event in ("opened", "severity_raised"))


def collect(conn: psycopg.Connection[Any], world: World, *, seconds: float) -> RunResult:
    keys = {v: k for k, v in world.patient_ids.items()}
    with conn.cursor(row_factory=dict_row) as cur:
        alerts = cur.execute(
            "SELECT id, patient_id, rule_id, category, severity, opened_at, team_id, state"
            " FROM alert"
            " ORDER BY opened_at, id").fetchall()
        events = cur.execute(
            "SELECT e.alert_id, a.patient_id, a.rule_id, e.event, e.at, e.detail"
            " FROM alert_event e JOIN alert a ON a.id = e.alert_id ORDER BY e.id").fetchall()
        stored = cur.execute("SELECT count(*) AS n FROM reading").fetchone()
    event_rows = []
    opened: dict[int, tuple[str | None, str | None]] = {}
    pending: dict[int, list[Any]] = {}  # a raise waiting for the team it is re-routed to
    for e in events:
        detail = e["detail"] or {}
        row = [e["alert_id"], keys.get(e["patient_id"]), e["rule_id"], e["event"], e["at"],
               None, None]
        if e["event"] == "opened":
            row[5], row[6] = detail.get("severity"), detail.get("team_id")
            opened[e["alert_id"]] = (row[5], row[6])
        elif e["event"] == "severity_raised":
            row[5] = detail.get("to")
            pending[e["alert_id"]] = row
        elif e["event"] == "notified" and e["alert_id"] in pending:
            pending.pop(e["alert_id"])[6] = detail.get("team_id")
        event_rows.append(row)
    alert_rows = []
    for a in alerts:
        severity, team = opened.get(a["id"], (None, None))
        alert_rows.append([a["id"], keys.get(a["patient_id"]), a["rule_id"], a["category"],
                           severity or a["severity"], a["opened_at"], team or a["team_id"],
                           a["state"]])
    return RunResult(pd.DataFrame(alert_rows, columns=ALERT_COLUMNS),
                     pd.DataFrame(event_rows, columns=EVENT_COLUMNS),
                     int(stored["n"]) if stored else 0, seconds)

