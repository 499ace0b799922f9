"""Where every stored thing lives under the data root, and what keys it.

Each stored output is content-addressed: its folder name is a digest of exactly what determines it,
so a changed input is a new folder and an unchanged one is found again. The nightly flow and the
benchmarks both go through these functions, so they share every stored dataset, teacher, cache and
student.

    <root>/datasets/<name>-<digest12>/                 the prepared dataset (content digest)
    <root>/teachers/<name>-<key12>/                    one teacher: dataset digest, teacher config, seed
    <root>/teachers/<name>-ensemble-<key12>/           an ensemble record: its members' checkpoint digests
    <root>/soft_labels/<teacher12>-<data12>-k<K>-<dtype>[-hidden][-s<shards>]/   the teacher's soft labels
    <root>/students/<key12>/                           a student (see :func:`student_key`)
    <root>/exports/<key12>/                            a student's ONNX export: student + dataset + code
    <root>/runs/<UTC stamp>-<label>-<name>-<random6>/  one run's reports (never reused)
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from shopdistill.components.artifacts import sha256_json
from shopdistill.components.config import DistillConfig, ModelConfig, TeacherConfig, TrainConfig


def dataset_dir(root: Path, name: str, digest: str) -> Path:
    return Path(root) / "datasets" / f"{name}-{digest[:12]}"


# how a teacher trains (its ensemble's other members, warm starts, DDP workers) is not which one it is
_NOT_THE_MODEL = {"ensemble": True, "warm": True, "train": {"workers"}}


def teacher_config_key(teacher: TeacherConfig) -> str:
    """What makes two single teachers the same model (ensemble size and warm-start policy aside)."""
    return sha256_json(teacher.model_dump(exclude=_NOT_THE_MODEL))


def teacher_key(dataset_digest: str, teacher: TeacherConfig, seed: int, warm_from: str | None = None) -> str:
    """One teacher (an ensemble member is the single teacher of its seed, so members are shared); a
    warm-started one also by the checkpoint it started from and its epoch bound."""
    single = teacher.model_dump(exclude=_NOT_THE_MODEL)
    key = {"data": dataset_digest, "teacher": single, "seed": seed}
    if warm_from is not None:
        key |= {"warm_from": warm_from, "warm_epochs": teacher.warm.epochs}
    return sha256_json(key)


def teacher_dir(root: Path, data_name: str, key: str) -> Path:
    return Path(root) / "teachers" / f"{data_name}-{key[:12]}"


def ensemble_dir(root: Path, data_name: str, member_digests: list[str]) -> Path:
    return Path(root) / "teachers" / f"{data_name}-ensemble-{sha256_json(member_digests)[:12]}"


def soft_labels_dir(
    root: Path,
    teacher_digest: str,
    dataset_digest: str,
    top_k: int,
    dtype: str,
    hidden: bool,
    shards: int = 1,
) -> Path:
    name = f"{teacher_digest[:12]}-{dataset_digest[:12]}-k{top_k}-{dtype}" + ("-hidden" if hidden else "")
    return Path(root) / "soft_labels" / (name + (f"-s{shards}" if shards > 1 else ""))


def student_key(
    dataset_digest: str,
    model: ModelConfig,
    train: TrainConfig,
    seed: int,
    *,
    cache_digest: str | None = None,
    distill: DistillConfig | None = None,
    warm_from: str | None = None,
) -> str:
    """A no-KD student by dataset, student and seed (one baseline serves every distillation setting);
    a KD student by the soft-label cache digest (which covers teacher and dataset), student,
    distillation settings and seed."""
    common = {"student": model.model_dump(), "train": train.model_dump(), "seed": seed}
    if warm_from is not None:  # a warm-started student: also by the checkpoint it continued from
        common["warm_from"] = warm_from
    if cache_digest is None:
        return sha256_json({"data": dataset_digest, **common})
    if distill is None:
        raise ValueError("a KD student's key needs its distillation settings")
    return sha256_json({"cache": cache_digest, "distill": distill.model_dump(), **common})


def student_dir(root: Path, key: str) -> Path:
    return Path(root) / "students" / key[:12]


def export_dir(root: Path, student_digest: str, dataset_digest: str, code_version: str) -> Path:
    key = sha256_json({"student": student_digest, "data": dataset_digest, "code": code_version})
    return Path(root) / "exports" / key[:12]


def night_record(root: Path, data_name: str, night: date) -> Path:
    """A finished night of a backfill (``flows/backfill.py``): what it registered, in what state."""
    return Path(root) / "nights" / data_name / f"{night.isoformat()}.json"


def registry_lock(root: Path) -> Path:
    """What registration locks (``components/locks.py``): one registering run per data folder."""
    return Path(root) / "registry"


def new_run_dir(root: Path, data_name: str, label: str = "") -> Path:
    """A fresh folder name for one run's reports (created by whoever writes into it)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{label}-{data_name}" if label else data_name
    return Path(root) / "runs" / f"{stamp}-{name}-{uuid.uuid4().hex[:6]}"
