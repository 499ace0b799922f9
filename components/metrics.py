"""Full-ranking metrics: the target is ranked against every item in the catalogue.

Rank (0-based) = number of *other* items scoring at least as high as the target, so ties count against
the model: a constant scorer gets the worst rank, never a lucky one. Already-interacted items are
masked (set to -inf) by default, as a shop would not recommend them again; if the target itself was
seen before, it is masked too and counts as a miss.

    HR@K   = 1[rank < K]
    NDCG@K = 1[rank < K] / log2(rank + 2)      (one relevant item, so IDCG = 1)
    MRR@K  = 1[rank < K] / (rank + 1)

Scores are (B, I) with column c for item id c + 1 (see ``components/models``); targets and masks are
given as columns. Beyond accuracy: catalogue coverage of the top-N lists and the mean popularity percentile of the
recommended items (1.0 = the most popular item), since distillation can amplify popularity bias.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from shopdistill.components.replicas import Replicas

KS = (5, 10, 20)


def mask_seen(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Set ``scores[rows[j], items[j]] = -inf`` in place; returns ``scores``."""
    if rows.numel():
        scores[rows, items] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, I) scores, (B,) target columns -> (B,) 0-based pessimistic ranks."""
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    at_least = (scores >= target_scores).sum(dim=1)  # includes the target itself
    return at_least - 1


def rank_metrics(ranks: torch.Tensor, ks: Iterable[int] = KS) -> dict[str, torch.Tensor]:
    """Per-example HR/NDCG/MRR at each K, as (B,) float tensors."""
    r = ranks.double()
    out = {}
    for k in ks:
        hit = (ranks < k).double()
        out[f"HR@{k}"] = hit
        out[f"NDCG@{k}"] = hit / torch.log2(r + 2)
        out[f"MRR@{k}"] = hit / (r + 1)
    return out


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Per column (item counts without the padding id): the item's popularity rank scaled to [0, 1]
    (0 = least, 1 = most popular), tied counts sharing their mean rank."""
    c = counts.astype(np.float64)
    order = np.argsort(c, kind="stable")
    ranks = np.empty_like(c)
    ranks[order] = np.arange(len(c))
    # average the ranks of tied counts
    uniq, inverse = np.unique(c, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    return mean_rank[inverse] / max(len(c) - 1, 1)


class RankingAccumulator:
    """Accumulates metrics over batches of (scores, target columns); scores must already be masked.

    ``train_counts`` are per column (``SequenceData.train_counts[1:]``)."""

    def __init__(self, n_items: int, train_counts: np.ndarray | None = None, ks=KS, top_n: int = 10):
        self.ks, self.top_n, self.n_items = tuple(ks), top_n, n_items
        self.sums: dict[str, float] = {}
        self.count = 0
        self.recommended = np.zeros(n_items, dtype=np.int64)
        self.pop_pct = popularity_percentile(train_counts) if train_counts is not None else None

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        for name, values in rank_metrics(target_ranks(scores, targets), self.ks).items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
        top = torch.topk(scores, self.top_n, dim=1).indices.numpy()  # (B, top_n)
        np.add.at(self.recommended, top.ravel(), 1)
        self.count += len(targets)

    def combine(self, replicas: Replicas) -> None:
        """Add up the accumulators of all ranks (each saw a share of the users), on every rank."""
        if replicas.size == 1:
            return
        names = list(rank_metrics(torch.zeros(0, dtype=torch.long), self.ks))
        sums = torch.tensor([self.sums.get(n, 0.0) for n in names] + [self.count], dtype=torch.float64)
        sums = replicas.sum(sums).tolist()
        self.sums, self.count = dict(zip(names, sums[:-1], strict=True)), int(sums[-1])
        self.recommended = replicas.sum(torch.from_numpy(self.recommended)).numpy()

    def result(self) -> dict[str, float]:
        out = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        n = self.top_n
        out[f"coverage@{n}"] = float((self.recommended > 0).sum() / self.n_items)
        if self.pop_pct is not None and self.recommended.sum():
            out[f"popularity_pct@{n}"] = float(
                (self.recommended * self.pop_pct).sum() / self.recommended.sum()
            )
        out["users"] = self.count
        return out
