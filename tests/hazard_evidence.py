"""The test side of the hazard log (docs/safety/hazard-log.yaml, issue 13).

``@pytest.mark.hazard("H-001", ...)`` marks a test as evidence for those hazards, so
``pytest -m hazard`` runs the safety evidence alone.  ``--hazard-evidence FILE`` writes
what a run collected (every test with the hazards its markers name, before ``-m`` or
``-k`` deselect anything) and how each test ended, as JSON: the consistency test and
``homeward safety report`` read it.  Under xdist the outcomes come from the controller,
the collection from the process that collected (run ``--collect-only`` without ``-n``
for the collection alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_COLLECTED = pytest.StashKey[dict[str, list[str]]]()
_RESULTS = pytest.StashKey[dict[str, dict[str, Any]]]()
_CONFIG: dict[str, pytest.Config] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hazard-evidence", metavar="FILE", default=None,
                     help="write the collected tests' hazard markers and the outcomes "
                          "of the tests run as JSON (docs/safety)")


def hazards_of(item: pytest.Item) -> list[str]:
    named: set[str] = set()
    for mark in item.iter_markers("hazard"):
        if not mark.args or not all(isinstance(a, str) for a in mark.args):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.hazard needs hazard ids "
                                    "such as 'H-001'")
        named.update(mark.args)
    return sorted(named)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    collected = {}
    for item in items:
        hazards = hazards_of(item)
        collected[item.nodeid] = hazards
        if hazards:  # travels with the reports to xdist's controller
            item.user_properties.append(("hazards", " ".join(hazards)))
    if not _is_worker(config):
        config.stash[_COLLECTED] = collected


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or not config.getoption("hazard_evidence"):
        return
    results = config.stash.setdefault(_RESULTS, {})
    entry = results.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0,
                                               "hazards": []})
    entry["duration"] += report.duration
    for name, value in report.user_properties:
        if name == "hazards":
            entry["hazards"] = str(value).split()
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG["config"] = config  # pytest_runtest_logreport is given the report alone


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("hazard_evidence")
    if not path or _is_worker(session.config):
        return
    Path(path).write_text(json.dumps({
        "collected": session.config.stash.get(_COLLECTED, {}),
        "results": session.config.stash.get(_RESULTS, {}),
        "exitstatus": int(exitstatus),
    }, indent=1, sort_keys=True), encoding="utf-8")
