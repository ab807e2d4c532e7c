"""Bounded, printable previews of untrusted bytes (quarantined payloads).

Whatever a hub sent, its preview is short, valid UTF-8 text and unambiguous:
printable characters stand for themselves, a backslash is ``\\\\``, and any
other byte (invalid UTF-8, control characters) is ``\\xNN``.
"""

from __future__ import annotations

#: Bytes of a payload (or characters of an item's JSON) a listing shows.
PREVIEW_BYTES = 512

_KEEP = frozenset("\t\n")


def escape_bytes(data: bytes) -> str:
    """``data`` as printable text: valid UTF-8 kept, everything else ``\\xNN``."""
    text = data.decode("utf-8", errors="surrogateescape")
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif (ch.isprintable() or ch in _KEEP) and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass")))
    return "".join(out)


def preview(data: bytes | None, *, size: int | None = None) -> dict[str, object]:
    """``{"preview": <escaped first PREVIEW_BYTES>, "bytes": <total>, "truncated": bool}``."""
    if data is None:
        return {"preview": None, "bytes": None, "truncated": False}
    total = len(data) if size is None else size
    return {"preview": escape_bytes(bytes(data[:PREVIEW_BYTES])), "bytes": total,
            "truncated": total > PREVIEW_BYTES}
