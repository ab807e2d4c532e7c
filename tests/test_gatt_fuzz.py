"""Fuzz: for every supported characteristic, any bytes give a typed result or a
GattParseError -- never IndexError, struct.error, OverflowError or a reading that
fails the homeward.kinds plausibility limits.

Default run: HOMEWARD_FUZZ_EXAMPLES (default 300) examples per characteristic.
The big run (>= 10,000 per characteristic, DESIGN.md "bad input" target):

    HOMEWARD_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/test_gatt_fuzz.py -s

The seed is random per session and printed (``-s`` shows it; a failure report
shows it too).  Replay a run with ``HOMEWARD_FUZZ_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
from dataclasses import fields, is_dataclass

import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from edge.gatt import (
    SUPPORTED_CHARACTERISTICS,
    GattParseError,
    IntermediateCuffPressure,
    Measurement,
    decode,
)
from edge.gatt import const as c
from homeward.kinds import METRIC_BY_NAME, check_values
from tests.test_gatt_vectors import VALID

FUZZ_EXAMPLES = int(os.environ.get("HOMEWARD_FUZZ_EXAMPLES", "300"))
FUZZ_SEED = int(os.environ.get("HOMEWARD_FUZZ_SEED") or random.randrange(2**32))
print(f"test_gatt_fuzz: HOMEWARD_FUZZ_SEED={FUZZ_SEED} HOMEWARD_FUZZ_EXAMPLES={FUZZ_EXAMPLES}")

_SEEDS: dict[int, list[bytes]] = {}
for _case in VALID:
    _uuid, _hex, _expected = _case.values
    _SEEDS.setdefault(_uuid, []).append(bytes.fromhex(_hex))  # type: ignore[arg-type]


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A known-good vector with a few bytes replaced, then cut short or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    # half the time keep the length, so the mutated fields get decoded, not just length-checked
    end = draw(st.just(len(data)) | st.integers(0, len(data) + 4))
    return bytes(data[:end]) + draw(st.binary(max_size=max(0, end - len(data))))


def _any_bytes(characteristic: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=24),
        _mutated(_SEEDS[characteristic]),
        # a flags byte with every optional field promised, then random fields
        st.builds(lambda rest: b"\xff" + rest, st.binary(max_size=24)),
    )


def _check_result(characteristic: int, result: object) -> None:
    assert is_dataclass(result) and not isinstance(result, type)
    if isinstance(result, Measurement):
        assert characteristic != c.INTERMEDIATE_CUFF_PRESSURE
        assert check_values(result.kind, result.values) is None
        assert set(result.values) <= set(METRIC_BY_NAME[result.kind])
        assert all(isinstance(flag, str) for flag in result.flags)
        assert all(isinstance(v, float) for v in result.values.values())
        # built by the hot-path constructor: every field must be readable
        for field in fields(result):
            getattr(result, field.name)
    if characteristic == c.INTERMEDIATE_CUFF_PRESSURE:
        assert isinstance(result, IntermediateCuffPressure)


@pytest.mark.hazard("H-006")
@pytest.mark.parametrize(
    "characteristic", sorted(SUPPORTED_CHARACTERISTICS), ids=lambda u: f"0x{u:04X}")
def test_any_bytes_give_a_result_or_a_gatt_parse_error(characteristic: int) -> None:
    @seed(FUZZ_SEED)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=_any_bytes(characteristic))
    def check(data: bytes) -> None:
        note(f"replay with HOMEWARD_FUZZ_SEED={FUZZ_SEED}; bytes {data.hex(' ')}")
        try:
            result = decode(characteristic, data)
        except GattParseError as err:
            assert err.reason
            return
        _check_result(characteristic, result)

    check()


def test_every_characteristic_has_fuzz_seeds() -> None:
    assert set(_SEEDS) >= SUPPORTED_CHARACTERISTICS
