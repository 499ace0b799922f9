"""Sequence recommenders, one model per file. Every model maps item sequences to hidden states and
scores the whole catalogue through its (tied) item embedding.

Item ids run 1..I (0 pads); score matrices have I columns and column c belongs to item c + 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from shopdistill.components.config import ModelConfig
from shopdistill.components.kernels import item_scores


class ModelOutput(NamedTuple):
    """A NamedTuple, so torch.export and pytree handle it."""

    hidden: torch.Tensor  # (B, L, d) final representation at every position
    layers: list[torch.Tensor]  # hidden states after each block, each (B, L, d)


def build_model(cfg: ModelConfig, n_items: int) -> nn.Module:
    """The model ``cfg.arch`` for a catalogue of ``n_items`` (ids 1..n_items; 0 is padding), over
    the item table ``cfg.item_embedding``."""
    items = None
    if cfg.item_embedding != "full":
        from shopdistill.components.models.embeddings import build_item_embedding

        items = build_item_embedding(
            cfg.item_embedding, n_items, cfg.d_model, cfg.pq_groups, cfg.pq_centroids, cfg.pq_full_rows
        )
    if cfg.arch == "sasrec":
        from shopdistill.components.models.sasrec import SASRec

        return SASRec(
            n_items, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.max_len, cfg.ffn_mult, items
        )
    if cfg.arch == "gru":
        from shopdistill.components.models.gru import GRURec

        return GRURec(n_items, cfg.d_model, max(cfg.n_layers, 1), cfg.dropout, items)
    raise ValueError(f"unknown model architecture {cfg.arch!r} (sasrec, gru)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def catalogue_scores(hidden: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
    """(..., d) @ (I, d)^T -> (..., I): a score for every real item; **column c is item id c + 1**.

    The padding row 0 of the embedding is left out rather than masked in place, which would make
    autograd copy the whole (N, I) gradient.
    """
    return item_scores(hidden, item_weight[1:])
