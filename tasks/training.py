"""Model stages: train the teacher, cache its soft labels, distil a student (or the no-KD baseline).

Each reuses its verified stored output when nothing it depends on changed (see ``policy.py``): a rerun
trains nothing and still publishes every artifact, marked "reused".
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from shopdistill.components import candidates as candidate_stage
from shopdistill.components import comparison, stores
from shopdistill.components.artifacts import Handle, write_json_atomic
from shopdistill.components.config import (
    DistillConfig,
    PipelineConfig,
    RegistryConfig,
    RuntimeConfig,
    StudentConfig,
    TeacherConfig,
)
from shopdistill.components.data.dataset import load_dataset
from shopdistill.components.distill import student as student_stage
from shopdistill.components.models.checkpoint import load_teacher
from shopdistill.components.registration import onnx_export
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import shards as shard_stage
from shopdistill.components.soft_labels import writer as soft_label_stage
from shopdistill.components.training import teacher as teacher_stage
from shopdistill.components.training.distributed import Cluster
from shopdistill.components.training.runtime import configure_torch
from shopdistill.components.training.warm_start import WarmStart, warm_train
from shopdistill.tasks.policy import RETRY_DELAYS, retry_transient
from shopdistill.tasks.publish import soft_labels_markdown, student_markdown, teacher_markdown

EXPENSIVE = dict(
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)


@task(**EXPENSIVE)
def train_teacher(dataset: Handle, teacher: TeacherConfig, runtime: RuntimeConfig) -> Handle:
    data = SequenceData.from_path(dataset.uri)
    _, run = teacher_stage.train_teacher(
        teacher,
        data,
        dataset.sha256,
        runtime.root,
        dataset.meta["name"],
        runtime.seed,
        previous_dataset=dataset.meta.get("previous"),
        threads=runtime.threads,
        cluster=Cluster.of(runtime),
    )
    return _teacher_handle(teacher, run)


@task(**EXPENSIVE)
def train_teacher_member(dataset: Handle, teacher: TeacherConfig, runtime: RuntimeConfig, index: int):
    """Member ``index`` of an ensemble teacher on its own (the members train in parallel on Ray)."""
    return teacher_stage.train_member(
        teacher,
        SequenceData.from_path(dataset.uri),
        dataset.sha256,
        runtime.root,
        dataset.meta["name"],
        runtime.seed,
        index,
        previous_dataset=dataset.meta.get("previous"),
        threads=runtime.threads,
        cluster=Cluster.of(runtime),
    )


@task
def assemble_teacher(
    dataset: Handle, teacher: TeacherConfig, runtime: RuntimeConfig, members: list
) -> Handle:
    """The ensemble record of the members trained by :func:`train_teacher_member`."""
    _, run = teacher_stage.assemble_teacher(teacher, runtime.root, dataset.meta["name"], members)
    return _teacher_handle(teacher, run)


def _teacher_handle(teacher: TeacherConfig, run) -> Handle:
    best = [m.best_valid["NDCG@10"] for m in run.members]
    create_markdown_artifact(
        key="teacher-metrics",
        markdown=teacher_markdown(
            teacher, best, run.train_seconds, run.history, run.reused, run.started_from
        ),
        description="Teacher training",
    )
    meta = {"history": run.history, "max_len": teacher.model.max_len, "ensemble": teacher.ensemble}
    meta["started_from"] = ",".join(s or "cold" for s in run.started_from)
    return Handle(str(run.checkpoint), run.checkpoint_sha256, "teacher", meta)


@task(**EXPENSIVE)
def cache_soft_labels(
    dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig
) -> Handle:
    handle, manifest, reused = soft_label_stage.cache_soft_labels(
        load_teacher(teacher.uri, teacher.sha256),
        SequenceData.from_path(dataset.uri),
        runtime.root,
        teacher_digest=teacher.sha256,
        dataset_digest=dataset.sha256,
        max_len=teacher.meta["max_len"],
        top_k=distill.top_k,
        logits_dtype=distill.logits_dtype,
        cache_hidden=distill.cache_hidden,
    )
    create_markdown_artifact(
        key="soft-labels",
        markdown=soft_labels_markdown(manifest, handle.uri, reused),
        description="Teacher soft-label cache",
    )
    return Handle(handle.uri, handle.sha256, handle.kind, {"rows": manifest["rows"], "reused": reused})


def _soft_label_key(dataset: Handle, teacher: Handle, distill: DistillConfig) -> dict:
    return {
        "teacher_digest": teacher.sha256,
        "dataset_digest": dataset.sha256,
        "max_len": teacher.meta["max_len"],
        "top_k": distill.top_k,
        "logits_dtype": distill.logits_dtype,
        "cache_hidden": distill.cache_hidden,
    }


def _shards_dir(dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig) -> Path:
    return stores.soft_labels_dir(
        runtime.root,
        teacher.sha256,
        dataset.sha256,
        distill.top_k,
        distill.logits_dtype,
        distill.cache_hidden,
        runtime.soft_label_shards,
    )


@task(**EXPENSIVE)
def soft_label_part(
    dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig, index: int
) -> dict:
    """Part ``index`` of ``runtime.soft_label_shards`` of the teacher's soft labels (reused if intact)."""
    configure_torch(runtime.threads)
    record, _ = shard_stage.write_part(
        load_teacher(teacher.uri, teacher.sha256),
        SequenceData.from_path(dataset.uri),
        _shards_dir(dataset, teacher, distill, runtime),
        index,
        runtime.soft_label_shards,
        _soft_label_key(dataset, teacher, distill),
    )
    return record


@task(**EXPENSIVE)
def finish_soft_labels(
    dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig, parts: list[dict]
) -> Handle:
    """One manifest over the soft-label parts (components/soft_labels/shards.py)."""
    handle, manifest, reused = shard_stage.finish_parts(
        load_teacher(teacher.uri, teacher.sha256),
        _shards_dir(dataset, teacher, distill, runtime),
        parts,
        _soft_label_key(dataset, teacher, distill),
    )
    create_markdown_artifact(
        key="soft-labels",
        markdown=soft_labels_markdown(manifest, handle.uri, reused),
        description="Teacher soft-label cache",
    )
    return Handle(handle.uri, handle.sha256, handle.kind, {"rows": manifest["rows"], "reused": reused})


@task
def champion_start(
    dataset: Handle, student: StudentConfig, registry: RegistryConfig, runtime: RuntimeConfig, run_dir: str
) -> WarmStart | None:
    """On a night after another: the champion student to continue from (None: start cold)."""
    item_map = load_dataset(dataset.uri).item_map
    return comparison.champion_start(registry, runtime.root, Path(run_dir), item_map, student)


@task(**EXPENSIVE)
def distill_student(
    dataset: Handle,
    soft_labels: Handle | None,
    student: StudentConfig,
    distill: DistillConfig,
    runtime: RuntimeConfig,
    name: str,
    start: WarmStart | None = None,
) -> Handle:
    """With ``soft_labels``: the KD student; without: the same student on hard labels (baseline).
    With ``start``: continued from it for at most ``student.warm.epochs`` epochs."""
    train = warm_train(student.train, student.warm) if start else student.train
    began = time.time()
    _, result = student_stage.distill_student(
        SequenceData.from_path(dataset.uri),
        student.model,
        train,
        distill,
        runtime.root,
        dataset_digest=dataset.sha256,
        cache=soft_labels,
        seed=runtime.seed,
        threads=runtime.threads,
        name=name,
        start=start,
    )
    create_markdown_artifact(
        key=f"{name}-training",
        markdown=student_markdown(name, student, soft_labels is not None, result)
        + (f"\n\nWarm-started from the champion `{start.sha256[:12]}`." if start else ""),
        description=f"{name} training",
    )
    meta = {"name": name, "history": result.history, "max_len": student.model.max_len}
    meta |= {
        "started_from": start.sha256 if start else "cold",
        "generation": start.generation + 1 if start else 0,
        "valid_ndcg": result.best_valid["NDCG@10"],
        "trained": {"pid": os.getpid(), "host": socket.gethostname(), "from": began, "to": time.time()},
    }
    return Handle(str(result.checkpoint), result.checkpoint_sha256, "student", meta)


@task
def choose_student(
    dataset: Handle,
    trained: dict[str, Handle],
    candidates: list[tuple[str, StudentConfig, DistillConfig]],
    config: PipelineConfig,
    run_dir: str,
) -> tuple[Handle, StudentConfig]:
    """The KD candidate the rule keeps (components/candidates.py) and its student settings; every
    candidate in ``candidates.json`` and the ``student-candidates`` artifact."""
    ds = load_dataset(dataset.uri)
    data = SequenceData.from_dataset(ds)
    rows = []
    for name, _, _ in candidates:
        handle = trained[name]
        export = onnx_export(config, ds, dataset, handle)
        measured = candidate_stage.measure_candidate(
            name,
            handle.uri,
            handle.meta["valid_ndcg"],
            data,
            config.candidates.latency_requests,
            export.path if export else None,
        )
        rows.append(replace(measured, trained=handle.meta.get("trained", {})))
    try:
        chosen = candidate_stage.choose_candidate(rows, config.candidates)
    finally:
        write_json_atomic(Path(run_dir) / "candidates.json", {"candidates": [r.to_dict() for r in rows]})
    create_markdown_artifact(
        key="student-candidates",
        markdown=candidate_stage.candidates_markdown(rows, chosen),
        description="Student candidates: validation decides",
    )
    student = next(s for name, s, _ in candidates if name == chosen.name)
    return trained[chosen.name], student
