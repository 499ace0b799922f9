"""Non-learned next-item baselines: most-popular and first-order Markov (item-to-item transitions).

Used as sanity floors: the synthetic shop must have enough sequential structure that even the Markov
baseline beats popularity by a wide margin, and the demo teacher must beat the Markov baseline by a
wide margin (its history matters, not only the last product).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from shopdistill.components.evaluation import ScoreFn
from shopdistill.components.sequences import SequenceData


def popularity_top_k(train: pd.DataFrame, k: int) -> np.ndarray:
    """The ``k`` most frequent items in ``train`` (ties broken by item id)."""
    counts = train["item_id"].value_counts()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return np.array([item for item, _ in order[:k]])


def transition_counts(train: pd.DataFrame) -> pd.Series:
    """Counts of (previous item -> next item) within each user's chronological train sequence."""
    nxt = train.groupby("user_id", sort=False)["item_id"].shift(-1)
    pairs = pd.DataFrame({"prev": train["item_id"].to_numpy(), "next": nxt.to_numpy()}).dropna()
    return pairs.astype("int64").groupby(["prev", "next"]).size()


def markov_top_k(transitions: pd.Series, previous: np.ndarray, k: int, fallback: np.ndarray) -> np.ndarray:
    """(n, k) recommendations: most frequent successors of each ``previous`` item, then ``fallback``."""
    ranked = transitions.sort_values(ascending=False, kind="stable")
    successors: dict[int, list[int]] = {}
    for (prev, nxt), _ in ranked.items():
        lst = successors.setdefault(int(prev), [])
        if len(lst) < k:
            lst.append(int(nxt))
    out = np.empty((len(previous), k), dtype=np.int64)
    for i, p in enumerate(previous):
        recs = successors.get(int(p), [])
        recs = recs + [int(f) for f in fallback if f not in recs]
        out[i] = recs[:k]
    return out


def hit_rate(recommendations: np.ndarray, targets: np.ndarray) -> float:
    """Share of rows whose target is among the recommended items."""
    return float((recommendations == np.asarray(targets)[:, None]).any(axis=1).mean())


def markov_scorer(data: SequenceData, split: str) -> ScoreFn:
    """First-order Markov scores in the pipeline's protocol (``evaluation.evaluate_scores``): how
    often each item followed the history's last item in the known sequences (train, plus each
    user's validation item when scoring ``test``), popularity breaking ties and scoring unseen
    successors. Dense ``(I + 1, I + 1)``: a baseline for catalogues of a few thousand items."""
    n = data.n_items + 1
    counts = np.zeros((n, n), dtype=np.float32)
    ends = data.offsets[:-1] + data.n_train
    if split == "test":
        ends = np.where(data.valid_index >= 0, data.valid_index + 1, ends)
    for start, end in zip(data.offsets[:-1], ends, strict=True):
        seq = data.items[start:end]
        np.add.at(counts, (seq[:-1], seq[1:]), 1.0)
    popularity = data.train_counts.astype(np.float32)
    counts += 1e-3 * popularity[None, :] / max(popularity.max(), 1.0)
    table = torch.from_numpy(counts[:, 1:])  # column c is item c + 1

    def scores(inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return table[inputs[torch.arange(len(lengths)), lengths - 1]].clone()

    return scores
