"""The evaluate stage: teacher, KD student, no-KD student and the current champion on one test split.

Writes the run's ``report.json`` / ``report.md``, the training histories and two plots. The champion
is scored only when it was trained on the same catalogue; the report says why when it is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from shopdistill.components.artifacts import Handle, write_json_atomic
from shopdistill.components.config import RegistryConfig
from shopdistill.components.evaluation import compare_models
from shopdistill.components.models.checkpoint import load_model, load_teacher
from shopdistill.components.registry import Registry
from shopdistill.components.reporting import comparison_bars, learning_curves
from shopdistill.components.sequences import SequenceData


@dataclass(frozen=True)
class Evaluation:
    report: Path  # report.json
    markdown: str  # the comparison table and the champion note
    champion_note: str


def evaluate(
    dataset: Handle,
    models: dict[str, Handle],
    registry: RegistryConfig,
    root: Path,
    run_dir: Path,
    requests: int = 1000,
) -> Evaluation:
    """``models``: handles of ``teacher``, ``student-kd`` and ``student-nokd`` (with ``max_len`` and
    ``history`` in their meta)."""
    data = SequenceData.from_path(dataset.uri)
    teacher = models["teacher"]
    loaded = {"teacher": (load_teacher(teacher.uri, teacher.sha256), teacher.meta["max_len"])}
    for name in ("student-kd", "student-nokd"):
        model, cfg, _ = load_model(models[name].uri, models[name].sha256)
        loaded[name] = (model, cfg.max_len)
    version, champion, note = champion_model(registry, root, run_dir, data.n_items)
    if champion is not None:
        loaded["champion"] = champion
    report = compare_models(loaded, data, "test", requests=requests)
    result = {
        "split": "test",
        "rows": report.rows,
        "champion": {"version": version, "note": note},
        "dataset": dataset.sha256,
    }
    markdown = report.to_markdown() + f"\n\nChampion: {note}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "report.json", result)
    (run_dir / "report.md").write_text(markdown + "\n")
    _plots(run_dir, {name: h.meta.get("history", []) for name, h in models.items()}, report.rows)
    return Evaluation(run_dir / "report.json", markdown, note)


def champion_model(
    registry: RegistryConfig, root: Path, run_dir: Path, n_items: int
) -> tuple[str | None, tuple[nn.Module, int] | None, str]:
    """The current champion as (version, (model, max_len), note), or (None, None, why it is not scored)."""
    reg = Registry(registry, root)
    champ = reg.champion()
    if champ is None:
        return None, None, "no champion yet"
    folder = reg.download_student(champ, run_dir / "champion")
    model, cfg, _ = load_model(folder / "best.pt", champ.tags.get("student_digest"))
    if model.item_emb.num_embeddings - 1 != n_items:
        return (
            None,
            None,
            f"champion v{champ.version} was trained on another catalogue; compared as a first model",
        )
    return champ.version, (model, cfg.max_len), f"champion v{champ.version}"


def _plots(run_dir: Path, histories: dict[str, list[dict[str, Any]]], rows: dict[str, Any]) -> None:
    (run_dir / "histories.json").write_text(json.dumps(histories, default=float))
    learning_curves(histories, run_dir / "learning_curves.png")
    comparison_bars(rows, run_dir / "comparison.png")
