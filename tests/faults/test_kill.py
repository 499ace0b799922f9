"""kill -9 in the middle of each model stage, then the same command again: training resumes from its
last checkpoint (at most the epoch in progress is lost); a soft-label cache is never left half-written
and is rebuilt whole."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.soft_labels.reader import verify_soft_labels
from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EPOCH = re.compile(r"^\[(\w[\w-]*)\] epoch +(\d+)/", re.M)


def start(stage: str, root: Path, log: Path, slow: float = 0.0) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tests.faults.stage_worker", stage, str(root)]
    argv += ["--slow", str(slow)] if slow else []
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def kill_when(proc: subprocess.Popen, log: Path, seen: re.Pattern, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while not seen.search(log.read_text()):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return log.read_text()


def epochs(text: str, name: str) -> list[int]:
    return [int(n) for who, n in EPOCH.findall(text) if who == name]


@pytest.mark.parametrize("stage, name", [("teacher", "teacher"), ("student", "student")])
def test_a_killed_training_resumes_losing_at_most_the_epoch_in_progress(stage, name, tmp_path):
    root = tmp_path / "root"
    before = kill_when(
        start(stage, root, tmp_path / "killed.log", slow=0.4),
        tmp_path / "killed.log",
        re.compile(rf"^\[{name}\] epoch +3/", re.M),
    )
    done = max(epochs(before, name))
    rerun = start(stage, root, tmp_path / "rerun.log")
    assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    after = epochs((tmp_path / "rerun.log").read_text(), name)
    assert after, "the rerun trained nothing: it resumed past the end?"
    assert min(after) >= done  # resumed: at most the epoch being trained at the kill is redone
    assert max(after) == 8
    folder = next(p.parent for p in (root / f"{name}s").rglob("best.pt"))
    load_model(folder / "best.pt", sha256_file(folder / "best.pt"))  # a whole, loadable checkpoint


def test_a_killed_soft_label_cache_is_never_published_half_written(tmp_path):
    root = tmp_path / "root"
    text = kill_when(
        start("soft_labels", root, tmp_path / "killed.log", slow=0.3),
        tmp_path / "killed.log",
        re.compile(r"soft-label groups written 2$", re.M),
    )
    assert "soft-label groups written 2" in text
    published = [p for p in (root / "soft_labels").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert published == []  # only the killed writer's hidden temporary folder, if anything
    rerun = start("soft_labels", root, tmp_path / "rerun.log")
    assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    (cache,) = [p for p in (root / "soft_labels").iterdir() if p.is_dir() and not p.name.startswith(".")]
    manifest = verify_soft_labels(cache)
    assert manifest["rows"] > 0
    # the killed writer's leftovers were removed when the target was written again
    assert [
        p.name for p in (root / "soft_labels").iterdir() if p.name.startswith(".") and p.suffix != ".lock"
    ] == []
