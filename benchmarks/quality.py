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
from pathlib import Path
from typing import Any

import torch

from shopdistill.benchmarks.stages import soft_labels_for, student_for, teacher_for
from shopdistill.benchmarks.targets import TEACHER_MIN_NDCG
from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.config import PipelineConfig
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.evaluation import compare_models, evaluate_model
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training.runtime import configure_torch


def _targets(rows: dict[str, dict[str, Any]], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The benchmark's targets, computed from the measured rows."""
    out = []
    teacher = rows["teacher"]["NDCG@10"]
    out.append(
        {
            "check": f"teacher NDCG@10 >= {TEACHER_MIN_NDCG}",
            "value": teacher,
            "passed": teacher >= TEACHER_MIN_NDCG,
        }
    )
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
    prepared = prepare_dataset(config.data, root, report_dir=out_dir)
    data = SequenceData.from_path(prepared.handle.uri)
    timings["data"] = time.perf_counter() - t0
    log(f"dataset {prepared.handle.uri} ({data.n_users:,} users, {data.n_items:,} items)")

    t_cfg = config.teacher
    t0 = time.perf_counter()
    teacher, t_result = teacher_for(config, data, prepared.handle.sha256, seed, log=log)
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cache, cache_manifest, reused = soft_labels_for(config, data, prepared.handle.sha256, teacher, t_result)
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
            student, result = student_for(
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
