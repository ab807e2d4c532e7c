"""The one exception the decoders raise."""

from __future__ import annotations


class GattParseError(ValueError):
    """Bytes that cannot be accepted, with the reason (``str(err)`` / ``err.reason``).

    Raised for truncated or inconsistent PDUs, IEEE 11073 special values in a
    required field, physiologically implausible values and readings that must
    not become patient data (PLX demo/test/invalid status).  Never clamped,
    never partially returned.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
