"""Student candidates in the nightly flow (one at a time here): chosen on validation, the soft labels
in shards, no fitting candidate. The same flow on a local Ray instance: tests/benchmarks/test_scale_out.py."""

import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.registry import Registry
from shopdistill.flows.nightly import nightly_distillation
from tests.flows.test_nightly import tiny_config

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
