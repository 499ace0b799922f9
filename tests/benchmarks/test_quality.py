import json

import pytest

from shopdistill.benchmarks.quality import run_quality_benchmark
from shopdistill.benchmarks.targets import TEACHER_MIN_NDCG
from shopdistill.components.config import load_config
from tests.tiny import TINY_PIPELINE

pytestmark = pytest.mark.slow

TINY = TINY_PIPELINE


def test_quality_benchmark_end_to_end_and_reuse(out_root, tmp_path):
    config = load_config(profile="demo", overrides=TINY)
    lines = []
    result = run_quality_benchmark(
        config, tmp_path / "report", students=("sasrec", "gru"), requests=20, log=lines.append
    )
    assert list(result["rows"]) == [
        "teacher",
        "student-sasrec-nokd",
        "student-sasrec-kd",
        "student-gru-nokd",
        "student-gru-kd",
    ]
    for row in result["rows"].values():
        assert {
            "NDCG@10",
            "HR@20",
            "MRR@5",
            "coverage@10",
            "popularity_pct@10",
            "params",
            "size_bytes",
            "latency_p50_ms",
            "latency_p99_ms",
            "throughput_users_per_s",
            "epochs",
        } <= set(row)
        assert row["latency_requests"] == 20
    assert result["rows"]["teacher"]["params"] > result["rows"]["student-sasrec-kd"]["params"]
    assert [t["check"] for t in result["targets"]][:2] == [
        f"teacher NDCG@10 >= {TEACHER_MIN_NDCG}",
        "teacher above every student trained alone",
    ]
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["rows"].keys() == result["rows"].keys()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| student-gru-kd |" in md and "| target | measured | met |" in md
    # a second run reuses the dataset, the teacher, the cache and the trained students
    lines.clear()
    again = run_quality_benchmark(
        config, tmp_path / "again", students=("sasrec", "gru"), requests=20, log=lines.append
    )
    assert any("reused" in line for line in lines if line.startswith("soft labels"))
    assert not any("epoch " in line and "/2 loss" in line for line in lines)
    assert again["rows"]["teacher"]["NDCG@10"] == result["rows"]["teacher"]["NDCG@10"]
    # without --students the profile's student is compared (here a GRU profile: its students are reused)
    gru = load_config(profile="demo", overrides=[*TINY, "student.model.arch=gru"])
    lines.clear()
    only = run_quality_benchmark(gru, tmp_path / "gru", requests=20, log=lines.append)
    assert list(only["rows"]) == ["teacher", "student-gru-nokd", "student-gru-kd"]
    assert only["rows"]["student-gru-kd"]["NDCG@10"] == result["rows"]["student-gru-kd"]["NDCG@10"]


def test_quality_benchmark_with_an_ensemble_teacher_reports_the_ensemble(out_root, tmp_path):
    config = load_config(profile="demo", overrides=[*TINY, "teacher.ensemble=2"])
    result = run_quality_benchmark(config, tmp_path / "report", requests=5, log=lambda _: None)
    t = result["rows"]["teacher"]
    assert len(t["member_epochs"]) == 2 and all(1 <= b <= e for e, b in t["member_epochs"])
    assert 0 < t["valid_NDCG@10"] <= 1
    assert "| teacher | members: " in (tmp_path / "report" / "report.md").read_text()
