"""Where sign-in may send a person afterwards: ``/login?next=...`` (an open-redirect guard).

Only a path of this site: it starts with one ``/`` and has no scheme or host,
so ``//evil.example``, ``https://evil.example``, ``/\\evil.example`` (which
browsers read as ``//``) and anything with a control character or backslash are
refused, and sign-in goes to the start page instead.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

NEXT_MAX = 2000
START = "/"


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a same-site relative path, else None."""
    if not value or len(value) > NEXT_MAX or not value.startswith("/"):
        return None
    if value.startswith("//") or "\\" in value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def login_url(path: str, query: str = "") -> str:
    """The sign-in page that comes back to ``path?query`` afterwards."""
    target = path + ("?" + query if query else "")
    if safe_next(target) is None or target == START or path.startswith("/login"):
        return "/login"
    return "/login?next=" + quote(target, safe="/")
