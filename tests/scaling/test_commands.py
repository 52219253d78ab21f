"""The simulate_scaling command: output contract and clear errors with a non-zero exit."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from django.core.management import CommandError, call_command


@pytest.fixture
def trace(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "trace.csv"
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(600) * np.timedelta64(5, "m")
    values = rng.poisson(50 + 30 * np.sin(np.arange(600) * 2 * np.pi / 288))
    path.write_text("timestamp,value\n" + "".join(
        f"{str(t).replace('T', ' ')},{v}\n" for t, v in zip(stamps, values, strict=True)
    ))  # fmt: skip
    return path


def test_simulate_scaling_writes_one_row_per_step_with_units_in_bounds(trace, tmp_path, capsys):
    out = tmp_path / "out" / "units.csv"
    call_command("simulate_scaling", str(trace), "--unit-capacity", "10", "--min-units", "2",
                 "--max-units", "9", "--out", str(out), "--compare")  # fmt: skip
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 600 and list(rows[0]) == ["timestamp", "load", "desired_units"]
    units = [int(r["desired_units"]) for r in rows]
    assert min(units) >= 2 and max(units) <= 9
    printed = capsys.readouterr().out
    assert "engine" in printed and "HPA" in printed


@pytest.mark.parametrize(
    "args, message",
    [(["--unit-capacity", "0"], "unit-capacity"),
     (["--unit-capacity", "5", "--min-units", "4", "--max-units", "2"], "min-units"),
     (["--unit-capacity", "5", "--target-utilization", "1.5"], "target-utilization")],
)  # fmt: skip
def test_simulate_scaling_rejects_bad_options(trace, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate_scaling", str(trace), *args, "--out", str(tmp_path / "o.csv"))


def test_simulate_scaling_explains_an_unreadable_trace(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,value\n1,2\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("simulate_scaling", str(bad), "--unit-capacity", "1", "--out",
                     str(tmp_path / "o.csv"))  # fmt: skip
