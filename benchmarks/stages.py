"""The pipeline's stages for a whole ``PipelineConfig``, as the benchmarks call them.

Thin adapters over the components the nightly flow's tasks call (same functions, same stores), so a
benchmark and a nightly run on the same data reuse each other's teachers, caches and students.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from shopdistill.components.artifacts import Handle
from shopdistill.components.config import DistillConfig, ModelConfig, PipelineConfig
from shopdistill.components.distill.student import distill_student
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import cache_soft_labels
from shopdistill.components.training.loop import TrainResult
from shopdistill.components.training.teacher import TeacherRun, train_teacher


def teacher_for(
    config: PipelineConfig,
    data: SequenceData,
    dataset_digest: str,
    seed: int,
    *,
    log: Callable[[str], None] = print,
) -> tuple[torch.nn.Module, TeacherRun]:
    """The configured teacher (trained, resumed or reused)."""
    return train_teacher(
        config.teacher,
        data,
        dataset_digest,
        config.runtime.root,
        config.data.name,
        seed,
        threads=config.runtime.threads,
        log=log,
    )


def soft_labels_for(
    config: PipelineConfig,
    data: SequenceData,
    dataset_digest: str,
    teacher: torch.nn.Module,
    t_result: TeacherRun,
    *,
    top_k: int | None = None,
    cache_hidden: bool | None = None,
) -> tuple[Handle, dict[str, Any], bool]:
    """The teacher's soft labels for every training position (reused when digests match)."""
    d_cfg = config.distill
    return cache_soft_labels(
        teacher,
        data,
        config.runtime.root,
        teacher_digest=t_result.checkpoint_sha256,
        dataset_digest=dataset_digest,
        max_len=config.teacher.model.max_len,
        top_k=top_k or d_cfg.top_k,
        logits_dtype=d_cfg.logits_dtype,
        cache_hidden=d_cfg.cache_hidden if cache_hidden is None else cache_hidden,
    )


def student_for(
    config: PipelineConfig,
    data: SequenceData,
    dataset_digest: str,
    model_cfg: ModelConfig,
    cache: Handle | None,
    seed: int,
    *,
    distill: DistillConfig | None = None,
    log: Callable[[str], None] = print,
    name: str = "student",
) -> tuple[torch.nn.Module, TrainResult]:
    """A student with KD from ``cache``, or the no-KD baseline when ``cache`` is None."""
    return distill_student(
        data,
        model_cfg,
        config.student.train,
        distill or config.distill,
        config.runtime.root,
        dataset_digest=dataset_digest,
        cache=cache,
        seed=seed,
        threads=config.runtime.threads,
        log=log,
        name=name,
    )
