"""``homeward edge pair|devices|unpair`` on virtual devices, and ``homeward bench edge``."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from edge.agent import load_paired
from homeward.kinds import Kind
from stack.cli import app

runner = CliRunner()


def test_pair_lists_health_devices_and_saves_the_chosen_one(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path)]
    result = runner.invoke(app, ["edge", "pair", "--ble", "sim", "--hub-id", "cli-pair-1",
                                 "--seconds", "1", *state], input="2\n")
    assert result.exit_code == 0, result.output
    assert "Wake the device up" in result.output
    listed = re.findall(r"^\s+(\d)\) (\S+)\s+(\w+)", result.output, re.MULTILINE)
    assert {kind for _, _, kind in listed} == {k.value for k in
                                               (Kind.BLOOD_PRESSURE, Kind.SPO2, Kind.TEMPERATURE,
                                                Kind.WEIGHT, Kind.GLUCOSE)}
    _, address, kind = listed[1]
    (device,) = load_paired(tmp_path)
    assert (device.address, device.kind.value) == (address, kind)

    shown = runner.invoke(app, ["edge", "devices", *state])
    assert f"local   {address}  {kind}" in shown.output

    gone = runner.invoke(app, ["edge", "unpair", address.lower(), *state])
    assert gone.exit_code == 0 and load_paired(tmp_path) == []
    again = runner.invoke(app, ["edge", "unpair", address, *state])
    assert again.exit_code == 1 and "not paired locally" in again.output


def test_pair_with_an_address_that_is_not_there_changes_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["edge", "pair", "--ble", "sim", "--hub-id", "cli-pair-2",
                                 "--seconds", "1", "--address", "00:00:00:00:00:00",
                                 "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "was not among the devices found" in result.output
    assert load_paired(tmp_path) == []


def test_bench_edge_prints_figures_with_the_interpreter(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "edge", "--seconds", "0.2", "--folder", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"interpreter: CPython \d+\.\d+\.\d+ \(.*python", result.output)
    assert re.search(r"decode: [\d,]+ readings/s wall clock, [\d,]+ per CPU-second", result.output)
    for mode in ("FULL", "NORMAL"):
        assert re.search(rf"synchronous={mode}\s+add_1\s+[\d,]+\s+add_100\s+[\d,]+\s+drain",
                         result.output)
    assert list(tmp_path.iterdir()) == []  # the scratch outbox is removed
