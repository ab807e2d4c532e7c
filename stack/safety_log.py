"""The clinical hazard log (``docs/safety/hazard-log.yaml``): its model and its checks.

Clinical risk management to DCB0129 (NHS England, "DCB0129: Clinical Risk Management:
its Application in the Manufacture of Health IT Systems") estimates each hazard's risk
from a severity and a likelihood on five-point scales through the standard's risk
matrix, before and after its controls.  The matrix below is the standard's, as NHS
England also publishes it in the UK Core hazard log (HL7 FHIR UK Core R4, "Risk Matrix"
and "Risk Rating").

Every control names the pytest node ids of the tests that prove it, and every such
test carries ``@pytest.mark.hazard("H-0nn")``; :func:`problems` says where the log and
the tests disagree, so a control cannot silently lose its evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Where the log lives in a checkout.
DEFAULT_LOG = Path("docs/safety/hazard-log.yaml")


class Severity(StrEnum):
    MINOR = "minor"
    SIGNIFICANT = "significant"
    CONSIDERABLE = "considerable"
    MAJOR = "major"
    CATASTROPHIC = "catastrophic"


class Likelihood(StrEnum):
    VERY_LOW = "very low"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very high"


#: DCB0129's risk matrix: likelihood (rows) by severity (columns, minor .. catastrophic).
RISK_MATRIX: dict[Likelihood, tuple[int, int, int, int, int]] = {
    Likelihood.VERY_HIGH: (3, 4, 4, 5, 5),
    Likelihood.HIGH: (2, 3, 3, 4, 5),
    Likelihood.MEDIUM: (2, 2, 3, 3, 4),
    Likelihood.LOW: (1, 2, 2, 3, 4),
    Likelihood.VERY_LOW: (1, 1, 2, 2, 3),
}

#: What each risk rating means (DCB0129).
RISK_MEANING = {
    1: "Acceptable, no further action required.",
    2: "Acceptable where the cost of further reduction outweighs the benefits gained.",
    3: "Undesirable: acceptable only when further risk reduction is impractical.",
    4: "Mandatory elimination or control to reduce risk to an acceptable level.",
    5: "Unacceptable level of risk.",
}

#: The highest risk a hazard may carry and be closed: 3 and above needs either more
#: control or the clinical safety officer's acceptance, which an open entry records.
HIGHEST_CLOSED_RISK = 2

_STRICT = ConfigDict(extra="forbid", frozen=True)
HazardId = Annotated[str, Field(pattern=r"^H-\d{3}$")]
#: A pytest node id without parameters: ``tests/test_x.py::test_y`` or ``...::Class::test_y``.
NodeId = Annotated[str, Field(pattern=r"^tests/[\w/]+\.py(::\w+)+$")]


def risk(severity: Severity, likelihood: Likelihood) -> int:
    return RISK_MATRIX[likelihood][list(Severity).index(severity)]


class Assessment(BaseModel):
    model_config = _STRICT
    severity: Severity
    likelihood: Likelihood
    #: Written in the log for its readers; must be the matrix's figure.
    risk: int = Field(ge=1, le=5)

    @model_validator(mode="after")
    def _risk_is_the_matrix(self) -> Assessment:
        expected = risk(self.severity, self.likelihood)
        if self.risk != expected:
            raise ValueError(f"risk {self.risk} is not the matrix's {expected} for "
                             f"{self.severity} and {self.likelihood}")
        return self


class Control(BaseModel):
    model_config = _STRICT
    control: str = Field(min_length=1)
    #: Tests that exercise this control and would fail without it.
    tests: list[NodeId] = Field(min_length=1)


class Hazard(BaseModel):
    model_config = _STRICT
    id: HazardId
    title: str = Field(min_length=1)
    cause: str = Field(min_length=1)
    effect: str = Field(min_length=1)
    initial: Assessment
    controls: list[Control] = Field(min_length=1)
    residual: Assessment
    status: Literal["closed", "open"]
    #: What is not controlled today (an open hazard says what; a closed one may too).
    gaps: list[str] = []
    #: What the deploying organisation must do for this hazard (its DCB0160 case).
    deployer: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> Hazard:
        if self.residual.risk > self.initial.risk:
            raise ValueError(f"{self.id}: residual risk {self.residual.risk} above the "
                             f"initial {self.initial.risk}")
        if self.status == "closed" and self.residual.risk > HIGHEST_CLOSED_RISK:
            raise ValueError(f"{self.id}: closed with residual risk {self.residual.risk}; "
                             f"above {HIGHEST_CLOSED_RISK} it stays open")
        if self.status == "open" and not self.gaps:
            raise ValueError(f"{self.id}: open, but its gaps are not written down")
        return self

    @property
    def tests(self) -> list[str]:
        return sorted({test for control in self.controls for test in control.tests})


class HazardLog(BaseModel):
    model_config = _STRICT
    title: str
    version: str
    reviewed: str
    hazards: list[Hazard] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> HazardLog:
        seen: set[str] = set()
        for hazard in self.hazards:
            if hazard.id in seen:
                raise ValueError(f"{hazard.id} appears twice")
            seen.add(hazard.id)
        return self

    def hazard(self, hazard_id: str) -> Hazard:
        return next(h for h in self.hazards if h.id == hazard_id)


def load(path: Path = DEFAULT_LOG) -> HazardLog:
    """The log at ``path``; a ValueError (pydantic's, naming the field) when it is invalid."""
    return HazardLog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


_PARAMETERS = re.compile(r"\[.*\]$")


def base_id(node_id: str) -> str:
    """``tests/t.py::test_x[case]`` -> ``tests/t.py::test_x``: the log names a test whole."""
    return _PARAMETERS.sub("", node_id)


def problems(log: HazardLog, collected: Mapping[str, Iterable[str]]) -> list[str]:
    """Where the log and the tests disagree; empty when they agree both ways.

    ``collected`` maps every collected test (node id, parameters stripped or not) to the
    hazard ids its ``hazard`` markers name (empty for an unmarked test).
    """
    marked: dict[str, set[str]] = {}
    for node_id, hazards in collected.items():
        marked.setdefault(base_id(node_id), set()).update(hazards)
    found: list[str] = []
    known = {hazard.id for hazard in log.hazards}
    named: dict[str, set[str]] = {}
    for hazard in log.hazards:
        for control in hazard.controls:
            for test in control.tests:
                named.setdefault(test, set()).add(hazard.id)
                if test not in marked:
                    found.append(f"{hazard.id}: {test} is not a collected test")
                elif hazard.id not in marked[test]:
                    found.append(f"{hazard.id}: {test} is not marked "
                                 f"@pytest.mark.hazard({hazard.id!r})")
    for test, hazards in sorted(marked.items()):
        for hazard_id in sorted(hazards - named.get(test, set())):
            found.append(f"{test} is marked {hazard_id}, which is not in the log"
                         if hazard_id not in known else
                         f"{test} is marked {hazard_id}, but the log does not name it there")
    return found
