"""The teacher stage: train (or reuse, or resume) a single teacher or an ensemble of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shopdistill.components import stores
from shopdistill.components.config import TeacherConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import ENSEMBLE_FILE, load_teacher, write_ensemble
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training.loop import TrainResult, fit
from shopdistill.components.training.progress import progress


@dataclass
class TeacherRun:
    """A trained teacher: one model, or an ensemble recorded in ``ensemble.json``."""

    checkpoint: Path  # best.pt, or the ensemble record
    checkpoint_sha256: str  # the checkpoint's digest, or the ensemble's (its members' digests)
    members: list[TrainResult]

    @property
    def history(self) -> list[dict[str, Any]]:
        """The first member's epochs (each member's are in ``members``)."""
        return self.members[0].history

    @property
    def reused(self) -> bool:
        """Nothing was trained by this call: every member was a finished stored run."""
        return all(m.trained_epochs == 0 for m in self.members)

    @property
    def train_seconds(self) -> float:
        return sum(h["seconds"] for m in self.members for h in m.history)


def train_teacher(
    t_cfg: TeacherConfig,
    data: SequenceData,
    dataset_digest: str,
    root: Path,
    data_name: str,
    seed: int,
    *,
    threads: int = 1,
    log: Callable[[str], None] = progress,
) -> tuple[torch.nn.Module, TeacherRun]:
    """Train (or reuse, or resume) the teacher, stored by dataset digest, teacher config and seed.

    With ``ensemble = n`` the members are the single teachers of seeds ``seed .. seed+n-1``, so a
    member is shared with the ensembles and single runs that contain it.
    """
    results = []
    for member_seed in range(seed, seed + t_cfg.ensemble):
        key = stores.teacher_key(dataset_digest, t_cfg, member_seed)
        torch.manual_seed(member_seed)
        model = build_model(t_cfg.model, data.n_items)
        name = "teacher" if t_cfg.ensemble == 1 else f"teacher-{member_seed - seed + 1}of{t_cfg.ensemble}"
        out = stores.teacher_dir(root, data_name, key)
        result = fit(
            model,
            data,
            t_cfg.model,
            t_cfg.train,
            out,
            seed=member_seed,
            threads=threads,
            fingerprint=key,
            log=log,
            name=name,
        )
        results.append(result)
    if t_cfg.ensemble == 1:
        run = TeacherRun(results[0].checkpoint, results[0].checkpoint_sha256, results)
    else:
        record = stores.ensemble_dir(root, data_name, [r.checkpoint_sha256 for r in results])
        digest = write_ensemble(record, [(r.checkpoint, r.checkpoint_sha256) for r in results])
        run = TeacherRun(record / ENSEMBLE_FILE, digest, results)
    return load_teacher(run.checkpoint), run
