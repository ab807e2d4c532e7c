"""The hazard log and the tests agree (issue 13): every hazard has a control, every
control names tests, every named test is collected and marked for its hazard, and every
``hazard`` marker is named in the log under that hazard.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stack.safety_log import (
    RISK_MATRIX,
    HazardLog,
    Likelihood,
    Severity,
    base_id,
    load,
    problems,
    risk,
)

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "safety" / "hazard-log.yaml"


def collected_hazards(tmp_path: Path) -> dict[str, list[str]]:
    """Every test pytest collects in this checkout, with the hazards its markers name."""
    evidence = tmp_path / "collected.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         f"--hazard-evidence={evidence}", str(ROOT / "tests")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(evidence.read_text())["collected"]  # type: ignore[no-any-return]


def test_the_log_and_the_tests_agree_both_ways(tmp_path: Path) -> None:
    log = load(LOG)
    collected = collected_hazards(tmp_path)
    assert problems(log, collected) == []
    # and the check has teeth: deleting (or renaming) any one named test is caught
    for test in sorted({t for hazard in log.hazards for t in hazard.tests}):
        without = {k: v for k, v in collected.items() if base_id(k) != test}
        assert any(f"{test} is not a collected test" in p for p in problems(log, without)), test


def test_the_log_covers_the_hazards_the_issue_names() -> None:
    titles = " / ".join(h.title.lower() for h in load(LOG).hazards)
    for words in ("lost", "duplicated", "wrong patient", "unit", "device clock",
                  "implausible", "not raised", "late", "not delivered", "fatigue",
                  "wrong team", "stale", "missed readings", "hub offline", "unauthorised",
                  "another patient", "threshold change", "hand-over", "time zone",
                  "restore"):
        assert words in titles, words


# -- the checks themselves, on a small log ---------------------------------------------

def assessment(severity: str, likelihood: str) -> dict[str, Any]:
    return {"severity": severity, "likelihood": likelihood,
            "risk": risk(Severity(severity), Likelihood(likelihood))}


def hazard(hazard_id: str = "H-001", **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": hazard_id, "title": "Reading lost", "cause": "c", "effect": "e",
        "initial": assessment("major", "medium"),
        "controls": [{"control": "outbox", "tests": ["tests/test_a.py::test_kept"]}],
        "residual": assessment("major", "very low"), "status": "closed"}
    entry.update(changes)
    return entry


def small_log(*hazards: dict[str, Any]) -> HazardLog:
    return HazardLog.model_validate({"title": "t", "version": "1", "reviewed": "2026-12-03",
                                     "hazards": list(hazards) or [hazard()]})


@pytest.mark.parametrize(("collected", "expected"), [
    ({"tests/test_a.py::test_kept": ["H-001"]}, []),
    # parametrized cases are one test to the log
    ({"tests/test_a.py::test_kept[one]": ["H-001"], "tests/test_a.py::test_kept[two]": ["H-001"]},
     []),
    # the named test was deleted or renamed
    ({"tests/test_a.py::test_other": []},
     ["H-001: tests/test_a.py::test_kept is not a collected test"]),
    # named, but not marked for the hazard
    ({"tests/test_a.py::test_kept": []},
     ["H-001: tests/test_a.py::test_kept is not marked @pytest.mark.hazard('H-001')"]),
    # marked for a hazard the log does not name it under
    ({"tests/test_a.py::test_kept": ["H-001"], "tests/test_b.py::test_x": ["H-001"]},
     ["tests/test_b.py::test_x is marked H-001, but the log does not name it there"]),
    # marked for a hazard that is not in the log
    ({"tests/test_a.py::test_kept": ["H-001", "H-009"]},
     ["tests/test_a.py::test_kept is marked H-009, which is not in the log"]),
])
def test_problems_between_log_and_markers(collected: dict[str, list[str]],
                                          expected: list[str]) -> None:
    assert problems(small_log(), collected) == expected


@pytest.mark.parametrize(("changes", "message"), [
    ({"controls": []}, "at least 1 item"),
    ({"controls": [{"control": "outbox", "tests": []}]}, "at least 1 item"),
    ({"controls": [{"control": "outbox", "tests": ["test_a.py::test_kept"]}]},
     "should match pattern"),
    ({"initial": {"severity": "major", "likelihood": "medium", "risk": 2}},
     "risk 2 is not the matrix's 3"),
    ({"residual": assessment("catastrophic", "high")}, "residual risk 5 above the initial 3"),
    ({"residual": assessment("major", "low")}, "closed with residual risk 3"),
    ({"status": "open"}, "its gaps are not written down"),
    ({"id": "H-1"}, "should match pattern"),
    ({"owner": "someone"}, "Extra inputs are not permitted"),
])
def test_an_invalid_entry_is_refused_naming_why(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        small_log(hazard(**changes))


def test_an_id_appears_once() -> None:
    with pytest.raises(ValidationError, match="H-001 appears twice"):
        small_log(hazard(), hazard())


def test_the_risk_matrix_is_dcb0129s() -> None:
    # DCB0129's matrix: corners and its diagonal (see stack/safety_log.py for the source)
    assert risk(Severity.MINOR, Likelihood.VERY_LOW) == 1
    assert risk(Severity.CATASTROPHIC, Likelihood.VERY_HIGH) == 5
    assert risk(Severity.MINOR, Likelihood.VERY_HIGH) == 3
    assert risk(Severity.CATASTROPHIC, Likelihood.VERY_LOW) == 3
    assert [risk(s, lk) for s, lk in zip(Severity, reversed(Likelihood), strict=True)] == [
        3, 3, 3, 3, 3]
    for row in RISK_MATRIX.values():  # risk never falls as severity rises
        assert list(row) == sorted(row)


def test_base_id_drops_parameters_only() -> None:
    assert base_id("tests/t.py::test_x[a-b[1]]") == "tests/t.py::test_x"
    assert base_id("tests/t.py::C::test_x") == "tests/t.py::C::test_x"
