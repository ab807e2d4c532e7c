"""The people and places a simulated virtual ward runs in: teams, nurses, rotas, patients, hubs.

Both ways of running a cohort (:mod:`stack.ward_fast`, :mod:`stack.ward_live`) seed the
same world into an empty, migrated database, so that their alerts can be compared row
for row: one team per care-team kind (ids as the default routing tree names them, the
out-of-hours team among them), two nurses per team on the rota at levels 0 and 1 for the
whole period, and per patient a hub enrolled from the start with the patient's devices
paired and the care plan's personal rule settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts.ruleset import RuleSet
from alerts.settings_store import set_patient_rule
from device_sim.cohort import Cohort, SimPatient
from homeward.kinds import Kind

#: Team id per care-team kind; "out-of-hours" is the routing tree's out-of-hours team
#: and its default fallback.
TEAMS: dict[str, str] = {
    "district_nursing": "district-nursing",
    "copd": "copd-team",
    "heart_failure": "heart-failure-team",
    "gp_practice": "gp-practice",
    "out_of_hours": "out-of-hours",
}
ORGANISATION = "Virtual Ward Trust"


@dataclass
class World:
    patient_ids: dict[str, int] = field(default_factory=dict)     # cohort key -> patient.id
    hubs: dict[str, str] = field(default_factory=dict)            # cohort key -> hub id
    nurses: dict[str, int] = field(default_factory=dict)          # team id -> clinician id


def hub_id(patient: SimPatient) -> str:
    return f"ward-hub-{patient.number:03d}"


def device_address(patient: SimPatient, kind: Kind) -> str:
    """Stable per patient and kind (the live run's virtual devices use the same)."""
    index = list(Kind).index(kind) + 1
    return f"D0:0D:{patient.number // 256:02X}:{patient.number % 256:02X}:00:{index:02X}"


#: A COPD patient's personal SpO2 limits: the shipped spo2_low rule says such patients
#: need their own, and BTS 2017 (O'Driscoll et al., Thorax 2017;72:i1-i90) gives 88-92 %
#: as the target range of those at risk of hypercapnic failure: amber at 91 % or less,
#: red at 88 % or less, cleared by two readings of 92 % or more.
COPD_SPO2_LIMITS: dict[str, Any] = {
    "levels": {"amber": {"metric": "spo2", "op": "<=", "value": 91},
               "red": {"metric": "spo2", "op": "<=", "value": 88}},
    "clear": {"metric": "spo2", "op": ">=", "value": 92},
}


def personal_settings(patient: SimPatient) -> list[dict[str, Any]]:
    """The care plan's rule settings for ``patient``: a COPD patient's oximetry schedule
    switches on the missed-reading rule (off by default, see alerts/rules/default.yaml),
    and their SpO2 limits are their own."""
    if patient.condition != "copd":
        return []
    return [{"rule_id": "missed_spo2", "enabled": True,
             "params": {"at": list(patient.schedule[Kind.SPO2])},
             "note": "virtual ward: oximetry three times a day"},
            {"rule_id": "spo2_low", "enabled": True, "params": COPD_SPO2_LIMITS,
             "note": "virtual ward: COPD target range 88-92 % (BTS 2017)"}]


def seed_world(conn: psycopg.Connection[Any], cohort: Cohort, ruleset: RuleSet) -> World:
    """Write the world for ``cohort`` (one transaction); the care plans' settings only when
    the cohort has them, and only for rules in ``ruleset``."""
    known = {r.id for r in ruleset.rules} if cohort.spec.care_plans else set()
    world = World()
    start = cohort.spec.start_at
    since = start - timedelta(days=1)
    until = cohort.spec.end_at + timedelta(days=2)
    with conn.transaction():
        org = conn.execute("INSERT INTO organisation (name) VALUES (%s) RETURNING id",
                           (ORGANISATION,)).fetchone()
        assert org is not None
        for kind, team in TEAMS.items():
            conn.execute("INSERT INTO team (id, organisation_id, name, kind) VALUES"
                         " (%s, %s, %s, %s)", (team, org[0], team.replace("-", " ").title(),
                                               kind))
            for level in (0, 1):
                row = conn.execute(
                    "INSERT INTO clinician (username, display_name, role) VALUES"
                    " (%s, %s, 'nurse') RETURNING id",
                    (f"{team}-{level}", f"{team} nurse {level}")).fetchone()
                assert row is not None
                conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)",
                             (team, row[0]))
                conn.execute("INSERT INTO rota_shift (team_id, clinician_id, level, starts_at,"
                             " ends_at) VALUES (%s, %s, %s, %s, %s)",
                             (team, row[0], level, since, until))
                if level == 0:
                    world.nurses[team] = int(row[0])
        for patient in cohort.patients:
            pid = _add_patient(conn, patient, since)
            world.patient_ids[patient.key] = pid
            world.hubs[patient.key] = hub_id(patient)
            for setting in personal_settings(patient):
                if setting["rule_id"] not in known:
                    continue
                set_patient_rule(conn, patient_id=pid, rule_id=setting["rule_id"],
                                 enabled=setting["enabled"], params=setting["params"],
                                 set_by=None, valid_from=since, note=setting["note"],
                                 ruleset=ruleset)
    return world


def _add_patient(conn: psycopg.Connection[Any], patient: SimPatient, since: datetime) -> int:
    row = conn.execute("INSERT INTO patient (display_name) VALUES (%s) RETURNING id",
                       (f"Ward patient {patient.number:03d} ({patient.condition})",)).fetchone()
    assert row is not None
    pid = int(row[0])
    for kind in patient.care_teams:
        conn.execute("INSERT INTO patient_team (patient_id, team_id) VALUES (%s, %s)",
                     (pid, TEAMS[kind]))
    hub = hub_id(patient)
    conn.execute("INSERT INTO hub (id, created_at) VALUES (%s, %s)", (hub, since))
    conn.execute("INSERT INTO enrolment (hub_id, patient_id, valid_from) VALUES (%s, %s, %s)",
                 (hub, pid, since))
    for kind in patient.devices:
        conn.execute("INSERT INTO device (hub_id, address, kind, paired_at) VALUES"
                     " (%s, %s, %s, %s)", (hub, device_address(patient, kind), str(kind), since))
    return pid
