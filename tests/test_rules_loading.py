"""Rule and routing files: the shipped ones load; broken ones fail naming the culprit and
file:line; ``homeward rules check`` and ``homeward rules route-test`` on the command line."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from alerts.errors import RuleError
from alerts.routing import AlertFacts, load_routing, parse_routing
from alerts.ruleset import load_ruleset, parse_ruleset, with_overrides

GOOD = """\
rules:
  - id: spo2_low
    kind: threshold
    title: Low SpO2
    severity: red
    source: NHS England CO@home v1.3
    reading_kinds: [spo2]
    params:
      when: {metric: spo2, op: "<=", value: 92}
"""


def test_every_shipped_rule_cites_a_source_and_loads():
    rules = load_ruleset().rules
    assert {r.id for r in rules} >= {"bp_severe", "news2", "spo2_low", "hf_weight_change",
                                     "home_bp_average", "glucose_low", "missed_spo2",
                                     "hub_offline", "battery_low"}
    for r in rules:
        assert len(r.source) > 20, r.id
    sources = " ".join(r.source for r in rules)
    for cited in ("NICE NG136", "Royal College of Physicians", "ESC Heart Failure",
                  "Oximetry @home"):
        assert cited in sources


def test_rules_are_frozen():
    rule = load_ruleset().rules[0]
    with pytest.raises(AttributeError):
        rule.severity = "info"


def _broken(replace: str, by: str) -> str:
    assert replace in GOOD
    return GOOD.replace(replace, by)


@pytest.mark.hazard("H-007")
@pytest.mark.parametrize(("text", "where", "message"), [
    (_broken('op: "<="', 'op: "=<"'), "t.yaml:9", "spo2_low.when: unknown op '=<'"),
    (_broken("kind: threshold", "kind: thresold"), "t.yaml:2", "unknown kind 'thresold'"),
    (_broken("severity: red", "severity: purple"), "t.yaml:2", "unknown severity 'purple'"),
    (_broken("    source: NHS England CO@home v1.3\n", ""), "t.yaml:2",
     "spo2_low: 'source' is required"),
    (_broken("reading_kinds: [spo2]", "reading_kinds: [sp02]"), "t.yaml:2",
     "unknown reading kinds ['sp02']"),
    (_broken("value: 92", "value: ninety"), "t.yaml:9", "value must be a number"),
    (_broken("      when:", "      for: 10 minutes\n      when:"), "t.yaml:9",
     "spo2_low.for: not a duration"),
    (_broken("    params:", "    colour: red\n    params:"), "t.yaml:2", "unknown keys ['colour']"),
    (GOOD + GOOD.split("rules:\n")[1], "t.yaml:10",
     "duplicate rule id (first defined at t.yaml:2)"),
    ("rules:\n  - id: x\n    kind: [unclosed\n", "t.yaml:4", "not valid YAML"),
])
def test_errors_name_the_culprit_and_where(text, where, message):
    with pytest.raises(RuleError) as err:
        parse_ruleset(text, source="t.yaml")
    assert str(err.value).startswith(where), str(err.value)
    assert message in str(err.value)


def test_personal_overrides_are_validated_too():
    rule = parse_ruleset(GOOD, source="t.yaml").rules[0]
    personal = with_overrides(rule, {"when": {"metric": "spo2", "op": "<=", "value": 88}})
    assert personal.params.levels[0].when.value == 88
    assert rule.params.levels[0].when.value == 92  # the original is untouched
    with pytest.raises(RuleError, match="patient setting for spo2_low"):
        with_overrides(rule, {"when": {"metric": "spo2", "op": "<<", "value": 88}})


ROUTES = """\
schedules:
  day: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}
  night: {not: day}
escalation_policies:
  p: {levels: [{notify: on_duty}]}
route:
  team: $care_team
  escalation: p
  routes:
    - name: hf
      match: {care_team_kind: heart_failure}
      continue: true
    - name: nights
      match: {schedule: night}
      team: ooh
    - name: red
      match: {severity: red}
      team: red-team
"""


@pytest.mark.hazard("H-011")
@pytest.mark.parametrize(("at", "severity", "expected"), [
    ("2026-11-23T10:00:00+00:00", "amber", [("root/hf", "hf-1"), ("root", "dn-1")][:1]),
    ("2026-11-23T10:00:00+00:00", "red", [("root/hf", "hf-1"), ("root/red", "red-team")]),
    ("2026-11-23T20:00:00+00:00", "red", [("root/hf", "hf-1"), ("root/nights", "ooh")]),
    ("2026-11-28T10:00:00+00:00", "amber", [("root/hf", "hf-1"), ("root/nights", "ooh")]),
])
def test_first_match_wins_unless_continue(at, severity, expected):
    tree = parse_routing(ROUTES, source="r.yaml")
    dests = tree.route(AlertFacts((("dn-1", "district_nursing"), ("hf-1", "heart_failure")),
                                  severity, datetime.fromisoformat(at)))
    assert [(d.route, d.team_id) for d in dests] == expected


@pytest.mark.hazard("H-011", "H-019")
def test_schedules_are_london_wall_clock_across_the_clock_change():
    tree = load_routing()
    summer_8am_london = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)     # BST
    winter_8am_london = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)    # GMT
    assert tree.in_schedule("in_hours", summer_8am_london)
    assert tree.in_schedule("in_hours", winter_8am_london)
    assert not tree.in_schedule("in_hours", datetime(2026, 7, 1, 6, 59, tzinfo=UTC))
    assert tree.in_schedule("out_of_hours", datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # Sat


@pytest.mark.parametrize(("replace", "by", "message"), [
    ("schedule: night", "schedule: nite", "r.yaml:13: root/nights: unknown schedule 'nite'"),
    ("escalation: p", "escalation: q", "r.yaml:7: root: unknown escalation policy 'q'"),
    ("{notify: on_duty}", "{notify: pager}", "escalation_policies.p.levels[0]"),
    ("continue: true", "continue: yes please", "continue must be true or false"),
    ("match: {severity: red}", "match: {severity: red, colour: blue}", "unknown matchers"),
])
def test_routing_errors_name_the_culprit(replace, by, message):
    with pytest.raises(RuleError) as err:
        parse_routing(ROUTES.replace(replace, by), source="r.yaml")
    assert message in str(err.value)


def homeward(repo_root, *args):
    return subprocess.run([str(repo_root / ".venv/bin/homeward"), *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_rules_check(tmp_path, repo_root):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(_broken('op: "<="', 'op: "=<"'))
    ok = homeward(repo_root, "rules", "check", str(good),
                  str(repo_root / "alerts/rules/default.yaml"),
                  str(repo_root / "alerts/rules/routes.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "good.yaml: OK (1 rules" in ok.stdout
    assert "routes.yaml: OK (routing tree" in ok.stdout
    failed = homeward(repo_root, "rules", "check", str(bad))
    assert failed.returncode == 1
    assert f"{bad}:9: spo2_low.when: unknown op '=<'" in failed.stderr


def test_cli_route_test(repo_root):
    out = homeward(repo_root, "rules", "route-test", "--care-team", "copd-north:copd",
                   "--rule", "spo2_low", "--severity", "red", "--at", "2026-11-23T22:00")
    assert out.returncode == 0, out.stderr
    assert "root/out-of-hours/red: team=out-of-hours" in out.stdout
    assert "escalation=urgent" in out.stdout
    day = homeward(repo_root, "rules", "route-test", "--care-team", "copd-north:copd",
                   "--rule", "spo2_low", "--at", "2026-11-24T10:00")
    assert "root/in-hours/copd: team=copd-north" in day.stdout

