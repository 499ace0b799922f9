"""Model stages: train the teacher, cache its soft labels, distil a student (or the no-KD baseline).

Cached by content (input digests + config + code version). The components also reuse their own valid
output (checkpoints resume, a verified cache is reused), so a rerun stays cheap even if Prefect's result
storage is wiped.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from components.artifacts import Handle, sha256_json
from components.config import DistillConfig, RuntimeConfig, StudentConfig, TeacherConfig
from components.distill.trainer import distill_student as train_student
from components.quality import train_teacher_models
from components.sequences import SequenceData
from components.soft_labels import build_soft_labels
from components.training import load_teacher
from tasks.policy import RETRY_DELAYS, content_cache_key, retry_transient

EXPENSIVE = dict(
    cache_key_fn=content_cache_key,
    persist_result=True,
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)


def _history_table(history: list[dict]) -> str:
    rows = ["| epoch | loss | valid NDCG@10 | valid HR@10 | s |", "|---|---|---|---|---|"]
    rows += [
        f"| {h['epoch']} | {h['loss']:.4f} | {h['valid']['NDCG@10']:.4f} | {h['valid']['HR@10']:.4f} | "
        f"{h['seconds']:.1f} |"
        for h in history
    ]
    return "\n".join(rows)


@task(**EXPENSIVE)
def train_teacher(dataset: Handle, teacher: TeacherConfig, runtime: RuntimeConfig) -> Handle:
    data = SequenceData.from_path(dataset.uri)
    name = dataset.meta.get("name") or Path(dataset.uri).name
    _, run = train_teacher_models(
        teacher, data, dataset.sha256, runtime.root, name, runtime.seed, threads=runtime.threads
    )
    best = [m.best_valid["NDCG@10"] for m in run.members]
    create_markdown_artifact(
        key="teacher-metrics",
        markdown=f"Teacher `{teacher.model.arch}` d={teacher.model.d_model}, {teacher.model.n_layers} layers"
        f"{f', ensemble of {teacher.ensemble}' if teacher.ensemble > 1 else ''}: best validation NDCG@10 "
        f"{', '.join(f'{b:.4f}' for b in best)} ({run.train_seconds:.0f} s of training)\n\n"
        + _history_table(run.history),
        description="Teacher training",
    )
    return Handle(
        str(run.checkpoint),
        run.checkpoint_sha256,
        "teacher",
        {"history": run.history, "max_len": teacher.model.max_len, "ensemble": teacher.ensemble},
    )


@task(**EXPENSIVE)
def cache_soft_labels(
    dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig
) -> Handle:
    data = SequenceData.from_path(dataset.uri)
    model = load_teacher(teacher.uri)  # a checkpoint or an ensemble record
    handle, manifest, reused = build_soft_labels(
        model,
        data,
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
        markdown=f"Teacher top-{manifest['top_k']} ({manifest['logits_dtype']} logits"
        f"{', hidden states' if manifest['hidden_dim'] else ''}) for {manifest['rows']:,} training positions "
        f"of {manifest['users']:,} users: `{handle.uri}`{' (reused)' if reused else ''}",
        description="Teacher soft-label cache",
    )
    return Handle(handle.uri, handle.sha256, handle.kind, {"rows": manifest["rows"], "reused": reused})


@task(**EXPENSIVE)
def distill_student(
    dataset: Handle,
    soft_labels: Handle | None,
    student: StudentConfig,
    distill: DistillConfig,
    runtime: RuntimeConfig,
    name: str,
) -> Handle:
    """With ``soft_labels``: the KD student; without: the same student on hard labels (baseline)."""
    data = SequenceData.from_path(dataset.uri)
    key = sha256_json(
        {
            "data": dataset.sha256,
            "cache": soft_labels.sha256 if soft_labels else None,
            "student": student.model_dump(),
            "distill": distill.model_dump() if soft_labels else None,
            "seed": runtime.seed,
        }
    )
    out = runtime.root / "students" / key[:12] / name
    _, result = train_student(
        data,
        student.model,
        student.train,
        distill,
        out,
        cache_path=soft_labels.uri if soft_labels else None,
        seed=runtime.seed,
        threads=runtime.threads,
        name=name,
    )
    create_markdown_artifact(
        key=f"{name}-training",
        markdown=f"{name} (`{student.model.arch}` d={student.model.d_model}"
        f"{', distilled' if soft_labels else ', hard labels only'}): best validation NDCG@10 "
        f"{result.best_valid['NDCG@10']:.4f} at epoch {result.best_epoch} ({result.stopped})\n\n"
        + _history_table(result.history),
        description=f"{name} training",
    )
    return Handle(
        str(result.checkpoint),
        result.checkpoint_sha256,
        "student",
        {"name": name, "history": result.history, "max_len": student.model.max_len},
    )
