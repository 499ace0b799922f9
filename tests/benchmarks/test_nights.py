"""``bench nights``: nightly warm starts against a cold retrain and a frozen model, night by night."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopdistill.flows.cli import main
from tests.nights import nightly_args, simulate_nights

pytestmark = pytest.mark.slow


def test_three_nights_compare_warm_cold_and_frozen(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    simulate_nights(tmp_path / "data" / "simulated")
    # the teacher starts cold every second night; the cold retrains never feed the nightly chain
    sets = [*nightly_args(tmp_path / "out"), "--set", "teacher.warm.full_retrain_every=2"]
    assert (
        main(["bench", "nights", "--profile", "nightly", "--from", "2025-01-18", "--to", "2025-01-20", *sets])
        == 0
    )
    out = capsys.readouterr().out
    report = Path(out.split("report: ")[1].split(" ")[0])
    result = json.loads(report.with_name("nights.json").read_text())
    rows = result["rows"]
    assert [r["night"] for r in rows] == ["2025-01-18", "2025-01-19", "2025-01-20"]
    assert [r["teacher_warm"] for r in rows] == [False, True, False]
    assert len(list((tmp_path / "out" / "bench-nights-cold" / "teachers").glob("*/best.pt"))) == 2
    assert [r["student_warm"] for r in rows] == [False, True, True]
    assert rows[0]["nightly"] == rows[0]["cold"]  # the first night has nothing to continue from
    for r in rows:
        assert 0 <= r["nightly"] <= 1 and 0 <= r["cold"] <= 1 and 0 <= r["frozen"] <= 1
        assert 0 <= r["new_item_share_top10"] <= 1
    assert result["summary"]["warm_time_ratio"] > 0 and "a warm night takes" in report.read_text()
    assert (
        report.with_name("nights.png").stat().st_size > 10_000
        and "![nights](nights.png)" in report.read_text()
    )
    assert main(["bench", "nights", "--profile", "demo", "--from", "2025-01-18", "--to", "2025-01-20"]) == 2
