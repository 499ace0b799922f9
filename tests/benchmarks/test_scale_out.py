import importlib.util
import json

import pytest

from shopdistill.benchmarks.scale_out import run_scale_out_benchmark
from tests.nights import TINY_SHOP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="needs the [ray] extra"),
]


def test_the_demo_runs_one_at_a_time_and_on_a_local_ray_instance_with_the_same_soft_labels(tmp_path):
    """``shopdistill run --profile demo`` on tiny data with a 2-member ensemble, locally and with
    ``--set runtime.executor=ray`` (candidates, soft-label shards and members fanned out)."""
    tiny = [o for o in TINY_SHOP if not o.startswith("candidates.")]
    result = run_scale_out_benchmark(tmp_path, shards=3, overrides=[*tiny, "teacher.ensemble=2"])
    local, ray = result["runs"]["local"], result["runs"]["ray"]
    assert list(local["candidates"]) == list(ray["candidates"]) and len(local["candidates"]) == 4
    assert sum(c["chosen"] for c in ray["candidates"].values()) == 1
    assert len(local["pids"]) == 1 and len(ray["pids"]) >= 2  # Ray ran them in workers of its own
    spans = ray["candidate_spans"]  # on Ray, two at a time (2 CPUs, 1 a task)
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    starts, ends = zip(*local["candidate_spans"], strict=True)
    assert all(e <= s for e, s in zip(sorted(ends)[:-1], sorted(starts)[1:], strict=True))  # locally in turn
    for run in ("local", "ray"):
        (record,) = (tmp_path / run).glob("teachers/*-ensemble-*/ensemble.json")
        assert len(json.loads(record.read_text())["members"]) == 2
    assert (
        result["soft_labels_equal"]["same_positions"]
        and result["soft_labels_equal"]["ids_equal_share"] > 0.999
    )
    assert local["rows"] == ray["rows"] and result["candidates_speedup"] > 0
    report = (tmp_path / "scale_out.md").read_text()
    assert "| local |" in report and "| ray |" in report and "faster on Ray" in report
