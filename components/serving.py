"""Serving a student: a next-item scorer for export, and the shopping-guide view for one user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from shopdistill.components.data.dataset import Dataset


class NextItemScorer(nn.Module):
    """(B, L) right-padded item ids -> (B, I) scores of the next item (column c = item c + 1).

    Wraps a student for export (torch.export / MLflow pt2): the last real position is found from the
    padding, so the graph needs no second input.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        hidden = self.model(items).hidden  # (B, L, d)
        last = (items != 0).sum(dim=1).clamp(min=1) - 1  # (B,)
        picked = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)  # (B, d)
        return self.model.scores(picked)


class UnknownUserError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; say it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class ShoppingGuide:
    user: str
    history: pd.DataFrame  # the user's most recent items, newest last
    recommendations: pd.DataFrame  # rank, item, score, title, brand, category


@torch.no_grad()
def recommend_for_user(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    raw_user_id: str,
    *,
    k: int = 10,
    max_len: int = 50,
    recent: int = 5,
) -> ShoppingGuide:
    """Top-``k`` new products for a user (raw id), scored on their whole history; seen items excluded.

    ``model``: a student, or any (B, L) -> (B, I) scorer such as ``export.OnnxScorer``.
    """
    users = dataset.user_map
    match = users.loc[users["raw_user_id"] == str(raw_user_id), "user_id"]
    if match.empty:
        examples = ", ".join(users["raw_user_id"].head(3))
        raise UnknownUserError(
            f"unknown user {raw_user_id!r}: not in dataset {dataset.path.name} (e.g. {examples})"
        )
    uid = int(match.iloc[0])
    inter = dataset.interactions
    seq = inter.loc[inter["user_id"] == uid, "item_id"].to_numpy(np.int64)
    scorer = NextItemScorer(model.eval()) if isinstance(model, nn.Module) else model
    scores = scorer(torch.from_numpy(seq[-max_len:])[None])[0]  # (I,)
    scores[torch.from_numpy(np.unique(seq) - 1)] = float("-inf")
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
    items = dataset.items.set_index("item_id")
    raw = dataset.item_map.set_index("item_id")["raw_item_id"]

    def describe(ids: np.ndarray) -> pd.DataFrame:
        meta = items.reindex(ids)
        return pd.DataFrame(
            {
                "item": raw.reindex(ids).to_numpy(),
                "title": meta["title"].to_numpy(),
                "brand": meta["brand"].to_numpy(),
                "category": meta["category"].to_numpy(),
            }
        )

    recs = describe(top.indices.numpy() + 1)
    recs.insert(0, "rank", np.arange(1, len(recs) + 1))
    recs.insert(2, "score", top.values.numpy().round(3))
    return ShoppingGuide(str(raw_user_id), describe(seq[-recent:]), recs)
