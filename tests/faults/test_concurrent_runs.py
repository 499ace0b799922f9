"""Two runs started at the same moment on one fresh data folder: both correct, no corruption, one
version (``components/locks.py``: one writer per stored output and one registering run at a time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.config import load_config
from shopdistill.components.registry import Registry
from tests.tiny import TINY_PIPELINE

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SETTINGS = [*TINY_PIPELINE, "gate.require_beats_baseline=false", "gate.min_ratio_to_teacher=0.5"]


def test_two_simultaneous_runs_share_one_data_folder_correctly(tmp_path: Path):
    data = tmp_path / "data"
    sets = [arg for item in SETTINGS for arg in ("--set", item)]
    procs = []
    for i in range(2):
        env = {**os.environ, "SHOPDISTILL_DATA_DIR": str(data), "PREFECT_HOME": str(tmp_path / f"prefect{i}")}
        env.pop("PREFECT_API_URL", None)
        log = (tmp_path / f"run{i}.log").open("w")
        argv = [sys.executable, "-m", "shopdistill.flows.cli", "run", "--profile", "demo", *sets]
        procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for proc, log in procs:
        codes.append(proc.wait(timeout=600))
        log.close()
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)

    config = load_config(profile="demo", overrides=[*SETTINGS, f"runtime.output_dir={data}"])
    registry = Registry(config.registry, data)
    versions = registry.versions()
    assert [v.version for v in versions] == ["1"]  # the second run found the first one's version
    champion = registry.champion()
    # each stage was trained once: one folder per stored kind, and the lineage matches the files
    students = [p for p in (data / "students").iterdir() if p.is_dir()]
    assert len(students) == 2  # the KD student and the no-KD baseline
    digests = {sha256_file(p / "best.pt") for p in students}
    assert champion.tags["student_digest"] in digests
    teachers = [p for p in (data / "teachers").rglob("best.pt")]
    assert len(teachers) == 1 and sha256_file(teachers[0]) == champion.tags["teacher_digest"]
    assert len([p for p in (data / "soft_labels").iterdir() if p.is_dir()]) == 1
    # no leftovers of a write in progress
    assert not [p for p in data.rglob("*") if p.name.endswith((".partial", ".tmp")) or ".partial-" in p.name]
