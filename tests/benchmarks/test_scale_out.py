import importlib.util

import pytest

from shopdistill.benchmarks.scale_out import run_scale_out_benchmark
from tests.nights import TINY_SHOP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="needs the [ray] extra"),
]


def test_the_scale_out_benchmark_runs_both_executors_and_compares_the_soft_labels(tmp_path):
    tiny = [o for o in TINY_SHOP if not o.startswith("candidates.")]
    result = run_scale_out_benchmark(tmp_path, shards=3, overrides=tiny)
    local, ray = result["runs"]["local"], result["runs"]["ray"]
    assert list(local["candidates"]) == list(ray["candidates"]) and len(local["candidates"]) == 4
    assert len(local["pids"]) == 1 and len(ray["pids"]) >= 2  # Ray ran them in workers of its own
    assert (
        result["soft_labels_equal"]["same_positions"]
        and result["soft_labels_equal"]["ids_equal_share"] > 0.999
    )
    assert local["rows"] == ray["rows"] and result["candidates_speedup"] > 0
    report = (tmp_path / "scale_out.md").read_text()
    assert "| local |" in report and "| ray |" in report and "faster on Ray" in report
