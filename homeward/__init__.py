"""Homeward: remote monitoring for care at home.

This package holds the shared vocabulary every other package speaks: the
measurement kinds and their canonical units, the MQTT wire format, the
settings, and the ``homeward`` command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
