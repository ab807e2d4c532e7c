"""Errors raised while loading rules and routes: they name the culprit and where it is."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule file is wrong; ``location`` is ``file:line`` (or ``file``) and ``culprit`` the key."""

    def __init__(self, message: str, *, location: str = "", culprit: str = "") -> None:
        self.location = location
        self.culprit = culprit
        where = f"{location}: " if location else ""
        who = f"{culprit}: " if culprit else ""
        super().__init__(f"{where}{who}{message}")
