"""The evaluate stage: teacher, KD student, no-KD student and the current champion on one test split.

Writes the run's ``report.json`` / ``report.md``, the training histories and two plots. The champion
is scored through its own item map (by raw product id), so a changed catalogue still compares the
same products.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from shopdistill.components import drift, stores
from shopdistill.components.artifacts import Handle, sha256_file, write_json_atomic
from shopdistill.components.config import RegistryConfig, StudentConfig
from shopdistill.components.data.dataset import Dataset, load_dataset
from shopdistill.components.evaluation import compare_models
from shopdistill.components.models.checkpoint import load_model, load_teacher
from shopdistill.components.registry import Registry, metric_name
from shopdistill.components.reporting import comparison_bars, learning_curves
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training import warm_start
from shopdistill.components.training.warm_start import WarmStart


@dataclass(frozen=True)
class Evaluation:
    report: Path  # report.json
    markdown: str  # the comparison table and the champion note
    champion_note: str
    rows: dict[str, dict[str, Any]]  # model name -> metrics, size and speed
    plots: tuple[Path, ...]  # comparison.png, learning_curves.png
    drift: dict[str, Any]  # the night's drift (empty without a previous night)


def evaluate(
    dataset: Handle,
    models: dict[str, Handle],
    registry: RegistryConfig,
    root: Path,
    run_dir: Path,
    requests: int = 1000,
    max_champion_decay: float = 0.2,
) -> Evaluation:
    """``models``: handles of ``teacher``, ``student-kd`` and ``student-nokd`` (with ``max_len`` and
    ``history`` in their meta)."""
    data = SequenceData.from_path(dataset.uri)
    teacher = models["teacher"]
    loaded = {"teacher": (load_teacher(teacher.uri, teacher.sha256), teacher.meta["max_len"])}
    for name in ("student-kd", "student-nokd"):
        model, cfg, _ = load_model(models[name].uri, models[name].sha256)
        loaded[name] = (model, cfg.max_len)
    tonight = load_dataset(dataset.uri)
    version, champion, note = champion_model(registry, root, run_dir, tonight.item_map)
    if champion is not None:
        loaded["champion"] = champion
    report = compare_models(loaded, data, "test", requests=requests)
    result = {
        "split": "test",
        "rows": report.rows,
        "champion": {"version": version, "note": note},
        "dataset": dataset.sha256,
        "drift": night_drift(tonight, dataset, registry, root, version, report.rows, max_champion_decay),
    }
    markdown = report.to_markdown() + f"\n\nChampion: {note}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "report.json", result)
    (run_dir / "report.md").write_text(markdown + "\n")
    plots = _plots(run_dir, {name: h.meta.get("history", []) for name, h in models.items()}, report.rows)
    return Evaluation(run_dir / "report.json", markdown, note, report.rows, plots, result["drift"])


def night_drift(
    tonight: Dataset,
    handle: Handle,
    registry: RegistryConfig,
    root: Path,
    champion: str | None,
    rows: dict[str, Any],
    max_decay: float,
) -> dict[str, Any]:
    """The drift report of a night with a previous night (``drift.py``); empty otherwise."""
    previous = handle.meta.get("previous")
    if not previous:
        return {}
    folder = stores.dataset_dir(root, handle.meta["name"], previous)
    out = drift.data_drift(tonight, load_dataset(folder))
    if champion is not None:
        reg = Registry(registry, root)
        metrics = reg.client.get_run(reg.version(champion).run_id).data.metrics
        at_registration = metrics.get(f"student-kd.{metric_name('NDCG@10')}")
        out |= drift.champion_drift(rows["champion"]["NDCG@10"], at_registration, max_decay)
    return out


def champion_model(
    registry: RegistryConfig, root: Path, run_dir: Path, item_map: pd.DataFrame
) -> tuple[str | None, tuple[nn.Module, int] | None, str]:
    """The current champion as (version, (model, max_len), note), scored through its own item map:
    tonight's item ids are translated by raw product id into the champion's, and its scores back
    (products it never saw score -inf). (None, None, note) when there is no champion yet."""
    reg = Registry(registry, root)
    champ = reg.champion()
    if champ is None:
        return None, None, "no champion yet"
    folder = reg.download_student(champ, run_dir / "champion")
    model, cfg, _ = load_model(folder / "best.pt", champ.tags.get("student_digest"))
    own_map = pd.read_parquet(folder / "item_map.parquet")
    remapped = CatalogueRemap(model, own_map, item_map)
    known = int((remapped.to_own[1:] > 0).sum())
    note = f"champion v{champ.version} ({known:,} of {len(item_map):,} products known to it)"
    return champ.version, (remapped, cfg.max_len), note


def champion_start(
    registry: RegistryConfig, root: Path, run_dir: Path, item_map: pd.DataFrame, student: StudentConfig
) -> WarmStart | None:
    """The champion student to continue from tonight, or None: no champion, a cold start asked for
    or due (``student.warm``), another shape, or ids that are not a prefix of tonight's (the
    champion was trained on another catalogue, not on an earlier night of this one)."""
    reg = Registry(registry, root)
    champ = reg.champion()
    if champ is None:
        return None
    digest, generation = champ.tags.get("student_digest"), int(champ.tags.get("student_generation", 0))
    if warm_start.cold_due(student.warm, generation):
        return None
    folder = reg.download_student(champ, run_dir / "champion-start")
    own = pd.read_parquet(folder / "item_map.parquet")["raw_item_id"].astype(str).to_numpy()
    tonight = item_map["raw_item_id"].astype(str).to_numpy()
    if len(own) > len(tonight) or not (tonight[: len(own)] == own).all():
        return None
    _, cfg, _ = load_model(folder / "best.pt", digest)
    if cfg != student.model:
        return None
    return WarmStart(folder / "best.pt", digest or sha256_file(folder / "best.pt"), generation)


class CatalogueRemap(nn.Module):
    """A model trained on another catalogue, scoring this one: ids mapped by raw product id.

    ``to_own[t]`` is the model's id of this catalogue's item ``t`` (0: unknown, read as padding);
    scores come back as (B, I) over this catalogue, -inf where the model does not know the product.
    """

    def __init__(self, model: nn.Module, own_map: pd.DataFrame, item_map: pd.DataFrame):
        super().__init__()
        self.model = model
        own = dict(zip(own_map["raw_item_id"].astype(str), own_map["item_id"].astype(int), strict=True))
        to_own = torch.zeros(len(item_map) + 1, dtype=torch.long)
        for raw, item in zip(
            item_map["raw_item_id"].astype(str), item_map["item_id"].astype(int), strict=True
        ):
            to_own[item] = own.get(raw, 0)
        self.register_buffer("to_own", to_own, persistent=False)

    def forward(self, items: torch.Tensor):
        return self.model(self.to_own[items])  # (B, L) in the model's ids

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        own = self.model.scores(hidden)  # (B, I_own), column c = the model's item c + 1
        out = own.new_full((*own.shape[:-1], len(self.to_own) - 1), float("-inf"))
        known = self.to_own[1:] > 0
        out[..., known] = own[..., self.to_own[1:][known] - 1]
        return out


def _plots(
    run_dir: Path, histories: dict[str, list[dict[str, Any]]], rows: dict[str, Any]
) -> tuple[Path, ...]:
    (run_dir / "histories.json").write_text(json.dumps(histories, default=float))
    learning_curves(histories, run_dir / "learning_curves.png")
    comparison_bars(rows, run_dir / "comparison.png")
    return run_dir / "comparison.png", run_dir / "learning_curves.png"
