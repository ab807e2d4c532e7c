"""How a rule set did on a simulated ward: sensitivity, time to alert, the right team, false
alerts and workload, from a run's alerts and the cohort's ground truth.  Pure: DataFrames in,
DataFrames and a JSON-ready dict out.

Definitions (docs/clinical-evaluation.md says why):

- An episode (a scripted deterioration) is **alerted** when, between its onset and its
  harm time, an alert for that patient from a clinical rule (not an equipment or adherence
  rule) opened or was raised to a higher severity: either reaches a team.
- **Time to alert** is from onset to that first event; the **lead** is from it to harm.
- The **right team** is the one the routing tree names for the alert at that time (the
  patient's care teams, the severity, the hour); in and out of hours are counted apart.
- A **false alert** is an alert that opened outside every episode of its patient (from
  onset to the end of recovery).  The false alert rate counts the clinical rules' amber
  and red alerts (the ones a nurse must act on); their info alerts (review-only) and the
  equipment and adherence rules' alerts are counted apart, and per rule.
- **Workload** is alerts opened per team per day, every rule included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from alerts.routing import AlertFacts, RoutingTree
from alerts.ruleset import RuleSet
from device_sim.cohort import Cohort
from stack.ward_run import RunResult
from stack.ward_world import TEAMS

#: Rules whose alerts are about the equipment or the patient's adherence, not their body.
NON_CLINICAL_SYSTEMS = frozenset({"equipment", "adherence"})
ALERTING_EVENTS = ("opened", "severity_raised")


def clinical_rules(ruleset: RuleSet) -> set[str]:
    return {r.id for r in ruleset.rules if r.labels.get("system") not in NON_CLINICAL_SYSTEMS}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(pd.Series(values).quantile(q))


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def detections(cohort: Cohort, run: RunResult, ruleset: RuleSet,
               routing: RoutingTree) -> pd.DataFrame:
    """One row per episode: whether, when, by which rule and to which team it was alerted."""
    clinical = clinical_rules(ruleset)
    rules = {r.id: r for r in ruleset.rules}
    ev = run.events
    ev = ev[ev["event"].isin(ALERTING_EVENTS) & ev["rule_id"].isin(clinical)]
    rows = []
    for e in cohort.episodes:
        mine = ev[(ev["patient"] == e.patient) & (ev["at"] >= e.onset) & (ev["at"] < e.harm)]
        mine = mine.sort_values(["at", "alert_id"])
        row: dict[str, Any] = {"patient": e.patient, "scenario": e.scenario,
                               "onset": e.onset, "harm": e.harm, "alerted": not mine.empty,
                               "rules": ",".join(sorted(set(mine["rule_id"])))}
        if not mine.empty:
            first = mine.iloc[0]
            at: datetime = first["at"]
            patient = cohort.patient(e.patient)
            # in the engine's order (alerts.notify care_teams: by team id): "$care_team"
            # falls back to the first of them
            care = tuple(sorted((TEAMS[k], k) for k in patient.care_teams))
            rule = rules[first["rule_id"]]
            expected = routing.route(AlertFacts(care, str(first["severity"]), at,
                                                dict(rule.labels), rule.id))[0].team_id
            row.update({"first_rule": first["rule_id"], "severity": first["severity"],
                        "alerted_at": at,
                        "hours_to_alert": (at - e.onset).total_seconds() / 3600,
                        "hours_before_harm": (e.harm - at).total_seconds() / 3600,
                        "team_id": first["team_id"], "expected_team": expected,
                        "right_team": first["team_id"] == expected,
                        "in_hours": routing.in_schedule("in_hours", at)})
        rows.append(row)
    return pd.DataFrame(rows)


def false_alerts(cohort: Cohort, run: RunResult) -> pd.DataFrame:
    """The alerts that opened outside every episode of their patient."""
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for e in cohort.episodes:
        windows.setdefault(e.patient, []).append((e.onset, e.end))
    alerts = run.alerts[run.alerts["category"] == "clinical"]

    def outside(row: Any) -> bool:
        return not any(lo <= row.opened_at < hi for lo, hi in windows.get(row.patient, ()))

    mask = [outside(r) for r in alerts.itertuples()]
    return alerts[mask] if len(alerts) else alerts


def evaluate(cohort: Cohort, run: RunResult, ruleset: RuleSet,
             routing: RoutingTree) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (deterministic for a given run)."""
    det = detections(cohort, run, ruleset, routing)
    false = false_alerts(cohort, run)
    clinical = clinical_rules(ruleset)
    patient_days = cohort.spec.patients * cohort.spec.days
    scenarios: dict[str, Any] = {}
    for name in sorted(set(e.scenario for e in cohort.episodes)):
        rows = det[det["scenario"] == name]
        hit = rows[rows["alerted"]]
        hours = [float(h) for h in hit["hours_to_alert"]] if len(hit) else []
        lead = [float(h) for h in hit["hours_before_harm"]] if len(hit) else []
        by_rule = {}
        for rule in sorted(clinical):
            caught = sum(rule in str(r).split(",") for r in rows["rules"])
            if caught:
                by_rule[rule] = _round(caught / len(rows), 3)
        scenarios[name] = {
            "episodes": len(rows), "alerted": len(hit),
            "sensitivity": _round(len(hit) / len(rows), 3) if len(rows) else None,
            "median_hours_to_alert": _round(_quantile(hours, 0.5)),
            "p90_hours_to_alert": _round(_quantile(hours, 0.9)),
            "median_hours_before_harm": _round(_quantile(lead, 0.5)),
            "right_team_in_hours": _share(hit, True),
            "right_team_out_of_hours": _share(hit, False),
            "sensitivity_by_rule": by_rule,
        }
    alerts = run.alerts
    per_rule: dict[str, Any] = {}
    for rule in sorted(set(alerts["rule_id"])) if len(alerts) else []:
        mine = alerts[alerts["rule_id"] == rule]
        per_rule[rule] = {
            "alerts": len(mine),
            "false": int((false["rule_id"] == rule).sum()) if len(false) else 0,
            "false_per_patient_day": _round(
                ((false["rule_id"] == rule).sum() if len(false) else 0) / patient_days, 4),
            "clinical": rule in clinical,
        }
    clinical_false = false_info = 0
    if len(false):
        mine = false[false["rule_id"].isin(clinical)]
        clinical_false = int((mine["severity"] != "info").sum())
        false_info = int((mine["severity"] == "info").sum())
    workload = {team: _round(n / cohort.spec.days, 2) for team, n in
                sorted(alerts.groupby("team_id").size().items())} if len(alerts) else {}
    total = len(det)
    hit_all = int(det["alerted"].sum()) if total else 0
    return {
        "cohort": {"patients": cohort.spec.patients, "days": cohort.spec.days,
                   "seed": cohort.spec.seed, "start": cohort.spec.start.isoformat(),
                   "readings": len(cohort.readings), "episodes": total},
        "readings_stored": run.readings_stored,
        "alerts": len(alerts),
        "sensitivity": _round(hit_all / total, 3) if total else None,
        "false_alerts_per_patient_day": _round(clinical_false / patient_days, 4),
        "false_info_alerts_per_patient_day": _round(false_info / patient_days, 4),
        "adherence_and_equipment_alerts_per_patient_day": _round(
            int((~alerts["rule_id"].isin(clinical)).sum()) / patient_days if len(alerts)
            else 0, 4),
        "all_alerts_per_patient_day": _round(len(alerts) / patient_days, 4),
        "alerts_per_team_per_day": workload,
        "scenarios": scenarios,
        "rules": per_rule,
    }


def _share(hit: pd.DataFrame, in_hours: bool) -> float | None:
    rows = hit[hit["in_hours"] == in_hours] if len(hit) else hit
    if not len(rows):
        return None
    return _round(float(rows["right_team"].mean()), 3)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Two reports side by side: the headline figures and each scenario's."""
    rows = [("sensitivity", a["sensitivity"], b["sensitivity"]),
            ("false amber/red alerts / patient-day", a["false_alerts_per_patient_day"],
             b["false_alerts_per_patient_day"]),
            ("adherence and equipment alerts / patient-day",
             a["adherence_and_equipment_alerts_per_patient_day"],
             b["adherence_and_equipment_alerts_per_patient_day"]),
            ("all alerts / patient-day", a["all_alerts_per_patient_day"],
             b["all_alerts_per_patient_day"])]
    for name in sorted(set(a["scenarios"]) | set(b["scenarios"])):
        sa, sb = a["scenarios"].get(name, {}), b["scenarios"].get(name, {})
        rows.append((f"{name}: sensitivity", sa.get("sensitivity"), sb.get("sensitivity")))
        rows.append((f"{name}: median h to alert", sa.get("median_hours_to_alert"),
                     sb.get("median_hours_to_alert")))
    return pd.DataFrame(rows, columns=["figure", "rules", "other rules"])
