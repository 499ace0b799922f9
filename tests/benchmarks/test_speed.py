"""The performance benchmark runs end to end on the tiny shop and reports every section."""

import json

import pytest

from shopdistill.benchmarks.speed import render_perf, run_perf_benchmark, training_speed
from shopdistill.components.config import load_config
from tests.tiny import TINY_PIPELINE

pytestmark = pytest.mark.slow


def test_perf_benchmark_sections_and_targets(out_root, tmp_path):
    pytest.importorskip(
        "onnxruntime", reason="the serving section exports to ONNX: install shopdistill[onnx]"
    )
    config = load_config(profile="demo", overrides=TINY_PIPELINE)
    result = run_perf_benchmark(
        config, tmp_path / "perf", repeats=2, requests=20, scale_sizes=(3000,), log=lambda _: None
    )
    s = result["sections"]
    rows = s["serving"]["rows"]
    assert list(rows) == ["teacher (torch)", "student (torch)", "student (onnx)", "student (onnx-int8)"]
    for r in rows.values():
        assert r["latency_p99_ms"] >= r["latency_p50_ms"] > 0 and r["peak_rss_mb"] > 0 and r["size_mb"] > 0
    assert rows["student (onnx)"]["parity_max_abs_diff"] < 1e-4
    acc = s["serving"]["onnx_accuracy"]
    assert abs(acc["onnx"] - acc["torch"]) < 1e-3
    d = s["distill_cost"]
    assert set(d["epoch_seconds"]) == {"no_kd", "kd_cache", "kd_online"} and all(
        len(v) == 2 for v in d["runs"].values()
    )
    paired = [c / a for c, a in zip(d["runs"]["kd_cache"], d["runs"]["no_kd"], strict=True)]
    assert d["kd_cache_over_no_kd"] == pytest.approx(sum(paired) / 2)  # the median of two
    c = s["cache_io"]
    assert c["rows"] > 0 and c["read_rows_per_s"] > 0 and c["plain_read_rows_per_s"] > 0
    assert s["training_speed"]["train_epoch_s"] > 0 and s["training_speed"]["model"]["d_model"] == 64
    o = s["training_speed"]["output_layer"]
    assert o["positions"] > 0 and o["seconds"] > 0 and o["gemm_peak_gflops"] > 0
    assert o["floor_s"] == pytest.approx(6 * o["positions"] * o["items"] * 64 / o["gemm_peak_gflops"] / 1e9)
    (row,) = s["scale"]["rows"]
    assert row["interactions"] > 1000 and row["cache"]["rows"] > 0
    assert all(
        row[stage]["peak_rss_mb"] > 0 for stage in ("ingest", "ingest+validate", "cache", "distill_epoch")
    )
    sm = s["training_speed"]["sampled"]
    assert sm["sampled_negatives"] == 2048 and sm["sampling"] == "mixed" and sm["train_epoch_s"] > 0
    assert "converged" not in sm
    checks = {t["check"] for t in result["targets"]}
    assert (
        "student (torch) p99 <= 0.1 x teacher p99" in checks
        and "KD from cache / no KD epoch <= 1.25" in checks
    )
    assert "student (onnx) p99 <= 0.1 x teacher p99" in checks
    saved = json.loads((tmp_path / "perf" / "report.json").read_text())
    assert saved["sections"].keys() == s.keys()
    md = (tmp_path / "perf" / "report.md").read_text()
    assert "## Serving" in md and "## Scale" in md and "| target | measured | met |" in md


def test_training_speed_converges_both_losses_and_reports_the_quality_ratio(out_root, tiny_data):
    config = load_config(profile="demo", overrides=[*TINY_PIPELINE, "teacher.train.patience=1"])
    t = training_speed(
        config, tiny_data, "tinydigest", repeats=1, converge=True, sampled_negatives=20, log=lambda _: None
    )
    full, sampled = t["converged"], t["sampled"]["converged"]
    for c in (full, sampled):
        assert [r["seed"] for r in c["runs"]] == [0, 1]  # two seeds each, the means reported
        for r in c["runs"]:
            assert 1 <= r["best_epoch"] <= r["epochs"] <= 2 and 0 <= r["valid_NDCG@10"] <= 1
            assert 0 < r["seconds_to_best"] <= r["seconds_total"]
        assert c["valid_NDCG@10"] == pytest.approx(sum(r["valid_NDCG@10"] for r in c["runs"]) / 2)
    assert t["sampled"]["valid_ratio_to_full"] == pytest.approx(
        sampled["valid_NDCG@10"] / full["valid_NDCG@10"]
    )
    assert (
        len(list((out_root / "teachers").glob("[!.]*"))) == 4
    )  # 2 losses x 2 seeds, stored under their own keys
    md = render_perf(
        {
            "full": True,
            "repeats": 1,
            "sections": {"training_speed": t},
            "timings_s": {"total": 1.0},
            "machine": {"cpu": "x", "cores": 2, "torch": "t", "threads": 1},
            "targets": [],
        }
    )
    assert "sampled softmax, 20 mixed negatives" in md and f"{sampled['valid_NDCG@10']:.4f}" in md


def test_render_reports_growth_between_sizes():
    def stage(sec, rss):
        return {"seconds": sec, "peak_rss_mb": rss}

    rows = [
        {
            "interactions": n,
            "ingest": stage(t, 100),
            "ingest+validate": stage(2 * t, 120),
            "cache": stage(t, 300),
            "distill_epoch": stage(t, rss),
        }
        for n, t, rss in ((1000, 1.0, 400.0), (10000, 9.0, 440.0))
    ]
    result = {
        "full": False,
        "repeats": 1,
        "timings_s": {"total": 60},
        "targets": [],
        "machine": {"cpu": "x", "cores": 2, "torch": "2", "threads": 1},
        "sections": {
            "scale": {
                "rows": rows,
                "interaction_growth": 10.0,
                "ingest_time_growth": 9.0,
                "cache_time_growth": 9.0,
                "distill_epoch_time_growth": 9.0,
                "distill_rss_growth": 1.1,
            }
        },
    }
    md = render_perf(result)
    assert "| 10,000 | 9.0 | 18.0 | 9.0 | 9.0 | 100 / 120 / 300 / 440 |" in md
    assert "distillation peak RSS x1.10" in md
