"""Plots for the run report: learning curves and a teacher-vs-students bar chart (PNG, matplotlib)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(histories: Mapping[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Validation NDCG@10 per epoch for each trained model."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, hist in histories.items():
        if hist:
            ax.plot([h["epoch"] for h in hist], [h["valid"]["NDCG@10"] for h in hist], marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def comparison_bars(rows: Mapping[str, Mapping[str, Any]], path: str | Path, metric: str = "NDCG@10") -> Path:
    """One bar per model, labelled with its parameter count."""
    names = list(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, [rows[n][metric] for n in names], color=["#555"] + ["#2a7"] * (len(names) - 1))
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            f"{rows[name]['params'] / 1e3:,.0f}k params",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel(f"test {metric}")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def nights_plot(rows: list[Mapping[str, Any]], path: str | Path) -> Path:
    """Per night: test NDCG@10 of the nightly, cold and frozen students (top) and the wall time of a
    nightly and a cold night (bottom)."""
    nights = [r["night"][5:] for r in rows]  # MM-DD
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, style in (("nightly", "o-"), ("cold", "s--"), ("frozen", "^:")):
        top.plot(nights, [r[key] for r in rows], style, label=key)
    top.set_ylabel("next-day test NDCG@10")
    top.grid(alpha=0.3)
    top.legend()
    for key, style in (("nightly_seconds", "o-"), ("cold_seconds", "s--")):
        bottom.plot(nights, [r[key] for r in rows], style, label=key.replace("_seconds", ""))
    bottom.set_ylabel("wall time of the night (s)")
    bottom.grid(alpha=0.3)
    bottom.legend()
    bottom.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def nights_table(records: list[Path]) -> str:
    """Markdown: one row per finished night (``stores.night_record`` files, with their run reports):
    state, version, test users, NDCG@10 of the teacher, both students and the champion it was judged
    against, the share of the night's test events on new products, and the night's wall time."""
    head = (
        "| night | state | version | test users | teacher | KD student | no-KD student | champion | "
        "new-product events | seconds |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in records:
        entry = json.loads(path.read_text())
        report = json.loads(Path(entry["report"]).read_text())
        rows = report["rows"]

        def ndcg(name: str, rows: Mapping[str, Any] = rows) -> str:
            return f"{rows[name]['NDCG@10']:.4f}" if name in rows else "-"

        drift = report.get("drift") or {}
        events = drift.get("new_item_event_share")
        lines.append(
            f"| {entry['night']} | {entry['state']} | {entry['version']} | {rows['teacher']['users']:,} | "
            f"{ndcg('teacher')} | {ndcg('student-kd')} | {ndcg('student-nokd')} | {ndcg('champion')} | "
            f"{'-' if events is None else f'{events:.1%}'} | {entry['seconds']:.0f} |"
        )
    return "\n".join(lines)
