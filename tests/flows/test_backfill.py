"""A backfill over simulated nights: one child run per night, in order, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopdistill.components.config import load_config
from shopdistill.components.data.simulate import write_partitions
from shopdistill.components.registry import Registry
from shopdistill.flows.cli import main
from tests.flows.test_nightly import TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMALL = [
    "data.validation.min_users=10",
    "data.validation.min_items=10",
    "data.validation.min_interactions=100",
]


def settings(root: Path) -> list[str]:
    models = [o for o in TINY if not o.startswith("data.source.")]
    return [arg for item in [*models, *SMALL, f"runtime.output_dir={root}"] for arg in ("--set", item)]


def test_a_backfill_runs_each_night_in_order_and_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demo = load_config(profile="demo", overrides=TINY)
    write_partitions(demo.data.source.model_copy(update={"days": 20}), tmp_path / "data" / "simulated")
    args = [
        "backfill",
        "--profile",
        "nightly",
        "--from",
        "2025-01-18",
        "--to",
        "2025-01-20",
        *settings(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("2025-")] == [
        "2025-01-18",
        "2025-01-19",
        "2025-01-20",
    ]
    records = sorted((tmp_path / "nights" / "nightly").glob("*.json"))
    assert [r.stem for r in records] == ["2025-01-18", "2025-01-19", "2025-01-20"]
    config = load_config(profile="nightly", overrides=[*settings(tmp_path)[1::2]])
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
