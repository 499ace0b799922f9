"""Fanned-out stages of the nightly flow: student candidates chosen on validation, soft-label shards,
ensemble members; locally and on a local Ray instance."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.registry import Registry
from shopdistill.flows.cli import main as cli
from shopdistill.flows.nightly import nightly_distillation
from tests.flows.test_nightly import TINY, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

CANDIDATES = "candidates.students=[{name: gru, model: {}}, {name: sasrec, model: {arch: sasrec}}]"


def run(config):
    return nightly_distillation(config=config, latency_requests=20, return_state=True)


def candidates_of(state) -> list[dict]:
    run_dir = Path(state.result()["run_dir"])
    return json.loads((run_dir / "candidates.json").read_text())["candidates"]


def check_the_choice(config, state) -> list[dict]:
    """Both candidates measured; the chosen one is the best on validation and is what was registered."""
    assert state.is_completed(), state.message
    rows = candidates_of(state)
    assert [r["name"] for r in rows] == ["student-kd-gru", "student-kd-sasrec"]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["valid_ndcg"] == max(r["valid_ndcg"] for r in rows)
    assert {r["arch"] for r in rows} == {"gru", "sasrec"} and all(r["latency_engine"] == "onnx" for r in rows)
    champion = Registry(config.registry, config.runtime.root).champion()
    assert champion.tags["student_digest"] == sha256_file(chosen[0]["checkpoint"])
    table = Artifact.get("student-candidates").data
    assert "| student-kd-sasrec | sasrec |" in table and "chosen" in table
    return rows


def soft_label_parts(root: Path) -> list[str]:
    (manifest,) = root.glob("soft_labels/*/manifest.json")
    return json.loads(manifest.read_text()).get("parts", [])


def test_candidates_train_one_after_another_locally_and_the_best_on_validation_is_kept(tmp_path):
    config = tiny_config(tmp_path, CANDIDATES, "runtime.soft_label_shards=2")
    rows = check_the_choice(config, run(config))
    assert soft_label_parts(tmp_path) == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    spans = sorted((r["trained"]["from"], r["trained"]["to"]) for r in rows)
    assert spans[0][1] <= spans[1][0]  # locally: one at a time


def test_when_no_candidate_fits_the_run_fails_and_registers_nothing(tmp_path):
    config = tiny_config(tmp_path, CANDIDATES, "candidates.max_params=10")
    state = run(config)
    assert state.is_failed() and "no student candidate fits the bounds" in state.message
    assert "student-kd-gru: " in state.message and "parameters > 10" in state.message
    assert Registry(config.registry, config.runtime.root).versions() == []


@pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="needs the [ray] extra")
def test_the_demo_on_a_local_ray_instance_trains_its_candidates_in_parallel(tmp_path, capsys):
    """``shopdistill run --profile demo --set runtime.executor=ray``, on tiny data."""
    tiny = [o for o in TINY if not o.startswith("candidates.")]  # the demo's own candidates
    ray = ["runtime.executor=ray", "runtime.soft_label_shards=2", "teacher.ensemble=2"]
    sets = [a for o in [*tiny, f"runtime.output_dir={tmp_path}", *ray] for a in ("--set", o)]
    assert cli(["run", "--profile", "demo", *sets]) == 0, capsys.readouterr().err
    (report,) = tmp_path.glob("runs/*/candidates.json")
    rows = json.loads(report.read_text())["candidates"]
    assert [r["name"] for r in rows] == ["student-kd-gru", "student-kd-gru-rank"]
    assert sum(r["chosen"] for r in rows) == 1
    trained = [r["trained"] for r in rows]
    assert all(t["pid"] != os.getpid() for t in trained)  # in Ray workers, not the flow's process
    assert max(t["from"] for t in trained) < min(t["to"] for t in trained)  # at the same time
    assert len(soft_label_parts(tmp_path)) == 2  # the teacher's pass in two user shards
    (record,) = tmp_path.glob("teachers/*-ensemble-*/ensemble.json")  # members trained as two tasks
    assert len(json.loads(record.read_text())["members"]) == 2
