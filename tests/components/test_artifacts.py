"""Atomic folders: a failed write publishes nothing, and a killed writer's leftovers are swept."""

import os
import subprocess
import sys

import pytest

from shopdistill.components.artifacts import atomic_directory, remove_abandoned


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # exited and reaped: no such process now


@pytest.mark.faults
def test_a_failed_write_leaves_no_folder(tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "half.parquet").write_bytes(b"x")
        raise RuntimeError("disk full")
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.faults
def test_leftovers_of_a_killed_writer_are_removed_and_a_live_writers_kept(tmp_path):
    target = tmp_path / "cache"
    dead = tmp_path / f".cache.{_dead_pid()}-deadbeef.partial"
    live = tmp_path / f".cache.{os.getpid()}-cafef00d.partial"
    other = tmp_path / f".other.{_dead_pid()}-deadbeef.partial"  # another target's: not ours to judge
    for folder in (dead, live, other):
        folder.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "data").write_text("ok")
    assert (target / "data").read_text() == "ok"
    assert not dead.exists() and live.exists() and other.exists()
    assert remove_abandoned(tmp_path / "other") == [other]
