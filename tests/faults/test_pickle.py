"""A tampered checkpoint carrying a pickle payload, at every path that loads one: refused, never run.

Every loader uses ``torch.load(weights_only=True)`` (``np.load(allow_pickle=False)`` for arrays), so
an object whose unpickling would run code is rejected before anything executes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from shopdistill.components.config import load_config
from shopdistill.components.models.checkpoint import CheckpointError, load_model, load_teacher, stored_digest
from shopdistill.components.soft_labels.reader import SoftLabelReader
from shopdistill.components.training.loop import LAST
from tests.faults.test_corruption import Stored
from tests.tiny import TINY_PIPELINE

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CONFIG = load_config(profile="demo", overrides=TINY_PIPELINE)


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tamper(path: Path, marker: Path) -> None:
    """Replace ``path`` with a torch file whose payload would create ``marker`` when unpickled."""
    torch.save({"config": {}, "state_dict": {}, "evil": Payload(marker)}, path)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Stored:
    stored = Stored(tmp_path_factory.mktemp("pickle"))
    stored.soft_labels()  # dataset, teacher and soft labels
    stored.student()
    return stored


def test_the_payload_would_run_if_unpickled(tmp_path):
    """The check is real: with ``weights_only=False`` the same file does run the command."""
    marker = tmp_path / "ran"
    tamper(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_best_pt_loaders_refuse_it(stored, tmp_path, which):
    marker = tmp_path / "ran"
    folder = tmp_path / "copy"
    shutil.copytree(stored.root, folder)
    best = next((folder / f"{which}s").rglob("best.pt"))
    tamper(best, marker)
    with pytest.raises(CheckpointError, match="cannot be loaded as weights only"):
        load_model(best)
    with pytest.raises(CheckpointError):
        load_teacher(best)
    assert stored_digest(best, {"fingerprint": "", "best_epoch": 0}, {}) is None  # rewritten, not used
    # the stage that owns it rewrites it from last.pt and never runs the payload
    run = Stored(folder).teacher() if which == "teacher" else Stored(folder).student()
    load_model(run.checkpoint, run.checkpoint_sha256)
    assert not marker.exists()


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_a_tampered_last_pt_is_not_resumed(stored, tmp_path, which):
    """``fit`` resumes from ``last.pt``: the tampered file is refused and training starts afresh."""
    marker = tmp_path / "ran"
    folder = tmp_path / "copy"
    shutil.copytree(stored.root, folder)
    last = next((folder / f"{which}s").rglob(LAST))
    tamper(last, marker)
    run = Stored(folder).teacher() if which == "teacher" else Stored(folder).student()
    assert run.checkpoint.is_file() and not marker.exists()


def test_a_pickled_item_table_in_the_soft_label_cache_is_refused(stored, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(stored.root, folder)
    cache = next(p for p in (folder / "soft_labels").iterdir() if p.is_dir() and not p.name.startswith("."))
    items = next(cache.glob("*.npy"))
    np.save(items, np.array([Payload(tmp_path / "ran")], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        SoftLabelReader(cache).teacher_items()
    assert not (tmp_path / "ran").exists()
