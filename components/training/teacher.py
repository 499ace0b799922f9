"""The teacher stage: train (or reuse, or resume) a single teacher or an ensemble of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shopdistill.components import stores
from shopdistill.components.config import TeacherConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import ENSEMBLE_FILE, load_teacher, write_ensemble
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training import warm_start
from shopdistill.components.training.distributed import Cluster, fit_replicated
from shopdistill.components.training.loop import TrainResult, fit
from shopdistill.components.training.progress import progress


@dataclass
class TeacherRun:
    """A trained teacher: one model, or an ensemble recorded in ``ensemble.json``."""

    checkpoint: Path  # best.pt, or the ensemble record
    checkpoint_sha256: str  # the checkpoint's digest, or the ensemble's (its members' digests)
    members: list[TrainResult]
    started_from: list[str | None] = field(default_factory=list)  # per member: warm-start digest or None

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
    previous_dataset: str | None = None,
    threads: int = 1,
    cluster: Cluster = Cluster(),
    log: Callable[[str], None] = progress,
) -> tuple[torch.nn.Module, TeacherRun]:
    """Train (or reuse, or resume) the teacher, stored by dataset digest, teacher config and seed.

    With ``ensemble = n`` the members are the single teachers of seeds ``seed .. seed+n-1``, so a
    member is shared with the ensembles and single runs that contain it. With ``previous_dataset``
    (last night's dataset digest), each member continues from last night's member when there is one
    and no cold start is due (``warm_start.py``). With ``train.workers > 1`` each trains with DDP on
    ``cluster`` (``distributed.py``).
    """
    members = [
        train_member(
            t_cfg, data, dataset_digest, root, data_name, seed, i, previous_dataset, threads, cluster, log
        )
        for i in range(t_cfg.ensemble)
    ]
    return assemble_teacher(t_cfg, root, data_name, members)


def train_member(
    t_cfg: TeacherConfig,
    data: SequenceData,
    dataset_digest: str,
    root: Path,
    data_name: str,
    seed: int,
    index: int,
    previous_dataset: str | None = None,
    threads: int = 1,
    cluster: Cluster = Cluster(),
    log: Callable[[str], None] = progress,
) -> tuple[TrainResult, str | None]:
    """Member ``index`` of the teacher (seed ``seed + index``), on its own, in any process: its
    training result and the digest it warm-started from (None: cold)."""
    name = "teacher" if t_cfg.ensemble == 1 else f"teacher-{index + 1}of{t_cfg.ensemble}"
    result, warm = _train_member(
        t_cfg,
        data,
        dataset_digest,
        root,
        data_name,
        seed + index,
        previous_dataset,
        threads,
        cluster,
        log,
        name,
    )
    return result, warm.sha256 if warm else None


def assemble_teacher(
    t_cfg: TeacherConfig, root: Path, data_name: str, members: list[tuple[TrainResult, str | None]]
) -> tuple[torch.nn.Module, TeacherRun]:
    """The teacher of the trained ``members`` (in member order): the one model, or their ensemble record."""
    results, started = [r for r, _ in members], [s for _, s in members]
    if t_cfg.ensemble == 1:
        run = TeacherRun(results[0].checkpoint, results[0].checkpoint_sha256, results, started)
    else:
        record = stores.ensemble_dir(root, data_name, [r.checkpoint_sha256 for r in results])
        digest = write_ensemble(record, [(r.checkpoint, r.checkpoint_sha256) for r in results])
        run = TeacherRun(record / ENSEMBLE_FILE, digest, results, started)
    return load_teacher(run.checkpoint), run


def _train_member(
    t_cfg: TeacherConfig,
    data: SequenceData,
    dataset_digest: str,
    root: Path,
    data_name: str,
    seed: int,
    previous_dataset: str | None,
    threads: int,
    cluster: Cluster,
    log: Callable[[str], None],
    name: str,
) -> tuple[TrainResult, warm_start.WarmStart | None]:
    """One single teacher: cold, or continued from last night's for at most ``warm.epochs`` epochs."""
    config_key = stores.teacher_config_key(t_cfg)
    previous = None
    if previous_dataset:
        folders = sorted((Path(root) / "teachers").glob(f"{data_name}-*"))
        previous = warm_start.find_previous(folders, previous_dataset, config_key, seed)
    warm = warm_start.choose(t_cfg.warm, previous)
    key = stores.teacher_key(dataset_digest, t_cfg, seed, warm_from=warm.sha256 if warm else None)
    torch.manual_seed(seed)
    model = build_model(t_cfg.model, data.n_items)
    train = t_cfg.train
    if warm:
        warm_start.start_from(model, warm, data.n_items)
        train = warm_start.warm_train(train, t_cfg.warm)
        log(f"[{name}] warm start from {warm.checkpoint} (warm night {warm.generation + 1})")
    out = stores.teacher_dir(root, data_name, key)
    args = dict(seed=seed, threads=threads, fingerprint=key, log=log, name=name)
    if train.workers > 1:
        result = fit_replicated(model, data, t_cfg.model, train, out, cluster=cluster, **args)
    else:
        result = fit(model, data, t_cfg.model, train, out, **args)
    warm_start.write_lineage(out, dataset_digest, config_key, seed, warm, result.checkpoint_sha256)
    return result, warm
