"""Warm starts: tonight's model continues from last night's, its item table grown for new products.

Across nights the id maps are stable (``data/preprocess.build_id_maps``): item ``i`` of last night is
item ``i`` tonight, and new products are appended. So a model of last night is tonight's model with
a shorter item table: :func:`grow_items` appends one row per new item, each the mean of the known
item rows (a new product starts as an average product, neither popular nor tied to any sequence),
and training continues for a bounded number of epochs (``warm.epochs``) with early stopping.

A warm-started model records where it started in ``lineage.json`` beside its checkpoints: the
dataset it was trained on, its configuration key and seed, the checkpoint it started from and its
generation (warm nights since the last cold start). The next night finds it by the previous
dataset's digest. Every ``warm.full_retrain_every`` nights (or with ``warm.cold``) training starts
cold, so errors cannot compound without bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.config import TrainConfig, WarmStartConfig
from shopdistill.components.models.checkpoint import CheckpointError, load_model

LINEAGE = "lineage.json"
ITEM_TABLE = "item_emb.weight"  # (I + 1, d): row 0 is padding


@dataclass(frozen=True)
class WarmStart:
    """A checkpoint to continue from, and how many warm nights led to it."""

    checkpoint: Path
    sha256: str
    generation: int


def grow_items(state: dict[str, torch.Tensor], n_items: int) -> dict[str, torch.Tensor]:
    """``state`` with its item table grown to ``n_items`` items (new rows: the mean known item)."""
    table = state[ITEM_TABLE]
    known = table.shape[0] - 1
    if n_items < known:
        raise CheckpointError(
            f"cannot shrink an item table of {known} items to {n_items}: ids are not stable"
        )
    if n_items == known:
        return state
    mean = table[1:].mean(dim=0, keepdim=True)
    grown = torch.cat([table, mean.expand(n_items - known, -1)], dim=0)
    return {**state, ITEM_TABLE: grown}


def start_from(model: nn.Module, warm: WarmStart, n_items: int) -> None:
    """Load ``warm``'s weights into ``model`` (same architecture, item table grown to ``n_items``)."""
    previous, cfg, _ = load_model(warm.checkpoint, warm.sha256)
    if cfg.item_embedding != "full" and previous.item_emb.n_items != n_items:
        raise CheckpointError(
            f"{warm.checkpoint}: a {cfg.item_embedding} item table of {previous.item_emb.n_items} items "
            f"cannot grow to {n_items} (its codes or factors index the catalogue): start cold (warm.cold: true)"
        )
    state = (
        grow_items(previous.state_dict(), n_items) if cfg.item_embedding == "full" else previous.state_dict()
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{warm.checkpoint} does not fit this model: {str(exc).splitlines()[0]}"
        ) from None


def cold_due(cfg: WarmStartConfig, generation: int) -> bool:
    """Whether tonight starts cold after ``generation`` warm nights: asked for, or the cadence's turn."""
    return cfg.cold or generation + 1 >= cfg.full_retrain_every


def choose(cfg: WarmStartConfig, previous: WarmStart | None) -> WarmStart | None:
    """``previous`` to continue from, or None for a cold start (none, asked for, or due)."""
    return None if previous is None or cold_due(cfg, previous.generation) else previous


def warm_train(train: TrainConfig, cfg: WarmStartConfig) -> TrainConfig:
    """The training settings of a warm-started night: at most ``cfg.epochs`` epochs."""
    return train.model_copy(update={"epochs": min(train.epochs, cfg.epochs)})


def write_lineage(
    folder: Path, dataset: str, config_key: str, seed: int, warm: WarmStart | None, best: str
) -> None:
    write_json_atomic(
        folder / LINEAGE,
        {
            "dataset_digest": dataset,
            "config_key": config_key,
            "seed": seed,
            "checkpoint_sha256": best,
            "started_from": warm.sha256 if warm else None,
            "generation": warm.generation + 1 if warm else 0,
        },
    )


def find_previous(folders: list[Path], dataset: str, config_key: str, seed: int) -> WarmStart | None:
    """Among ``folders``, the model trained on ``dataset`` with this configuration and seed."""
    for folder in folders:
        record = _read(folder / LINEAGE)
        if record and (record["dataset_digest"], record["config_key"], record["seed"]) == (
            dataset,
            config_key,
            seed,
        ):
            best = folder / "best.pt"
            if best.is_file():
                return WarmStart(best, record["checkpoint_sha256"], int(record["generation"]))
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
