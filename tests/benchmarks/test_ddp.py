import json

import pytest

from shopdistill.benchmarks.ddp import run_ddp_benchmark
from shopdistill.components.config import load_config
from tests.tiny import TINY_PIPELINE

pytestmark = pytest.mark.slow


def test_ddp_workers_and_one_process_side_by_side(local_ray, tmp_path):
    config = load_config(profile="demo", overrides=[*TINY_PIPELINE, f"runtime.output_dir={tmp_path}"])
    result = run_ddp_benchmark(config, tmp_path / "bench", seeds=(0, 1), epochs=3, log=lambda _m: None)
    settings = list(result["settings"])
    assert settings == ["1 process, 1 thread", "2 workers, 1 thread each", "1 process, 2 threads"]
    for name in settings:
        runs = result["runs"][name]
        assert [r["seed"] for r in runs] == [0, 1] and all(r["epochs"] == 3 for r in runs)
        assert all(0 < r["valid_ndcg"] < 1 and 0 < r["test_ndcg"] < 1 for r in runs)
    # the same initial weights and global batches: the validation curves start alike
    single, ddp = (result["runs"][n] for n in settings[:2])
    for a, b in zip(single, ddp, strict=True):
        assert b["valid_per_epoch"][0] == pytest.approx(a["valid_per_epoch"][0], abs=0.02)
    quality = result["quality"]
    assert len(quality["per_seed_difference"]) == 2 and quality["tolerance"] >= 0
    assert result["ddp_speedup"] > 0
    assert json.loads((tmp_path / "bench" / "ddp.json").read_text())["workers"] == 2
    report = (tmp_path / "bench" / "ddp.md").read_text()
    assert "| 2 workers, 1 thread each |" in report and "tolerance" in report
    assert not list((tmp_path / "bench").glob("*/ray-train"))
