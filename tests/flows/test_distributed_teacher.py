"""The nightly flow with a data-parallel teacher (``teacher.train.workers: 2``) on a local Ray
instance the teacher stage starts; the DDP loop itself: tests/components/training/test_distributed.py."""

from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from shopdistill.components.models.checkpoint import load_model
from shopdistill.flows.nightly import nightly_distillation
from tests.flows.test_nightly import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def run(config):
    return nightly_distillation(config=config, latency_requests=20, return_state=True)


def test_the_teacher_trains_on_two_ddp_workers_and_a_one_worker_run_reuses_it(tmp_path):
    state = run(tiny_config(tmp_path, "teacher.train.workers=2"))
    assert state.is_completed(), state.message
    (folder,) = [p for p in (tmp_path / "teachers").iterdir() if p.is_dir()]
    assert not (folder / "ray-train").exists()
    _, cfg, meta = load_model(folder / "best.pt")
    assert cfg.d_model == 16 and meta["best_epoch"] >= 1
    assert "s of training" in Artifact.get("teacher-metrics").data
    # the number of workers is how the teacher trained, not which teacher it is
    again = run(tiny_config(tmp_path))
    assert again.is_completed(), again.message
    assert "reused: a finished stored run" in Artifact.get("teacher-metrics").data
    assert [p for p in (tmp_path / "teachers").iterdir() if p.is_dir()] == [folder]
    assert Path(again.result()["run_dir"]).is_dir()
