"""A backfill over simulated nights: one child run per night, in order, resumable."""

from __future__ import annotations

import json

import pytest

from shopdistill.components.registry import Registry
from shopdistill.flows.cli import main
from tests.nights import nightly_args, nightly_config, simulate_nights

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_a_backfill_runs_each_night_in_order_and_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    simulate_nights(tmp_path / "data" / "simulated")
    args = [
        "backfill",
        "--profile",
        "nightly",
        "--from",
        "2025-01-18",
        "--to",
        "2025-01-20",
        *nightly_args(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("2025-")] == [
        "2025-01-18",
        "2025-01-19",
        "2025-01-20",
    ]
    table = [line for line in out.splitlines() if line.startswith("| 2025-")]
    assert [row.split("|")[1].strip() for row in table] == ["2025-01-18", "2025-01-19", "2025-01-20"]
    assert all(float(row.split("|")[5]) > 0 for row in table)  # the teacher's NDCG@10 each night
    assert (tmp_path / "nights" / "nightly" / "nights.md").read_text().count("| 2025-") == 3
    records = sorted((tmp_path / "nights" / "nightly").glob("*.json"))
    assert [r.stem for r in records] == ["2025-01-18", "2025-01-19", "2025-01-20"]
    config = nightly_config(tmp_path)
    versions = {v.tags["night"]: v for v in Registry(config.registry, tmp_path).versions()}
    assert set(versions) == {"2025-01-18", "2025-01-19", "2025-01-20"}
    assert (
        versions["2025-01-19"].tags["teacher_started_from"] == versions["2025-01-18"].tags["teacher_digest"]
    )

    # interrupted after the first night: the rerun runs only the nights without a record
    records[2].unlink()
    records[1].unlink()
    assert main(args) == 0
    rerun = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("2025-")]
    assert rerun == ["2025-01-19", "2025-01-20"]
    assert json.loads(records[2].read_text())["night"] == "2025-01-20"


def test_a_backfill_needs_a_partitioned_log_and_an_ordered_range(capsys):
    assert main(["backfill", "--from", "2025-01-18", "--to", "2025-01-20"]) == 2  # the demo profile
    assert "needs a partitioned event log" in capsys.readouterr().err
    assert main(["backfill", "--profile", "nightly", "--from", "2025-01-20", "--to", "2025-01-18"]) == 2
    assert "before --from" in capsys.readouterr().err
