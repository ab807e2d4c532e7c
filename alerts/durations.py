"""Durations as written in rule files: ``30s``, ``10m``, ``4h``, ``3d``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: object) -> timedelta:
    """``"10m"`` -> 10 minutes; a bare number is seconds.  Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _PATTERN.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"not a duration (use e.g. 30s, 10m, 4h, 3d): {value!r}")
