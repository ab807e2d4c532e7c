"""Evaluators: pure functions ``(rule, window, now) -> Finding | None``, registered by kind.

Each evaluator module offers ``parse(raw, *, where, rule_id) -> Params`` (the
rule's ``params`` block, validated) and ``evaluate(rule, window, now)``.  The
clock is injected (``now``), so scenario tests and the backtest replay time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.model import Finding, Rule
from alerts.window import Window

Parse = Callable[..., Any]
Evaluate = Callable[[Rule, Window, datetime], Finding | None]


#: Modules whose ``EVALUATORS`` table maps a rule kind to ``(parse, evaluate)``.
EVALUATOR_MODULES = ("threshold", "news2_rule", "change", "average", "missed", "devices")


@dataclass(frozen=True, slots=True)
class Evaluator:
    kind: str
    parse: Parse
    evaluate: Evaluate
    doc: str
    #: The same judgement returning only a firing finding (None otherwise), for a caller
    #: that would discard a clearing one (no active alert); None: use ``evaluate``.
    firing: Evaluate | None = None


def _registry() -> Mapping[str, Evaluator]:
    import importlib

    table: dict[str, Evaluator] = {}
    for name in EVALUATOR_MODULES:
        module = importlib.import_module(f"alerts.evaluators.{name}")
        firing = getattr(module, "FIRING", {})
        for kind, (parse, evaluate) in module.EVALUATORS.items():
            table[kind] = Evaluator(kind, parse, evaluate, (evaluate.__doc__ or "").strip(),
                                    firing.get(kind))
    return table


_TABLE: Mapping[str, Evaluator] | None = None


def registry() -> Mapping[str, Evaluator]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _registry()
    return _TABLE


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    return registry()[rule.kind].evaluate(rule, window, now)
