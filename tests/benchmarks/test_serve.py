import pytest

from shopdistill.benchmarks.serve import CONCURRENCY, run_serve_benchmark
from tests.served import register_two_versions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_the_load_test_serves_student_and_teacher_in_their_own_processes(tmp_path):
    config, _ = register_two_versions(tmp_path / "data")  # v1 is the champion
    result = run_serve_benchmark(config, tmp_path / "report", version="2", requests=40, seconds=5, reloads=2)
    assert result["version"] == "2" and "champion" not in result["aliases"]
    assert set(result["results"]) == {"student-onnx", "student-onnx-int8", "teacher-torch"}
    for model, rows in result["results"].items():
        for level in map(str, CONCURRENCY):
            row = rows[level]
            assert row["requests"] == 40 and row["errors"] == 0, (model, level, row)
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["server_rss_mb"] > 50
    reloads = result["results"]["student-onnx"]["reloads"]
    assert reloads["reloads"] == reloads["reloads_ok"] == 2 and reloads["errors"] == 0
    names = {t["name"] for t in result["targets"]}
    assert "student throughput >= 10x the teacher's at concurrency 8" in names
    report = (tmp_path / "report" / "serve.md").read_text()
    assert "| teacher-torch | 8 |" in report and (tmp_path / "report" / "serve.json").is_file()
    assert report.startswith("Student: v2 (") and "teachers/" in report.splitlines()[0]
