"""What a student costs (trainable parameters, stored bytes), and a compressed item table sized to a
budget.

A pq item table (``models/embeddings.py``) costs its codes (one byte per item and group), its
codebooks and the full rows of the items most frequent in training. ``fill_budget`` gives such a
student as many full rows as keep it within a budget, usually the profile's student with a full
table: on Amazon Beauty the d=16 GRU (195,296 parameters, 0.78 MB) leaves a d=64 GRU over 16 code
groups 1,549 full rows. The rows follow the catalogue, so the same setting sizes the table on
other data.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from shopdistill.components.config import ModelConfig
from shopdistill.components.models import build_model, count_parameters


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: parameters and buffers (codes, row slots)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def model_cost(cfg: ModelConfig, n_items: int) -> tuple[int, int]:
    """(trainable parameters, stored bytes) of ``cfg`` for a catalogue of ``n_items``."""
    model = build_model(cfg, n_items)
    return count_parameters(model), model_size_bytes(model)


def size_budget(cfg: ModelConfig, n_items: int) -> tuple[int, int]:
    """The cost of ``cfg`` with a full item table: what a compressed student of its size may spend."""
    return model_cost(cfg.model_copy(update={"item_embedding": "full"}), n_items)


def fill_budget(cfg: ModelConfig, n_items: int, budget: tuple[int, int]) -> ModelConfig:
    """``cfg`` (a pq student) with as many full rows as fit ``budget`` (parameters, stored bytes)
    besides its codes, codebooks and sequence encoder; none when even those do not fit."""
    if cfg.item_embedding != "pq":
        raise ValueError(f"only a pq item table has full rows to fill, not {cfg.item_embedding!r}")
    d = cfg.d_model
    params, size = model_cost(cfg.model_copy(update={"pq_full_rows": 0}), n_items)
    # a row costs d parameters (4 d bytes) and its item's int16 slot
    rows = max(0, min((budget[0] - params) // d, (budget[1] - size - 2 * n_items) // (4 * d), n_items - 1))
    while rows > 0:  # the estimate leaves out the state's framing: step down by what is over
        cost = model_cost(cfg.model_copy(update={"pq_full_rows": rows}), n_items)
        over_params, over_bytes = (c - b for c, b in zip(cost, budget, strict=True))
        if over_params <= 0 and over_bytes <= 0:
            break
        rows -= max(1, -(-over_params // d), -(-over_bytes // (4 * d)))
    return ModelConfig.model_validate({**cfg.model_dump(), "pq_full_rows": max(rows, 0)})
