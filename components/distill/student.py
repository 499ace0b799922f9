"""Distil a student from the dataset plus the teacher's soft-label cache (never the teacher itself).

Without a cache, or with every KD weight at zero, this is the no-KD baseline: the same student on hard
labels only, trained by the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shopdistill.components import stores
from shopdistill.components.artifacts import Handle
from shopdistill.components.config import DistillConfig, ModelConfig, TrainConfig
from shopdistill.components.distill.batches import KDBatch, kd_batches
from shopdistill.components.distill.item_init import item_init_from_interactions, item_init_from_teacher
from shopdistill.components.distill.objective import DistillationObjective, uses_cache
from shopdistill.components.models import build_model
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import SoftLabelCacheError, SoftLabelReader
from shopdistill.components.training.loop import TrainResult, fit
from shopdistill.components.training.progress import progress
from shopdistill.components.training.warm_start import WarmStart, start_from


def distill_student(
    data: SequenceData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    distill_cfg: DistillConfig,
    root: str | Path,
    *,
    dataset_digest: str,
    cache: Handle | None = None,
    seed: int = 0,
    threads: int = 1,
    log: Callable[[str], None] = progress,
    name: str = "student",
    start: WarmStart | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train (or reuse, or resume) a student: with knowledge distillation from the soft-label
    ``cache``, or the no-KD baseline without one. Stored under ``stores.student_dir``.

    ``start``: a checkpoint of the same shape to continue from (the champion, on a night), its item
    table grown to this catalogue; training then lasts ``train_cfg.epochs`` (the warm bound)."""
    kd = cache is not None and uses_cache(distill_cfg)
    key = stores.student_key(
        dataset_digest,
        model_cfg,
        train_cfg,
        seed,
        cache_digest=cache.sha256 if kd else None,
        distill=distill_cfg if kd else None,
        warm_from=start.sha256 if start else None,
    )
    out_dir = stores.student_dir(Path(root), key)
    torch.manual_seed(seed)
    student = build_model(model_cfg, data.n_items)
    fit_args = dict(seed=seed, threads=threads, fingerprint=key, log=log, name=name)
    if not kd:
        if model_cfg.item_embedding == "pq":  # codes from the interactions: no teacher here
            items = item_init_from_interactions(data, model_cfg.d_model, seed)
            student.item_emb.assign(items.numpy(), seed, counts=data.train_counts[1:])
        return student, fit(student, data, model_cfg, train_cfg, out_dir, **fit_args)
    reader = SoftLabelReader(cache.uri)
    teacher_items = reader.teacher_items() if distill_cfg.item_init == "teacher" else None  # (I, D)
    _check_cache(reader, distill_cfg, data, teacher_items)
    if teacher_items is not None:
        start_items = item_init_from_teacher(teacher_items, model_cfg.d_model)
        _start_items(student, model_cfg, start_items, data.train_counts[1:], seed)
    if start is not None:
        start_from(student, start, data.n_items)
        log(f"[{name}] warm start from {start.checkpoint}")
    objective = DistillationObjective(distill_cfg, model_cfg.d_model, reader.manifest.get("hidden_dim"))

    def batches(epoch: int, rng: np.random.Generator) -> Iterator[KDBatch]:
        return kd_batches(reader, data, train_cfg.batch_size, model_cfg.max_len, distill_cfg.top_k, rng)

    result = fit(
        student,
        data,
        model_cfg,
        train_cfg,
        out_dir,
        step_loss=objective.step_loss(student),
        batches=batches,
        extra_modules=objective,
        **fit_args,
    )
    return student, result


def _check_cache(
    reader: SoftLabelReader, cfg: DistillConfig, data: SequenceData, teacher_items: np.ndarray | None
) -> None:
    """Refuse a cache that cannot serve these distillation settings on this data."""
    path = reader.path
    if teacher_items is not None and teacher_items.shape[0] != data.n_items:
        raise SoftLabelCacheError(
            f"{path} holds item embeddings for {teacher_items.shape[0]:,} items, the data has "
            f"{data.n_items:,}; the cache belongs to another dataset"
        )
    if (cfg.w_feature > 0 or cfg.w_relation > 0) and not reader.has_hidden:
        raise SoftLabelCacheError(
            f"feature and relation distillation need the teacher's hidden states, but {path} was "
            "built without them; set distill.cache_hidden=true and rebuild the cache"
        )
    if cfg.top_k > reader.manifest["top_k"]:
        raise SoftLabelCacheError(
            f"distill.top_k={cfg.top_k} but the cache {path} holds the teacher's top "
            f"{reader.manifest['top_k']} only; rebuild it with a larger top_k"
        )


def _start_items(
    student: nn.Module, model_cfg: ModelConfig, start: torch.Tensor, counts: np.ndarray, seed: int
) -> None:
    """The student's items from the teacher's: the (I, d) start itself in a full table, its sub-item
    codes (and the frequent items' full rows, by ``counts``) in a pq table; a qr table has no per-item
    rows to start and keeps its own initialisation."""
    if model_cfg.item_embedding == "full":
        with torch.no_grad():
            student.item_emb.weight[1:] = start
    elif model_cfg.item_embedding == "pq":
        student.item_emb.assign(start.numpy(), seed=seed, counts=counts)
