"""The alert engine process (``homeward alerts``): evaluation_queue -> rules -> alerts.

Each batch is one transaction::

    SELECT ... FROM evaluation_queue ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT n
    evaluate every applicable rule over each reading's window (in taken_at order)
    open / update / auto-resolve alerts (+ alert_event rows and NOTIFY alert_event)
    DELETE the queue rows
    COMMIT

so a reading's evaluation and its alert changes commit together or not at
all: a SIGKILL at any moment leaves the rows in the queue for the next run
(at-least-once evaluation, exactly-once effect, since the queue row and the
alert change share the transaction).  Several workers can run side by side:
SKIP LOCKED hands each its own rows, and the partial unique index keeps one
active alert per (patient, rule).

A queued reading without a patient (its hub was not enrolled at ingest) is
attributed if an enrolment now covers it (:func:`attribute_late`), else passed
over: ``server.admin.enrol`` queues it again when it attributes it.

The worker LISTENs on ``evaluation_queue`` (ingest NOTIFYs in its commit) and
polls every ``poll_interval`` seconds as a fallback; between batches it runs
the scheduler tick (timers: escalations, leases, snoozes, missed readings,
hubs gone silent), so timers fire even when no readings arrive.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from alerts.evaluators import evaluate, registry
from alerts.lifecycle import AlertChange, apply_finding
from alerts.metrics import AlertMetrics
from alerts.model import MAX_ERROR_CHARS, EvaluationFailure, Finding, Rule, WindowReading
from alerts.partitions import BUCKETS, Partitions, bucket_of
from alerts.patient_windows import KindReadings, PatientReadings, PatientWindows, int_array
from alerts.ruleset import RuleSet
from alerts.settings_store import PatientRuleSetting, load_settings, rules_for
from alerts.window import DeviceView, Merged, SliceView, Window
from homeward.telemetry import Readiness, fresh

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: (conn, patient_id, rule, severity, at) -> (team_id, route detail)
Router = Callable[[psycopg.Connection[Any], int, Rule, str, datetime],
                  tuple[str | None, dict[str, Any] | None]]


def use_orjson(conn: psycopg.Connection[Any]) -> None:
    """Parse json/jsonb with orjson on this connection (readings' values are jsonb)."""
    from psycopg.types.json import set_json_loads

    set_json_loads(orjson.loads, conn)


def utcnow() -> datetime:
    return datetime.now(UTC)


def first_care_team(conn: psycopg.Connection[Any], patient_id: int, rule: Rule, severity: str,
                    at: datetime) -> tuple[str | None, dict[str, Any] | None]:
    """The simplest router: the patient's first care team (by team id)."""
    row = conn.execute("SELECT team_id FROM patient_team WHERE patient_id = %s"
                       " ORDER BY team_id LIMIT 1", (patient_id,)).fetchone()
    return (row[0] if row else None), None


#: Up to this many readings a window of one kind is a tuple, past it a view of the list.
SHORT_WINDOW = 64


def kind_view(readings: KindReadings | None, start: datetime, item: QueueItem
              ) -> Sequence[WindowReading]:
    """One kind's readings taken from ``start`` up to the judged reading's instant, with
    the judged reading last among those stamped that instant: two readings of one kind
    taken the same second (a device clock has 1 s steps) are each judged as the latest
    once, instead of whichever sorts last being judged twice.  A slice of the kind's list,
    not a copy, in the usual case (the judged reading is the newest)."""
    if readings is None:
        return ()
    stamps, rows = readings.stamps, readings.rows
    hi = bisect.bisect_right(stamps, item.taken_at)
    lo = bisect.bisect_left(stamps, start, 0, hi)
    j = hi - 1  # the judged reading, if here, is among the last ones stamped its instant
    while j >= lo and rows[j].id != item.reading_id and stamps[j] == item.taken_at:
        j -= 1
    if j < lo or j == hi - 1 or rows[j].id != item.reading_id:
        # a short window is cheaper copied (in C) than walked through a view (in Python)
        return tuple(rows[lo:hi]) if hi - lo <= SHORT_WINDOW else SliceView(rows, lo, hi)
    return (*rows[lo:j], *rows[j + 1:hi], rows[j])


def rule_window(cached: PatientReadings, kinds: tuple[str, ...], start: datetime,
                item: QueueItem) -> Window:
    """The window a rule of ``kinds`` judges ``item`` in: views of each kind's list."""
    if len(kinds) == 1:  # of_kind is then the readings themselves (only_kinds)
        return Window(kind_view(cached.kinds.get(kinds[0]), start, item), only_kinds=kinds,
                      judged=item.reading_id)
    every = kind_view(cached.every, start, item)
    if len(every) <= SHORT_WINDOW:  # few readings in all: filtered, in C
        return Window(tuple([r for r in every if r.kind in kinds]), only_kinds=kinds,
                      judged=item.reading_id)
    by_kind = {k: kind_view(cached.kinds.get(k), start, item) for k in kinds}
    return Window(Merged(list(by_kind.values()), item.reading_id), only_kinds=kinds,
                  by_kind=by_kind, judged=item.reading_id)


@dataclass(slots=True)
class QueueItem:
    seq: int
    reading_id: str
    taken_at: datetime
    patient_id: int | None
    kind: str
    values: Any = None
    flags: tuple[str, ...] = ()


#: The rule id of a failure to apply a patient's personal settings (which rule's setting
#: is in the error).
PERSONAL_SETTINGS = "personal-settings"


def error_text(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:MAX_ERROR_CHARS]


@dataclass
class BatchResult:
    readings: int = 0
    changes: list[AlertChange] = field(default_factory=list)


#: Claim a batch: delete its queue rows (the delete commits with the batch's alert changes,
#: or rolls back with them) and read each reading's values in the same round trip.
#: ``= ANY(ARRAY(...))``, not ``IN (...)``: the planner then deletes by the primary key
#: instead of a hash join over the whole table (dead rows included, after a backlog).
CLAIM = (
    "WITH claimed AS (DELETE FROM evaluation_queue WHERE seq = ANY(ARRAY("
    " SELECT seq FROM evaluation_queue{where} ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT %s))"
    " RETURNING seq, reading_id, taken_at, patient_id, kind)"
    " SELECT c.seq, c.reading_id::text, c.taken_at, c.patient_id, c.kind, r.\"values\", r.flags"
    " FROM claimed c LEFT JOIN reading r ON r.id = c.reading_id AND r.taken_at = c.taken_at")
CLAIM_ALL = CLAIM.format(where="")
CLAIM_BUCKETS = CLAIM.format(
    where=f" WHERE patient_id IS NULL OR (patient_id %% {BUCKETS})::int = ANY(%s::int[])")


@dataclass
class AlertEngine:
    """Evaluates queued readings against a rule set inside one transaction per batch.

    It evaluates the patients of the buckets it holds (:mod:`alerts.partitions`; the
    default partition 0/1 is every bucket) and keeps their recent readings in memory
    (:mod:`alerts.patient_windows`)."""

    ruleset: RuleSet
    clock: Clock = utcnow
    router: Router = first_care_team
    batch_size: int = 500
    #: Called with each alert change inside its transaction (the notification layer).
    on_change: Callable[[psycopg.Connection[Any], AlertChange, datetime], None] | None = None
    partitions: Partitions = field(default_factory=Partitions)
    #: Called inside the batch's transaction for each evaluation that raised.  Without
    #: it a failure ends the batch (and the process) as before: a bare engine in a test
    #: or a benchmark must not hide a broken rule.
    on_failure: Callable[[psycopg.Connection[Any], EvaluationFailure, datetime], object] | None = (
        None)
    _windows: PatientWindows | None = field(default=None, repr=False)
    _told: set[tuple[int, str, str]] = field(default_factory=set, repr=False)
    _by_kind: dict[str, list[Rule]] | None = field(default=None, repr=False)

    def _keep(self) -> dict[str, timedelta]:
        """For each reading kind: how far back any rule that reads it looks."""
        keep: dict[str, timedelta] = {}
        for rule in self.ruleset.rules:
            for kind in rule.reading_kinds:
                keep[kind] = max(keep.get(kind, timedelta(0)), rule.window)
        return keep

    def windows(self) -> PatientWindows:
        if self._windows is None:
            self._windows = PatientWindows(self._keep())
        return self._windows

    def _default_rules(self, kind: str) -> list[Rule]:
        """The rules a reading of ``kind`` triggers for a patient without personal settings
        (what ``rules_for`` gives then), sources of inhibitions first."""
        if self._by_kind is None:
            base = self.ruleset.sources_first(rules_for(self.ruleset, [], datetime.now(UTC)))
            self._by_kind = {}
            for rule in base:
                for k in rule.reading_kinds:
                    self._by_kind.setdefault(k, []).append(rule)
        return self._by_kind.get(kind, [])

    def process_batch(self, conn: psycopg.Connection[Any]) -> BatchResult:
        windows = self.windows()
        reset, taken = self.partitions.refresh(conn)
        if reset:
            windows.clear()
        elif taken:
            windows.drop_buckets(taken)
        if not self.partitions.held:
            return BatchResult()
        try:
            return self._process(conn, windows)
        except BaseException:
            windows.clear()  # its transaction rolled back: what it added may not stand
            raise

    def _process(self, conn: psycopg.Connection[Any], windows: PatientWindows) -> BatchResult:
        result = BatchResult()
        buckets = self.partitions.claim_filter()
        with conn.transaction():
            if buckets is None:
                rows = conn.execute(CLAIM_ALL, (self.batch_size,)).fetchall()
            else:
                rows = conn.execute(CLAIM_BUCKETS, (int_array(buckets), self.batch_size)
                                    ).fetchall()
            if not rows:
                return result
            items = [QueueItem(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6] or ()))
                     for r in rows]
            result.readings = len(items)
            orphans = [i for i in items if i.patient_id is None]
            if orphans:
                attribute_late(conn, orphans)
                self._requeue_foreign(conn, orphans)
            mine = [i for i in items if i.patient_id is not None and i.values is not None]
            result.changes = self._evaluate(conn, windows, mine)
        return result

    def _requeue_foreign(self, conn: psycopg.Connection[Any], orphans: list[QueueItem]) -> None:
        """Queue again, for the engine holding their bucket, the readings just attributed
        to patients of buckets this one does not hold."""
        foreign = [i for i in orphans if i.patient_id is not None
                   and bucket_of(i.patient_id) not in self.partitions.held]
        if not foreign:
            return
        conn.execute("INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)"
                     " SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::bigint[],"
                     " %s::text[])", ([i.reading_id for i in foreign],
                                      [i.taken_at for i in foreign],
                                      [i.patient_id for i in foreign],
                                      [i.kind for i in foreign]))
        for i in foreign:
            i.patient_id = None

    def _evaluate(self, conn: psycopg.Connection[Any], windows: PatientWindows,
                  items: list[QueueItem]) -> list[AlertChange]:
        if not items:
            return []
        keep = windows.keep
        pids = sorted({i.patient_id for i in items if i.patient_id is not None})
        # Patients whose readings are not in memory back far enough for an item: load them.
        earliest: dict[int, datetime] = {}
        for i in items:
            assert i.patient_id is not None
            if i.kind in keep:  # else no rule reads it
                old = earliest.get(i.patient_id)
                if old is None or i.taken_at < old:
                    earliest[i.patient_id] = i.taken_at
        starts: dict[int, datetime] = {}
        for patient, t in earliest.items():
            cached = windows.get(patient)
            if cached is None or not all(cached.covers(k, t - keep[k]) for k in keep):
                starts[patient] = t
        windows.load(conn, starts, earliest)
        for i in items:
            if i.kind in keep:
                assert i.patient_id is not None
                windows.claimed(i.patient_id, WindowReading(i.reading_id, i.kind, i.taken_at,
                                                            i.values, i.flags))
        settings, active, status = batch_context(conn, self.ruleset, pids)
        changes: list[AlertChange] = []
        now = self.clock()
        evaluators = registry()
        for item in sorted(items, key=lambda i: (i.taken_at, i.seq)):
            pid = item.patient_id
            assert pid is not None
            personal = settings.get(pid)
            if personal:
                rules = [r for r in self._patient_rules(conn, pid, personal, item.taken_at,
                                                        now, item.reading_id)
                         if item.kind in r.reading_kinds]
            else:
                rules = self._default_rules(item.kind)
            if not rules:
                continue
            cached = windows.get(pid)
            assert cached is not None
            views: dict[tuple[timedelta, tuple[str, ...]], Window] = {}
            for rule in rules:
                kinds = rule.reading_kinds
                view = views.get((rule.window, kinds))
                if view is None:
                    view = views[rule.window, kinds] = rule_window(
                        cached, kinds, item.taken_at - rule.window, item)
                judge = evaluators[rule.kind]
                quiet = not rule.auto_resolve or rule.id not in active.get(pid, ())
                # nothing active to clear: only a firing finding matters
                fn = judge.firing if quiet and judge.firing is not None else judge.evaluate
                try:
                    finding = fn(rule, view, item.taken_at)
                except Exception as err:
                    self._failed(conn, EvaluationFailure(pid, rule.id, item.reading_id,
                                                         item.taken_at, error_text(err)), now)
                    continue
                if finding is None or (not finding.firing and quiet):
                    continue  # nothing to open, update or clear: no round trip
                change = self._apply(conn, pid, rule, finding, now, status.get(pid),
                                     active.setdefault(pid, set()), evidence_at=item.taken_at)
                if change is not None:
                    changes.append(change)
        windows.trim(pids)
        return changes

    def _patient_rules(self, conn: psycopg.Connection[Any], pid: int,
                       personal: list[PatientRuleSetting], at: datetime, now: datetime,
                       reading_id: str | None) -> list[Rule]:
        """The patient's rules at ``at`` (sources of inhibitions first); when a stored
        setting is one this rule set refuses, the default rules, and the failure said:
        judged by the defaults meanwhile is better than by none."""
        try:
            return self.ruleset.sources_first(rules_for(self.ruleset, personal, at))
        except Exception as err:
            self._failed(conn, EvaluationFailure(pid, PERSONAL_SETTINGS, reading_id, at,
                                                 error_text(err)), now)
            return self.ruleset.sources_first(rules_for(self.ruleset, [], at))

    def _failed(self, conn: psycopg.Connection[Any], failure: EvaluationFailure,
                now: datetime) -> None:
        """Called from the except clause of a failed evaluation."""
        if self.on_failure is None:
            raise  # the error being handled
        if failure.reading_id is None:  # the tick's: said once, not every tick
            said = (failure.patient_id, failure.rule_id, failure.error)
            if said in self._told:
                return
            self._told.add(said)
        log.exception("rule %s failed for patient %s (reading %s); evaluation goes on",
                      failure.rule_id, failure.patient_id, failure.reading_id or "none")
        self.on_failure(conn, failure, now)

    def _apply(self, conn: psycopg.Connection[Any], pid: int, rule: Rule,
               finding: Finding | None, now: datetime, patient_status: str | None,
               active: set[str], evidence_at: datetime | None = None) -> AlertChange | None:
        if finding is None:
            return None
        if not finding.firing and (rule.id not in active or not rule.auto_resolve):
            return None  # nothing active to clear: no round trip
        if not finding.firing and evidence_at is not None and newer_reading_stored(
                conn, pid, rule.reading_kinds, evidence_at):
            return None  # a late reading: the newer evidence, not this, decides the clear
        team_id, route = (None, None)
        if finding.firing and rule.id not in active:  # a new alert: where does it go?
            team_id, route = self.router(conn, pid, rule,
                                         str(finding.severity or rule.severity), now)
        inhibited = self.ruleset.inhibited_by(rule, patient_status=patient_status,
                                              active_rules=active)
        change = apply_finding(conn, patient_id=pid, rule=rule, finding=finding, at=now,
                               team_id=team_id, route=route, inhibited_by=inhibited,
                               none_active=rule.id not in active)
        if change is not None and self.on_change is not None:
            self.on_change(conn, change, now)
        if change is not None:
            if change.event == "auto_resolved":
                active.discard(rule.id)
            else:
                active.add(rule.id)
        return change

    def tick(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> list[AlertChange]:
        """Evaluate the rules that depend on time rather than on a new reading (missed
        readings, hub offline or silent, batteries, thresholds held ``for`` a duration)
        for every monitored patient."""
        now = now or self.clock()
        rules = [r for r in self.ruleset.rules if ticked(r)]
        if not rules:
            return []
        changes: list[AlertChange] = []
        with conn.transaction():
            homes = conn.execute(
                "SELECT p.id, p.status, e.hub_id, e.valid_from, h.state, h.last_status_at,"
                " h.last_seen_at, h.last_status FROM patient p"
                " JOIN enrolment e ON e.patient_id = p.id AND e.valid_from <= %s"
                " AND (e.valid_to IS NULL OR e.valid_to > %s)"
                " JOIN hub h ON h.id = e.hub_id WHERE p.status <> 'discharged'"
                " ORDER BY p.id", (now, now)).fetchall()
            if not homes:
                return []
            pids = [h[0] for h in homes]
            kinds = sorted({k for r in rules for k in r.reading_kinds})
            lookback = max(r.window for r in rules)
            history: dict[int, list[WindowReading]] = defaultdict(list)
            for pid, rid, kind, taken_at, values, flags in conn.execute(
                    "SELECT patient_id, id, kind, taken_at, \"values\", flags FROM reading"
                    " WHERE patient_id = ANY(%s) AND kind = ANY(%s) AND taken_at >= %s"
                    " AND taken_at <= %s ORDER BY patient_id, taken_at, id",
                    (pids, kinds, now - lookback, now)):
                history[pid].append(WindowReading(str(rid), kind, taken_at, values,
                                                  tuple(flags)))
            settings = load_settings(conn, pids)
            active = active_rules(conn, pids)
            for pid, status, hub_id, since, state, state_at, last_seen, last_status in homes:
                window = Window(tuple(history[pid]), hub_id=hub_id, hub_state=state,
                                hub_state_at=state_at, hub_last_seen=last_seen or state_at,
                                devices=devices_from_status(last_status),
                                monitored_since=since)
                for rule in self._patient_rules(conn, pid, settings.get(pid, []), now, now,
                                                None):
                    if not ticked(rule):
                        continue
                    view = window
                    if rule.kind == "threshold":
                        lo = now - rule.window
                        view = Window(tuple(r for r in window.readings if r.taken_at >= lo))
                    try:
                        finding = evaluate(rule, view, now)
                    except Exception as err:
                        self._failed(conn, EvaluationFailure(pid, rule.id, None, now,
                                                             error_text(err)), now)
                        continue
                    change = self._apply(conn, pid, rule, finding, now, status,
                                         active.setdefault(pid, set()))
                    if change is not None:
                        changes.append(change)
        return changes


#: Rule kinds evaluated by the scheduler tick (they fire on the absence of readings).
TICK_KINDS = frozenset({"missed_reading", "hub_offline", "battery_low"})


def ticked(rule: Rule) -> bool:
    """Does the scheduler evaluate this rule?  Absence rules, and thresholds held
    ``for`` a duration (they become true with the passing of time, not a reading)."""
    if rule.kind in TICK_KINDS:
        return True
    return rule.kind == "threshold" and getattr(rule.params, "for_", None) is not None


def attribute_late(conn: psycopg.Connection[Any], orphans: list[QueueItem]) -> None:
    """Give queued readings without a patient the patient their hub is now enrolled to.

    Ingest attributes a reading as of its INSERT; an enrolment committed after that
    INSERT began, but whose back-fill (``server.admin.enrol``) ran before the ingest
    committed, sees neither the other.  Here, after the ingest committed, the hubs'
    rows are locked FOR SHARE (so an enrolment in progress, which holds its hub FOR
    UPDATE, finishes first) and the readings still without a patient are attributed.
    Whichever of the two UPDATEs sets ``patient_id`` evaluates the reading; the other
    finds it attributed and leaves it: exactly once.  A reading of a hub that is still
    not enrolled (or unknown) is passed over: ``enrol`` queues it when it is.
    """
    ids, times = [i.reading_id for i in orphans], [i.taken_at for i in orphans]
    conn.execute("SELECT h.id FROM hub h WHERE h.id IN (SELECT r.hub_id FROM reading r"
                 " JOIN unnest(%s::uuid[], %s::timestamptz[]) AS q(id, taken_at)"
                 " ON r.id = q.id AND r.taken_at = q.taken_at)"
                 " ORDER BY h.id FOR SHARE", (ids, times))
    attributed = dict(conn.execute(
        "UPDATE reading r SET patient_id = e.patient_id"
        " FROM unnest(%s::uuid[], %s::timestamptz[]) AS q(id, taken_at), enrolment e"
        " WHERE r.id = q.id AND r.taken_at = q.taken_at AND r.patient_id IS NULL"
        " AND e.hub_id = r.hub_id AND e.valid_from <= r.taken_at"
        " AND (e.valid_to IS NULL OR r.taken_at < e.valid_to)"
        " RETURNING r.id::text, r.patient_id", (ids, times)).fetchall())
    for item in orphans:
        item.patient_id = attributed.get(item.reading_id)


def newer_reading_stored(conn: psycopg.Connection[Any], pid: int, kinds: tuple[str, ...],
                         at: datetime) -> bool:
    """Has the patient a reading of ``kinds`` taken after ``at``?  A reading evaluated
    late (a hub's backlog, readings attributed by a late enrolment) is judged at its own
    instant, so it may still open or re-trigger an alert (its values were never seen),
    but it never clears one: a newer reading was, or will be, evaluated and decides."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM reading WHERE patient_id = %s"
                        " AND kind = ANY(%s) AND taken_at > %s)",
                        (pid, list(kinds), at)).fetchone() == (True,)


def batch_context(conn: psycopg.Connection[Any], ruleset: RuleSet, pids: list[int]
                  ) -> tuple[dict[int, list[PatientRuleSetting]], dict[int, set[str]],
                             dict[int, str]]:
    """In one round trip, for a batch's patients: their personal rule settings (as
    ``settings_store.load_settings``), their active alerts' rules (as :func:`active_rules`)
    and the statuses that mute alerts (``inhibit: when_patient_status``; a patient in any
    other status is left out, which ``RuleSet.inhibited_by`` treats alike)."""
    muting = sorted({s for i in ruleset.inhibitions for s in i.when_patient_status})
    ids = int_array(pids)
    settings: dict[int, list[PatientRuleSetting]] = {}
    active: dict[int, set[str]] = {}
    status: dict[int, str] = {}
    for source, pid, text, enabled, params, valid_from, valid_to, set_by in conn.execute(
            "SELECT 's', patient_id, rule_id, enabled, params, valid_from, valid_to, set_by"
            " FROM patient_rule_setting WHERE patient_id = ANY(%(ids)s::bigint[])"
            " UNION ALL SELECT 'a', patient_id, rule_id, NULL, NULL, NULL, NULL, NULL FROM alert"
            " WHERE patient_id = ANY(%(ids)s::bigint[]) AND state IN ('open', 'acknowledged')"
            " UNION ALL SELECT 'p', id, status, NULL, NULL, NULL, NULL, NULL FROM patient"
            " WHERE id = ANY(%(ids)s::bigint[]) AND status = ANY(%(muting)s::text[])"
            " ORDER BY 1, 6", {"ids": ids, "muting": muting}):
        if source == "s":
            settings.setdefault(pid, []).append(
                PatientRuleSetting(pid, text, enabled, params, valid_from, valid_to, set_by))
        elif source == "a":
            active.setdefault(pid, set()).add(text)
        else:
            status[pid] = text
    return settings, active, status


def active_rules(conn: psycopg.Connection[Any], pids: list[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for pid, rule_id in conn.execute(
            "SELECT patient_id, rule_id FROM alert WHERE patient_id = ANY(%s::bigint[])"
            " AND state IN ('open', 'acknowledged')", (int_array(pids),)):
        out.setdefault(pid, set()).add(rule_id)
    return out


def devices_from_status(status: Any) -> tuple[DeviceView, ...]:
    """Devices (battery, last seen) from a hub's retained status message."""
    if not isinstance(status, dict):
        return ()
    out = []
    for d in status.get("devices") or []:
        if not isinstance(d, dict) or not isinstance(d.get("address"), str):
            continue
        battery = d.get("battery")
        seen = d.get("last_seen")
        out.append(DeviceView(d["address"], str(d.get("kind") or ""),
                              float(battery) if isinstance(battery, int | float) else None,
                              datetime.fromisoformat(seen.replace("Z", "+00:00"))
                              if isinstance(seen, str) else None))
    return tuple(out)


@dataclass
class Worker:
    """The long-running loop: LISTEN, drain the queue, tick the scheduler, repeat."""

    url: str
    engine: AlertEngine
    poll_interval: float = 1.0
    tick: Callable[[psycopg.Connection[Any], datetime], object] | None = None
    tick_interval: float = 5.0
    #: Delivers the notification outbox; runs in its own thread with its own connection
    #: (a slow SMTP server never delays evaluation), woken after each batch that changed
    #: alerts and every ``delivery_interval`` seconds for retries.
    delivery: Callable[[psycopg.Connection[Any], datetime], object] | None = None
    delivery_interval: float = 1.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    evaluated: int = 0
    #: Counts batches, alert changes and (through the service's hooks) the rest.
    metrics: AlertMetrics | None = None
    #: ``time.monotonic()`` when the loop last came round (its heartbeat; None: not yet),
    #: and whether its database connections are open; /healthz reads both.
    last_beat_at: float | None = None
    connected: bool = False
    delivery_ok: bool = True
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)

    def readiness(self, stale_s: float = 30.0) -> Readiness:
        """Ready while the loop comes round within ``stale_s`` on open connections."""
        beat = self.last_beat_at
        return Readiness(
            {"heartbeat": fresh(beat, stale_s), "database": self.connected,
             "running": not self.stop_event.is_set()},
            {"stale_limit_seconds": stale_s, "delivery_ok": self.delivery_ok,
             "evaluated": self.evaluated,
             "heartbeat_age_seconds": None if beat is None
             else round(time.monotonic() - beat, 3)})

    def _deliver_loop(self) -> None:
        assert self.delivery is not None
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    while not self.stop_event.is_set():
                        self._wake.wait(self.delivery_interval)
                        self._wake.clear()
                        self.delivery(conn, self.engine.clock())
                        self.delivery_ok = True
            except Exception:
                self.delivery_ok = False
                log.exception("notification delivery failed; retrying")
                self.stop_event.wait(self.delivery_interval)

    def run(self) -> None:
        if self.delivery is not None:
            threading.Thread(target=self._deliver_loop, name="outbox", daemon=True).start()
        try:
            self._run()
        finally:
            self.connected = False
            self.stop_event.set()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as listen_conn, \
                psycopg.connect(self.url, autocommit=True) as conn:
            use_orjson(conn)
            listen_conn.execute("LISTEN evaluation_queue")
            self.connected = True
            log.info("alert engine listening (poll every %.1fs)", self.poll_interval)
            last_tick = 0.0
            while not self.stop_event.is_set():
                self.last_beat_at = time.monotonic()
                changed = False
                while True:
                    started = time.perf_counter()
                    batch = self.engine.process_batch(conn)
                    seconds = time.perf_counter() - started
                    if batch.readings:
                        log.debug("batch: %d readings, %d alert changes, %.1f ms",
                                  batch.readings, len(batch.changes), seconds * 1000,
                                  extra={"alert_ids": sorted({c.alert_id
                                                              for c in batch.changes})[:20]
                                         or None})
                    if self.metrics is not None:
                        self.metrics.record_batch(batch.readings, batch.changes, seconds)
                    self.evaluated += batch.readings
                    self.last_beat_at = time.monotonic()  # a long drain is progress too
                    changed = changed or bool(batch.changes)
                    if batch.readings < self.engine.batch_size:
                        break
                if changed:
                    self._wake.set()
                if self.tick is not None and time.monotonic() - last_tick >= self.tick_interval:
                    last_tick = time.monotonic()
                    try:
                        self.tick(conn, self.engine.clock())
                    except Exception:
                        log.exception("scheduler tick failed; retrying next tick")
                self._wait(listen_conn)

    def _wait(self, listen_conn: psycopg.Connection[Any]) -> None:
        """Sleep until a NOTIFY arrives or the poll interval passes."""
        for _ in listen_conn.notifies(timeout=self.poll_interval, stop_after=1):
            pass
