"""The disk fills up while the soft-label cache is written: the write fails with ENOSPC (not retried
as if transient), nothing partial is left that a later run would use, and once there is room the
next run builds the cache whole."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from shopdistill.components.soft_labels.format import verify_soft_labels
from shopdistill.tasks.policy import is_transient
from tests.faults.test_corruption import Stored

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all but ``leave`` bytes of ``disk``."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave
    with filler.open("wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        while free > 0:
            n = min(free, len(chunk))
            f.write(chunk[:n])
            free -= n
    return filler


def published(root: Path) -> list[Path]:
    folder = root / "soft_labels"
    return [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []


def test_a_full_disk_during_the_cache_write_leaves_nothing_a_later_run_would_use(small_disk):
    stored = Stored(small_disk / "data")
    stored.teacher()  # dataset and teacher fit
    filler = fill(small_disk, leave=16 * 1024)
    with pytest.raises(OSError) as caught:
        stored.soft_labels()
    assert caught.value.errno == errno.ENOSPC
    assert not is_transient(caught.value)  # a full disk is not retried as if it would pass
    assert published(stored.root) == []
    hidden = [p for p in (stored.root / "soft_labels").iterdir() if p.suffix != ".lock"]
    assert hidden == []  # the temporary folder was removed too
    filler.unlink()
    handle = stored.soft_labels()
    verify_soft_labels(handle.uri)
    assert [p.name for p in published(stored.root)] == [Path(handle.uri).name]
