"""Markdown for the Prefect artifacts the tasks publish (presentation only; no pipeline logic)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from shopdistill.components.config import StudentConfig, TeacherConfig


def history_table(history: list[dict[str, Any]]) -> str:
    rows = ["| epoch | loss | valid NDCG@10 | valid HR@10 | s |", "|---|---|---|---|---|"]
    rows += [
        f"| {h['epoch']} | {h['loss']:.4f} | {h['valid']['NDCG@10']:.4f} | {h['valid']['HR@10']:.4f} | "
        f"{h['seconds']:.1f} |"
        for h in history
    ]
    return "\n".join(rows)


def teacher_markdown(
    teacher: TeacherConfig,
    best: list[float],
    seconds: float,
    history: list[dict],
    reused: bool,
    started_from: list[str | None] = (),
) -> str:
    ensemble = f", ensemble of {teacher.ensemble}" if teacher.ensemble > 1 else ""
    how = "reused: a finished stored run" if reused else f"{seconds:.0f} s of training"
    warm = [s for s in started_from if s]
    if warm:
        how += f", warm-started from last night's `{warm[0][:12]}`" + (
            f" (+{len(warm) - 1})" if len(warm) > 1 else ""
        )
    return (
        f"Teacher `{teacher.model.arch}` d={teacher.model.d_model}, {teacher.model.n_layers} layers{ensemble}: "
        f"best validation NDCG@10 {', '.join(f'{b:.4f}' for b in best)} ({how})\n\n" + history_table(history)
    )


def soft_labels_markdown(manifest: dict[str, Any], uri: str, reused: bool) -> str:
    hidden = ", hidden states" if manifest["hidden_dim"] else ""
    return (
        f"Teacher top-{manifest['top_k']} ({manifest['logits_dtype']} logits{hidden}) for "
        f"{manifest['rows']:,} training positions of {manifest['users']:,} users: `{uri}`"
        f"{' (reused)' if reused else ''}"
    )


def student_markdown(name: str, student: StudentConfig, distilled: bool, result: Any) -> str:
    how = ", distilled" if distilled else ", hard labels only"
    return (
        f"{name} (`{student.model.arch}` d={student.model.d_model}{how}): best validation NDCG@10 "
        f"{result.best_valid['NDCG@10']:.4f} at epoch {result.best_epoch} "
        f"({'reused: a finished stored run' if result.trained_epochs == 0 else result.stopped})\n\n"
        + history_table(result.history)
    )


def onnx_markdown(export: Any) -> str:
    m = export.manifest
    acc = m["int8"]["accuracy"]
    return (
        f"ONNX export `{export.path}`{' (reused)' if export.reused else ''}: fp32 vs PyTorch max |diff| "
        f"{m['parity_max_abs_diff']:.2g} (atol {m['parity_atol']:g}); int8 NDCG@10 {acc['int8']['NDCG@10']:.4f} "
        f"vs fp32 {acc['fp32']['NDCG@10']:.4f} ({acc['delta']['NDCG@10']:+.5f}) on {acc['split']}"
    )


MAX_EMBEDDED_BYTES = 300_000  # a chart larger than this is linked by path, not embedded


def comparison_markdown(rows: dict[str, dict[str, Any]], champion_note: str, report: str) -> str:
    """The comparison in seven columns (the full table with every metric is ``report.md``)."""
    teacher = rows.get("teacher", {}).get("NDCG@10")
    lines = [
        "| model | params | MB | NDCG@10 | HR@10 | x teacher | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        ratio = f"{r['NDCG@10'] / teacher:.2f}" if teacher else ""
        p99 = f"{r['latency_p99_ms']:.2f}" if "latency_p99_ms" in r else ""
        lines.append(
            f"| {name} | {r['params']:,} | {r['size_bytes'] / 1e6:.2f} | {r['NDCG@10']:.4f} | "
            f"{r['HR@10']:.4f} | {ratio} | {p99} |"
        )
    return (
        "\n".join(lines)
        + f"\n\nChampion: {champion_note}\n\nEvery metric: `{Path(report).with_suffix('.md')}`"
    )


def charts_markdown(paths: tuple[Path, ...]) -> str:
    """The run's PNG charts inside the markdown (data URIs), so the run page shows them offline."""
    parts = []
    for path in paths:
        title = path.stem.replace("_", " ")
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) > MAX_EMBEDDED_BYTES:
            parts.append(f"**{title}**: `{path}`")
            continue
        parts.append(
            f"**{title}** (`{path}`)\n\n![{title}](data:image/png;base64,{base64.b64encode(data).decode()})"
        )
    return "\n\n".join(parts)
