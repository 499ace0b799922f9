"""The quality benchmark: teacher vs. student with KD vs. the same student without KD, on one split.

    prepare data -> train teacher -> cache its soft labels -> train student (no KD) -> train student (KD)
    -> compare all on the test split (accuracy, coverage, popularity, size, latency) -> JSON + markdown

Every stage reuses its output when it is already there (dataset digest, teacher checkpoint, cache),
and training resumes from its last checkpoint, so an interrupted benchmark continues where it stopped.
Model choices are made on the validation split only; the test split is scored once, at the end.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.artifacts import Handle, sha256_json, write_json_atomic
from components.config import DistillConfig, ModelConfig, PipelineConfig, TeacherConfig
from components.data.dataset import prepare_dataset
from components.distill.trainer import distill_student
from components.evaluation import compare_models, evaluate_model
from components.models import build_model
from components.runtime import configure_torch
from components.sequences import SequenceData
from components.soft_labels import build_soft_labels
from components.training import ENSEMBLE_FILE, TrainResult, fit, load_teacher, write_ensemble


def _targets(rows: dict[str, dict[str, Any]], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The issue's acceptance checks, computed from the measured rows."""
    out = []
    teacher = rows["teacher"]["NDCG@10"]
    out.append({"check": "teacher NDCG@10 >= 0.045", "value": teacher, "passed": teacher >= 0.045})
    alone = [name for name in rows if name.endswith("-nokd")]
    best_alone = max((rows[n]["NDCG@10"] for n in alone), default=0.0)
    out.append(
        {
            "check": "teacher above every student trained alone",
            "value": teacher - best_alone,
            "passed": teacher > best_alone,
        }
    )
    for kd, nokd in pairs:
        gain = rows[kd]["NDCG@10"] / max(rows[nokd]["NDCG@10"], 1e-12)
        out.append({"check": f"{kd} above {nokd}", "value": gain, "passed": gain > 1.0})
    return out


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
    def train_seconds(self) -> float:
        return sum(h["seconds"] for m in self.members for h in m.history)


def train_teacher(
    config: PipelineConfig,
    data: SequenceData,
    dataset_digest: str,
    seed: int,
    *,
    log: Callable[[str], None] = print,
) -> tuple[torch.nn.Module, TeacherRun]:
    """Train (or reuse, or resume) the configured teacher (see :func:`train_teacher_models`)."""
    return train_teacher_models(
        config.teacher,
        data,
        dataset_digest,
        config.runtime.root,
        config.data.name,
        seed,
        threads=config.runtime.threads,
        log=log,
    )


def train_teacher_models(
    t_cfg: TeacherConfig,
    data: SequenceData,
    dataset_digest: str,
    root: Path,
    data_name: str,
    seed: int,
    *,
    threads: int = 1,
    log: Callable[[str], None] = print,
) -> tuple[torch.nn.Module, TeacherRun]:
    """Train (or reuse, or resume) the teacher; stored by dataset digest, teacher config and seed.

    With ``ensemble = n`` the members are the single teachers of seeds ``seed .. seed+n-1`` (so a
    member is shared with the ensembles and single runs that contain it). The nightly flow and the
    benchmarks store teachers the same way, so they reuse each other's.
    """
    single = t_cfg.model_dump(exclude={"ensemble"})  # a member's key ignores the ensemble size
    results = []
    for member_seed in range(seed, seed + t_cfg.ensemble):
        key = sha256_json({"data": dataset_digest, "teacher": single, "seed": member_seed})
        out = Path(root) / "teachers" / f"{data_name}-{key[:12]}"
        torch.manual_seed(member_seed)
        model = build_model(t_cfg.model, data.n_items)
        name = "teacher" if t_cfg.ensemble == 1 else f"teacher-{member_seed - seed + 1}of{t_cfg.ensemble}"
        results.append(
            fit(
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
        )
    if t_cfg.ensemble == 1:
        run = TeacherRun(results[0].checkpoint, results[0].checkpoint_sha256, results)
    else:
        members_key = sha256_json([r.checkpoint_sha256 for r in results])[:12]
        record = Path(root) / "teachers" / f"{data_name}-ensemble-{members_key}"
        digest = write_ensemble(record, [(r.checkpoint, r.checkpoint_sha256) for r in results])
        run = TeacherRun(record / ENSEMBLE_FILE, digest, results)
    return load_teacher(run.checkpoint), run


def cache_soft_labels(
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
    return build_soft_labels(
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


def train_student(
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
    """A student with KD from ``cache``, or the no-KD baseline when ``cache`` is None.

    Stored by what determines it: the no-KD baseline by dataset, student and seed (so it is shared by
    every distillation setting); a KD student also by the cache digest and the distillation config.
    """
    d_cfg = distill or config.distill
    train_cfg = config.student.train
    if cache is None:
        key = sha256_json(
            {
                "data": dataset_digest,
                "student": model_cfg.model_dump(),
                "train": train_cfg.model_dump(),
                "seed": seed,
            }
        )[:12]
    else:
        key = sha256_json(
            {
                "cache": cache.sha256,
                "student": model_cfg.model_dump(),
                "train": train_cfg.model_dump(),
                "distill": d_cfg.model_dump(),
                "seed": seed,
            }
        )[:12]
    out = config.runtime.root / "students" / key / "student"  # not by display name: shared by bench and study
    return distill_student(
        data,
        model_cfg,
        train_cfg,
        d_cfg,
        out,
        cache_path=cache.uri if cache else None,
        seed=seed,
        threads=config.runtime.threads,
        log=log,
        name=name,
    )


def run_quality_benchmark(
    config: PipelineConfig,
    out_dir: str | Path,
    *,
    students: tuple[str, ...] | None = None,
    requests: int = 1000,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole comparison; write ``report.json`` and ``report.md`` under ``out_dir``.

    ``students``: the student architectures compared (default: the profile's student)."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    root = config.runtime.root
    threads, seed = config.runtime.threads, config.runtime.seed
    configure_torch(threads)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    prepared = prepare_dataset(config.data, root, docs_dir=out_dir / "data_docs")
    data = SequenceData.from_path(prepared.handle.uri)
    timings["data"] = time.perf_counter() - t0
    log(f"dataset {prepared.handle.uri} ({data.n_users:,} users, {data.n_items:,} items)")

    t_cfg = config.teacher
    t0 = time.perf_counter()
    teacher, t_result = train_teacher(config, data, prepared.handle.sha256, seed, log=log)
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cache, cache_manifest, reused = cache_soft_labels(config, data, prepared.handle.sha256, teacher, t_result)
    timings["soft_labels"] = time.perf_counter() - t0
    log(f"soft labels {cache.uri} ({cache_manifest['rows']:,} rows{', reused' if reused else ''})")

    models = {"teacher": (teacher, t_cfg.model.max_len)}
    histories = {"teacher": t_result.history}
    pairs = []
    for arch in students or (config.student.model.arch,):
        s_model = config.student.model.model_copy(update={"arch": arch})
        for kd in (False, True):
            name = f"student-{arch}-{'kd' if kd else 'nokd'}"
            t0 = time.perf_counter()
            student, result = train_student(
                config, data, prepared.handle.sha256, s_model, cache if kd else None, seed, log=log, name=name
            )
            timings[name] = time.perf_counter() - t0
            models[name] = (student, s_model.max_len)
            histories[name] = result.history
        pairs.append((f"student-{arch}-kd", f"student-{arch}-nokd"))

    t0 = time.perf_counter()
    report = compare_models(models, data, "test", requests=requests)
    timings["evaluation"] = time.perf_counter() - t0
    for name, hist in histories.items():
        report.rows[name]["epochs"] = len(hist)
        report.rows[name]["best_epoch"] = (
            max(hist, key=lambda h: h["valid"]["NDCG@10"])["epoch"] if hist else 0
        )
        # summed from the epoch records, so a reused (already trained) model still reports its cost
        report.rows[name]["train_seconds"] = round(sum(h["seconds"] for h in hist), 1)
        report.rows[name]["valid_NDCG@10"] = max((h["valid"]["NDCG@10"] for h in hist), default=0.0)
    report.rows["teacher"]["train_seconds"] = round(t_result.train_seconds, 1)  # every member
    if len(t_result.members) > 1:  # an ensemble: its own validation score, each member's epochs
        report.rows["teacher"]["valid_NDCG@10"] = evaluate_model(teacher, data, "valid", t_cfg.model.max_len)[
            "NDCG@10"
        ]
        report.rows["teacher"]["member_epochs"] = [[len(m.history), m.best_epoch] for m in t_result.members]
    t_params = report.rows["teacher"]["params"]
    for row in report.rows.values():
        row["param_ratio_to_teacher"] = t_params / row["params"]
        row["p99_ratio_to_teacher"] = row["latency_p99_ms"] / report.rows["teacher"]["latency_p99_ms"]
    timings["total"] = time.perf_counter() - t_start
    result = {
        "dataset": {
            "name": config.data.name,
            "digest": prepared.handle.sha256,
            "users": data.n_users,
            "items": data.n_items,
        },
        "split": "test",
        "rows": report.rows,
        "targets": _targets(report.rows, pairs),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "config": config.model_dump(mode="json"),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": threads,
            "cpu": platform.processor() or platform.machine(),
        },
        "artifacts": {"teacher": str(t_result.checkpoint), "soft_labels": cache.uri},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "report.json", result)
    (out_dir / "histories.json").write_text(json.dumps(histories, default=float))
    (out_dir / "report.md").write_text(render_markdown(result, report.to_markdown()))
    return result


def render_markdown(result: dict[str, Any], table: str) -> str:
    def epochs(r: dict[str, Any]) -> str:
        if "member_epochs" in r:
            return "members: " + ", ".join(f"{e} ({b})" for e, b in r["member_epochs"])
        return f"{r['epochs']} ({r['best_epoch']})"

    lines = [
        f"# Quality benchmark: {result['dataset']['name']} ({result['split']} split, full ranking)",
        "",
        f"{result['dataset']['users']:,} users, {result['dataset']['items']:,} items; dataset "
        f"sha256:{result['dataset']['digest'][:12]}; threads {result['machine']['threads']}; this "
        f"invocation took {result['timings_s']['total'] / 60:.1f} min (stages already done were reused); "
        f"training time per model is in the second table.",
        "",
        table,
        "",
        "| model | epochs (best) | train s | valid NDCG@10 | params / teacher | p99 / teacher |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {epochs(r)} | {r['train_seconds']:.0f} | {r['valid_NDCG@10']:.4f} "
            f"| 1/{r['param_ratio_to_teacher']:.1f} | {r['p99_ratio_to_teacher']:.2f} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['check']} | {t['value']:.4f} | {'yes' if t['passed'] else 'no'} |")
    return "\n".join(lines) + "\n"
