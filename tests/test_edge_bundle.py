"""``homeward edge --bundle``: the provisioning bundle's format and the edge's refusals
(the bundle that works is walked end to end in tests/test_new_installation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from homeward.provisioning import HubBundle, parse_broker_url, read_bundle, write_bundle
from stack.cli import app


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://broker.example", ("broker.example", 1883, False)),
    ("mqtts://broker.example", ("broker.example", 8883, True)),
    ("mqtts://10.0.0.5:9883", ("10.0.0.5", 9883, True)),
])
def test_broker_urls(url: str, expected: tuple[str, int, bool]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker", "broker:1883", "mqtt://", "tcp://b:1"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt://HOST:PORT"):
        parse_broker_url(url)


def test_a_bundle_is_written_for_its_owner_only_and_reads_back(tmp_path: Path) -> None:
    bundle = HubBundle(hub_id="hub-1", broker_url="mqtts://b:8883", password="pw",
                       ca_pem="-----BEGIN CERTIFICATE-----\n")
    path = write_bundle(bundle, tmp_path / "deep" / "hub-1.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_bundle(path) == bundle


@pytest.mark.parametrize(("text", "words"), [
    ("not json", "Invalid JSON"),
    ('{"hub_id": "hub-1", "broker_url": "mqtt://b"}', "password"),
    ('{"hub_id": "hub-1", "broker_url": "http://b", "password": "x"}', "mqtt://HOST:PORT"),
    ('{"hub_id": "hub-1", "broker_url": "mqtt://b", "password": "x", "extra": 1}', "extra"),
])
def test_the_edge_refuses_a_bad_bundle_clearly(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(text)
    result = CliRunner().invoke(app, ["edge", "--bundle", str(path), "--state-dir",
                                      str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert "cannot use the bundle" in result.output and words in result.output


def test_a_missing_bundle_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["edge", "--bundle", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "No such file" in result.output
