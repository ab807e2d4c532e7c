"""The wire format of DESIGN.md: readings, batches, topics, rejects."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeward.kinds import METRICS, Kind
from homeward.wire import (
    MAX_BATCH,
    HubConfig,
    HubStatus,
    Reading,
    decode_readings,
    encode_readings,
    new_reading_id,
    parse_topic,
    readings_topic,
)

DESIGN_EXAMPLE = {
    "v": 1,
    "id": "0b6c6c1e-8f6c-4e5b-9a35-1d1f1a7f3a10",
    "kind": "blood_pressure",
    "taken_at": "2026-11-22T08:00:00Z",
    "device": "C4:7C:8D:6A:3E:21",
    "values": {"systolic": 128, "diastolic": 82, "mean_arterial": 97, "pulse_rate": 71},
    "flags": ["irregular_pulse"],
}


def _reading(**changes: object) -> dict[str, object]:
    return {**DESIGN_EXAMPLE, "id": str(uuid.uuid4()), **changes}


def test_design_md_example_round_trips() -> None:
    decoded = decode_readings(orjson.dumps(DESIGN_EXAMPLE))
    assert decoded.rejects == []
    (reading,) = decoded.readings
    assert reading.taken_at == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert reading.values["systolic"] == 128
    assert orjson.loads(encode_readings([reading])) == [DESIGN_EXAMPLE]


def test_times_with_an_offset_are_stored_in_utc() -> None:
    (reading,) = decode_readings(orjson.dumps(_reading(taken_at="2026-06-01T09:00:00+01:00"))
                                 ).readings
    assert reading.taken_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"42", "must be a JSON object or array"),
        (orjson.dumps(_reading(taken_at="2026-11-22T08:00:00")), "timezone"),
        (orjson.dumps(_reading(kind="blood_sugar")), "kind"),
        (orjson.dumps(_reading(id="not-a-uuid")), "id"),
        (orjson.dumps(_reading(v=2)), "v"),
        (orjson.dumps(_reading(values={"systolic": 128})), "diastolic"),
        (orjson.dumps(_reading(values={"systolic": 1280, "diastolic": 82})), "outside plausible"),
        (orjson.dumps(_reading(values={"systolic": 80, "diastolic": 120})), "below systolic"),
        (orjson.dumps(_reading(values={"systolic": 128, "diastolic": 82, "bogus": 1})),
         "unknown metric"),
        (orjson.dumps(_reading(kind="temperature", values={"body_temperature": 98.6})),
         "outside plausible"),
        (orjson.dumps(_reading(device="")), "device"),
        (orjson.dumps(_reading(raw="zz")), "raw"),
        (orjson.dumps(_reading(extra_field=1)), "extra_field"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    decoded = decode_readings(payload)
    assert decoded.readings == []
    (reject,) = decoded.rejects
    assert reason in reject.reason


def test_one_bad_item_in_a_batch_costs_only_itself() -> None:
    good = [_reading(), _reading()]
    batch = [good[0], {"v": 1, "kind": "spo2"}, good[1]]
    decoded = decode_readings(orjson.dumps(batch))
    assert [str(r.id) for r in decoded.readings] == [g["id"] for g in good]
    assert [r.index for r in decoded.rejects] == [1]


def test_future_readings_are_rejected_when_the_clock_is_given() -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    future = (now + timedelta(hours=1)).isoformat()
    decoded = decode_readings(orjson.dumps(_reading(taken_at=future)), now=now)
    assert "future" in decoded.rejects[0].reason
    assert decode_readings(orjson.dumps(_reading(taken_at=future))).readings  # no clock: kept


def test_oversized_batches_are_refused_whole() -> None:
    decoded = decode_readings(orjson.dumps([_reading()] * (MAX_BATCH + 1)))
    assert decoded.readings == [] and "exceeds" in decoded.rejects[0].reason


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("homeward/v1/hubs/hub-7/readings", ("hub-7", "readings")),
        ("homeward/v1/hubs/h.1_x/status", ("h.1_x", "status")),
    ],
)
def test_topics_parse(topic: str, expected: tuple[str, str]) -> None:
    assert parse_topic(topic) == expected
    assert readings_topic("hub-7") == "homeward/v1/hubs/hub-7/readings"


@pytest.mark.parametrize("topic", ["homeward/v2/hubs/a/readings", "homeward/v1/hubs/+/readings",
                                   "homeward/v1/hubs/a/b/readings", "x"])
def test_other_topics_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match=r"topic|hub id"):
        parse_topic(topic)


def test_status_and_config_models() -> None:
    assert HubStatus.model_validate({"state": "offline"}).state == "offline"
    config = HubConfig.model_validate(
        {"devices": [{"address": "C4:7C:8D:6A:3E:21", "kind": "blood_pressure"}],
         "schedule": [{"kind": "blood_pressure", "at": "08:00"}]})
    assert config.devices[0].kind is Kind.BLOOD_PRESSURE


def test_every_kind_has_metrics_with_units() -> None:
    assert set(METRICS) == set(Kind)
    assert all(m.unit and m.ucum and m.minimum < m.maximum for ms in METRICS.values() for m in ms)


_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_reading_like = st.fixed_dictionaries(
    {}, optional={k: _json | st.just(v) for k, v in DESIGN_EXAMPLE.items()}
)

FUZZ_EXAMPLES = int(os.environ.get("HOMEWARD_FUZZ_EXAMPLES", "300"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=512) | _json.map(orjson.dumps) | _reading_like.map(orjson.dumps)
       | st.lists(_reading_like, max_size=5).map(orjson.dumps))
def test_decode_never_raises_and_accounts_for_every_item(payload: bytes) -> None:
    """Fuzz: any bytes give readings and rejects, nothing else, and nothing is lost."""
    decoded = decode_readings(payload)
    try:
        doc = orjson.loads(payload)
        items = len(doc) if isinstance(doc, list) else 1
    except orjson.JSONDecodeError:
        items = 1
    assert len(decoded.readings) + len(decoded.rejects) == max(items, len(decoded.rejects))
    for reading in decoded.readings:
        assert isinstance(reading, Reading)


def test_reading_ids_are_time_ordered_uuid7() -> None:
    import time

    first = new_reading_id()
    time.sleep(0.002)
    second = new_reading_id()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second  # a later millisecond sorts later: the PK index appends
    assert len({new_reading_id() for _ in range(10_000)}) == 10_000
